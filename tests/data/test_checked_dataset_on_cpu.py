"""The dataset class the shipped configs name, built the way verl's trainer builds it, refuses bad rows."""

from __future__ import annotations

import traceback

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import open_dict

from speciarl_verl.config.compose import compose_config
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
from speciarl_verl.data.row_check import BadRowsError


@pytest.fixture(scope="module")
def shipped_data_config(tmp_path_factory):
    """``data`` of the shipped speciarl_grpo config, with a private cache and verl's filter run in-process."""
    config = compose_config("speciarl_grpo").data
    with open_dict(config):
        config.cache_dir = str(tmp_path_factory.mktemp("verl-cache"))
        # in-process: datasets forks a pool even for one worker, and a fork after torch has started its
        # thread pool can deadlock the child on this 2-core machine
        config.filter_overlong_prompts_workers = None
    return config


@pytest.fixture(scope="module")
def verl_model(tiny_vl_dir):
    from verl.utils import hf_processor, hf_tokenizer

    return hf_tokenizer(str(tiny_vl_dir)), hf_processor(str(tiny_vl_dir))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    spec = SourceSpec("synthetic_shapes", ".", "train", subset=6)
    out = tmp_path_factory.mktemp("rows") / "train.parquet"
    return build_parquet(spec, out, BuildOptions(seed=0, progress=False)).parquet


def test_every_shipped_config_names_the_checked_dataset(shipped_data_config):
    from verl.utils.dataset.rl_dataset import get_dataset_class

    from speciarl_verl.verl_ext.checked_dataset import CheckedRLHFDataset

    assert get_dataset_class(shipped_data_config) is CheckedRLHFDataset


def test_a_good_file_loads_as_verl_reads_it(good, shipped_data_config, verl_model):
    from verl.trainer.ppo.utils import create_rl_dataset

    from speciarl_verl.verl_ext.checked_dataset import CheckedRLHFDataset

    tokenizer, processor = verl_model
    for is_train in (True, False):
        dataset = create_rl_dataset([str(good)], shipped_data_config, tokenizer, processor, is_train=is_train)
        assert type(dataset) is CheckedRLHFDataset and len(dataset) == 6
    item = dataset[5]
    assert item["extra_info"]["index"] == 5 and item["reward_model"]["ground_truth"]


def test_a_bad_file_is_refused_before_verl_reads_a_row(good, tmp_path, shipped_data_config, verl_model):
    from verl.trainer.ppo.utils import create_rl_dataset

    rows = pq.read_table(good).to_pylist()
    rows[2]["reward_model"]["ground_truth"] = None
    rows[4]["images"][0]["bytes"] = b"not an image"
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(good)), bad)

    tokenizer, processor = verl_model
    with pytest.raises(BadRowsError) as caught:
        create_rl_dataset([str(good), str(bad)], shipped_data_config, tokenizer, processor)
    message = str(caught.value)
    assert message.startswith(
        f"{bad}: 2 of 6 rows are bad: row 2 (index 2, data_source 'synthetic_shapes'): no ground truth "
        "(reward_model.ground_truth is null); row 4 (index 4, data_source 'synthetic_shapes'): image 0 unreadable "
        "(UnidentifiedImageError: cannot identify image file)"
    )
    assert str(good) not in message
    # refused in our override, before verl's own reader (datasets.load_dataset, the overlong filter) ran
    frames = [(frame.filename, frame.name) for frame in traceback.extract_tb(caught.value.__traceback__)]
    (ours, ours_name), (checker, checker_name) = frames[-2:]
    assert ours.endswith("speciarl_verl/verl_ext/checked_dataset.py") and ours_name == "_read_files_and_tokenize"
    assert checker.endswith("speciarl_verl/data/row_check.py") and checker_name == "check_files"
    assert not any("/datasets/" in path or name == "maybe_filter_out_long_prompts" for path, name in frames)
