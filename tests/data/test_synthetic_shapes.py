"""The synthetic shapes adapter: reproducible drawn images whose class can be read off, built like a benchmark."""

from __future__ import annotations

import io
from dataclasses import asdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from speciarl_verl.core.categories import Category
from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.data.adapters.synthetic_shapes import (
    COLOURS,
    FAMILIES,
    HELD_OUT,
    SPECIES,
    SPLIT_SIZES,
    render_png,
    species_in_split,
)
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
from speciarl_verl.data.source_record import DataSourceError, ProblemLog
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.verifier import VerificationRequest
from speciarl_verl.prompts import get_policy_prompt


def records(split):
    return get_adapter("synthetic_shapes").read_raw(None, split, ProblemLog())


def read_shape(png: bytes) -> tuple[str, str]:
    """(colour, family) of a rendered image, from its pixels alone: nearest base colour, then fill and balance."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    background = pixels[0, 0]
    mask = np.abs(pixels - background).sum(axis=2) > 90
    mean = pixels[mask].mean(axis=0)
    colour = min(COLOURS, key=lambda name: np.abs(np.array(COLOURS[name]) - mean).sum())
    rows, cols = np.nonzero(mask)
    box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    fill = box.mean()
    half = box.shape[0] // 2
    bottom_heavy = box[half:].sum() / max(1, box[:half].sum())
    if fill > 0.92:
        family = "square"
    elif fill > 0.7:
        family = "circle"
    elif bottom_heavy > 1.5:
        family = "triangle"
    else:
        family = "cross"
    return colour, family


def test_splits_hold_out_feature_pairs_that_training_still_covers_one_by_one():
    train = {(s.colour, s.family) for s in species_in_split("train")}
    ood = {(s.colour, s.family) for s in species_in_split("test_ood")}
    assert ood == set(HELD_OUT) and not train & ood
    assert {s.colour for s in species_in_split("test")} == {c for c, _ in train} == set(COLOURS)
    assert {f for _, f in train} == set(FAMILIES) and len(train) + len(ood) == len(SPECIES) == 16
    assert [len(records(split)) for split in SPLIT_SIZES] == [12 * SPLIT_SIZES["train"], 12 * 8, 12 * 16, 4 * 16]


def test_records_carry_the_hierarchy_nearest_first_and_images_are_reproducible_and_distinct():
    first, second = records("train"), records("train")
    record = next(r for r in first if r.image_id == "blue_triangle_0005")
    assert record.cls.ground_truth == "blue triangle" and record.cls.parents == ("triangle", "shape")
    assert record.cls.parent_levels == ("close", "far") and "shape" in record.cls.domain_nouns
    assert record.cls.class_id == SPECIES.index(next(s for s in SPECIES if s.name == "blue triangle"))
    assert record.source_file == "rendered:train/blue_triangle/0005.png" and record.image_path is None
    assert [r.read_image() for r in first[:20]] == [r.read_image() for r in second[:20]]
    # other image numbers, other splits: other pictures of the same class
    species = record.cls.class_name
    pictures = {
        render_png(s, split, i)
        for s in SPECIES
        if s.class_name == species
        for split in ("train", "test")
        for i in range(5)
    }
    assert len(pictures) == 10


@pytest.mark.parametrize("split", ["test", "test_ood"])
def test_the_class_can_be_read_from_the_pixels(split):
    for record in records(split):
        species = SPECIES[record.cls.class_id]
        assert read_shape(record.read_image()) == (species.colour, species.family), record.image_id


def test_builder_writes_the_usual_rows_and_is_byte_identical_across_builds(tmp_path):
    spec = SourceSpec("synthetic_shapes", ".", "train", subset=20)
    first = build_parquet(spec, tmp_path / "a" / "train.parquet", BuildOptions(seed=3, progress=False))
    again = build_parquet(spec, tmp_path / "b" / "train.parquet", BuildOptions(seed=3, progress=False))
    other = build_parquet(spec, tmp_path / "c" / "train.parquet", BuildOptions(seed=4, progress=False))
    assert first.sha256 == again.sha256 != other.sha256
    rows = pq.read_table(first.parquet).to_pylist()
    assert len(rows) == 20 and len({r["reward_model"]["ground_truth"] for r in rows}) > 6
    row = rows[0]
    assert row["data_source"] == "synthetic_shapes"
    assert row["prompt"] == [{"role": "user", "content": get_policy_prompt("general").user_content}]
    extra = row["extra_info"]
    family = row["reward_model"]["ground_truth"].split(" ")[1]
    assert extra["parents"] == [family, "shape"] and extra["image_format"] == "PNG"
    assert extra["parent_levels"] == ["close", "far"] and extra["domain_nouns"][0] == "shape"
    assert (extra["width"], extra["height"]) == (112, 112)
    assert (tmp_path / "a" / "train.manifest.json").is_file()


def test_an_unknown_split_names_the_known_ones():
    with pytest.raises(DataSourceError, match="test_ood"):
        records("trainval")


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("red square", Category.SPECIFIC),
        ("Red-Square", Category.SPECIFIC),
        ("square", Category.LESS_SPECIFIC),
        ("shape", Category.GENERIC),
        ("None", Category.ABSTAIN),
        ("blue square", None),  # a wrong species: deferred (wrong without an LLM judge)
        ("circle", None),  # a wrong family
        ("geometric shape", Category.GENERIC),  # a declared domain noun that is no parent
    ],
)
def test_the_offline_rule_tier_files_every_answer_level_of_the_task(prediction, expected):
    record = next(r for r in records("test") if r.cls.ground_truth == "red square")
    request = VerificationRequest.for_row(record.cls.ground_truth, prediction, "synthetic_shapes", asdict(record.cls))
    assert decide_offline(request) == expected
