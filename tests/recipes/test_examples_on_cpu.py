"""The examples: our reward in a stock verl recipe, and a folder-per-class dataset to a training command."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from speciarl_verl import RewardSettings
from speciarl_verl.config.compose import compose_config
from speciarl_verl.verl_ext.config_checks import check_group_stage, group_stage_class
from speciarl_verl.verl_ext.group_stage import GroupRewardReplayBuffer

ROOT = Path(__file__).resolve().parents[2]


def compose_verl(overrides):
    """verl's own ppo_trainer config with ``overrides``, as a plain ``main_ppo`` call composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


def test_reward_drops_into_verls_own_qwen25vl_recipe(run_script, validate_on_cpu):
    script = ROOT / "examples" / "speciarl_reward_in_a_verl_recipe.sh"
    result = run_script(script, "--dry-run", "data.train_files=/data/train.parquet")
    argv = result.stdout.splitlines()
    assert result.returncode == 0 and argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    config = compose_verl(argv[3:])
    validate_on_cpu(config)  # no LoRA in this recipe: nothing of the validation is skipped
    settings = RewardSettings.from_verl_config(config)
    check_group_stage(config, settings)
    assert group_stage_class(config) is GroupRewardReplayBuffer
    assert (settings.scheme, settings.judge.llm.endpoints) == ("dynamic", ("http://127.0.0.1:8001/v1",))
    assert config.data.train_files == "/data/train.parquet"  # the caller's overrides come last

    # without the block it is verl's recipe with verl's default reward, which SpeciaRL does not touch
    block_start = argv.index("reward.reward_manager.name=speciarl")
    plain = compose_verl(argv[3:block_start])
    assert plain.reward.reward_manager.name == "naive" and group_stage_class(plain) is None


def make_image_tree(root: Path, classes: dict[str, int], size=(24, 16)) -> None:
    for shade, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (size[0] + i, size[1]), (40 * shade, 20 * i, 90)).save(folder / f"photo_{i}.jpg")
        (folder / ".DS_Store").write_bytes(b"not an image")


def run_example(*args: str) -> subprocess.CompletedProcess:
    script = ROOT / "examples" / "image_folder_dataset.py"
    return subprocess.run([sys.executable, str(script), *args, "--no-progress"], capture_output=True, text=True)


def test_image_folder_becomes_parquet_and_a_training_command(tmp_path, dry_run, validate_on_cpu):
    make_image_tree(tmp_path / "birds", {"001.Black_footed_Albatross": 10, "Laysan_Albatross": 6, "Blue_Jay": 4})
    hierarchy = tmp_path / "hierarchy.json"
    hierarchy.write_text(json.dumps({"Black footed Albatross": ["albatross", "seabird"]}))
    out = tmp_path / "out"
    source = ("--root", str(tmp_path / "birds"), "--name", "my_birds", "--val-fraction", "0.2")
    source += ("--hierarchy", str(hierarchy))
    result = run_example(*source, "--out-dir", str(out))
    assert result.returncode == 0, result.stderr

    train = pq.read_table(out / "my_birds_train.parquet").to_pylist()
    val = pq.read_table(out / "my_birds_val.parquet").to_pylist()
    files = lambda rows: {r["extra_info"]["source_file"] for r in rows}  # noqa: E731
    assert not files(train) & files(val) and len(files(train) | files(val)) == 20
    # 20 % held out per class, at least one image: 2 + 1 + 1
    assert sorted(r["reward_model"]["ground_truth"] for r in val) == [
        "Black footed Albatross",
        "Black footed Albatross",
        "Blue Jay",
        "Laysan Albatross",
    ]
    albatross = next(r for r in train if r["extra_info"]["class_name"] == "001.Black_footed_Albatross")
    assert albatross["extra_info"]["parents"] == ["albatross", "seabird"]
    assert {r["data_source"] for r in train + val} == {"my_birds"}
    assert {r["extra_info"]["class_id"] for r in train} == {0, 1, 2}  # sorted folder names
    assert train[0]["prompt"][0]["content"].startswith("<image>")

    # the printed command is the GPU recipe; its dry run composes and validates with the small batch it needs
    printed = shlex.split(result.stdout.splitlines()[-1])
    assert printed[:2] == ["bash", "recipes/run_speciarl_qwen25vl.sh"]
    plan = dry_run(Path(printed[1]).name, *printed[2:])
    config = compose_config(*plan.verl_call())
    validate_on_cpu(config)
    assert config.data.train_files == str(out / "my_birds_train.parquet")
    assert config.data.train_batch_size == 16 == len(train)  # the largest power of two <= the 16 rows
    assert not plan.has("speciarl_verl.cli")  # nothing to build: the files are given

    # same inputs, same bytes
    again = tmp_path / "again"
    assert run_example(*source, "--out-dir", str(again)).returncode == 0
    assert (again / "my_birds_val.parquet").read_bytes() == (out / "my_birds_val.parquet").read_bytes()


def test_image_folder_with_its_own_split_and_bad_inputs(tmp_path):
    make_image_tree(tmp_path / "cars" / "train", {"Audi_A4": 3, "BMW_M3": 2})
    make_image_tree(tmp_path / "cars" / "test", {"Audi_A4": 1, "BMW_M3": 1})
    out = tmp_path / "out"
    result = run_example("--root", str(tmp_path / "cars"), "--name", "my_cars", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    val = pq.read_table(out / "my_cars_val.parquet").to_pylist()
    held_out = sorted(r["extra_info"]["source_file"] for r in val)
    assert held_out == ["test/Audi_A4/photo_0.jpg", "test/BMW_M3/photo_0.jpg"]
    assert len(pq.read_table(out / "my_cars_train.parquet")) == 5

    (tmp_path / "cars" / "train" / "Audi_A4" / "photo_9.jpg").write_bytes(b"truncated")
    broken = run_example("--root", str(tmp_path / "cars"), "--name", "my_cars", "--out-dir", str(tmp_path / "b"))
    assert broken.returncode == 2 and "photo_9.jpg" in broken.stderr
    assert not (tmp_path / "b" / "my_cars_train.parquet").exists()


@pytest.mark.parametrize(("name", "message"), [("cub200", "taken by a built-in"), ("my-birds", "letters, digits")])
def test_image_folder_refuses_a_bad_dataset_name(tmp_path, name, message):
    make_image_tree(tmp_path / "x", {"a": 2})
    result = run_example("--root", str(tmp_path / "x"), "--name", name, "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"Blue Jay": ["jay",]}', "not valid JSON (Expecting value at line 1 column 21)"),
        ('{"Blue Jay": "jay"}', "expected a JSON object of class name -> list of coarser names"),
        ('["jay"]', "expected a JSON object of class name -> list of coarser names"),
    ],
)
def test_image_folder_names_a_bad_hierarchy_file(tmp_path, content, problem):
    make_image_tree(tmp_path / "x", {"Blue_Jay": 2})
    hierarchy = tmp_path / "hierarchy.json"
    hierarchy.write_text(content)
    args = ("--root", str(tmp_path / "x"), "--name", "my_jays", "--out-dir", str(tmp_path / "out"))
    result = run_example(*args, "--hierarchy", str(hierarchy))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --hierarchy {hierarchy}: {problem}"), result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
