"""The graded-visibility shapes adapter: the family always shows, the colour clearly, faintly or not at all."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from speciarl_verl.core.categories import Category
from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.data.adapters.synthetic_hidden import (
    COLOURS,
    HELD_OUT,
    SPECIES,
    SPLIT_SIZES,
    render_hidden,
    render_hidden_png,
    species_in_split,
    visibility_of,
)
from speciarl_verl.data.adapters.synthetic_shapes import FAMILIES
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
from speciarl_verl.data.source_record import ProblemLog
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.verifier import VerificationRequest

DATASET = "synthetic_shapes_hidden"
IN_DOMAIN_SHARES = {"clear": 0.5, "faint": 0.25, "hidden": 0.25}
OOD_SHARES = {"clear": 0.25, "faint": 0.25, "hidden": 0.5}


def records(split):
    return get_adapter(DATASET).read_raw(None, split, ProblemLog())


def build_rows(tmp_path, dataset, split, subset=None) -> list[dict]:
    out = build_parquet(
        SourceSpec(dataset, ".", split, subset=subset),
        tmp_path / f"{dataset}_{split}.parquet",
        BuildOptions(seed=0, progress=False),
    )
    return pq.read_table(out.parquet).to_pylist()


def shares(visibilities) -> dict[str, float]:
    counts = Counter(visibilities)
    return {name: count / sum(counts.values()) for name, count in sorted(counts.items())}


def pixels(image) -> np.ndarray:
    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    return np.asarray(image.convert("RGB"), dtype=int)


def shape_mask(array: np.ndarray) -> np.ndarray:
    """The non-background pixels (the corner is background: the shape never reaches it)."""
    return np.abs(array - array[0, 0]).sum(axis=2) > 60


def centre_fill(array: np.ndarray) -> np.ndarray:
    """The colour at the centroid of the shape's mask (inside every family: disc, square, triangle, cross)."""
    mask = shape_mask(array)
    rows, cols = np.nonzero(mask)
    centre = round(rows.mean()), round(cols.mean())
    assert mask[centre], "the centroid fell outside the shape"
    return array[centre]


def box_fill(array: np.ndarray) -> float:
    """Share of the shape's bounding box the shape covers: an outline fact independent of the colour."""
    mask = shape_mask(array)
    rows, cols = np.nonzero(mask)
    return float(mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].mean())


@pytest.fixture(scope="module")
def val_rows(tmp_path_factory) -> list[dict]:
    return build_rows(tmp_path_factory.mktemp("hidden"), DATASET, "val")


def indices(split, visibility) -> list[int]:
    return [i for i in range(SPLIT_SIZES[split]) if visibility_of(split, i) == visibility]


def test_held_out_pairs_are_four_and_training_still_sees_every_colour_and_family():
    train = {(s.colour, s.family) for s in species_in_split("train")}
    ood = {(s.colour, s.family) for s in species_in_split("test_ood")}
    assert len(train) == 28 and ood == set(HELD_OUT) and len(ood) == 4 and not train & ood
    assert len(train | ood) == len(SPECIES) == len(COLOURS) * len(FAMILIES) == 32
    assert {c for c, _ in train} == set(COLOURS) and {f for _, f in train} == set(FAMILIES)
    assert {f for _, f in ood} == set(FAMILIES)  # one held-out colour per family
    assert species_in_split("val") == species_in_split("test") == species_in_split("train")
    sizes = {split: len(records(split)) for split in SPLIT_SIZES}
    assert sizes == {"train": 28 * 32, "val": 28 * 4, "test": 28 * 4, "test_ood": 4 * 8}


@pytest.mark.parametrize("split", ["train", "val", "test", "test_ood"])
def test_visibility_shares_are_exact_per_split_and_per_class_and_named_in_the_image_id(split):
    expected = OOD_SHARES if split == "test_ood" else IN_DOMAIN_SHARES
    rows = records(split)
    assert shares(r.visibility for r in rows) == expected
    by_class: dict[str, list[str]] = {}
    for record in rows:
        by_class.setdefault(record.cls.class_name, []).append(record.visibility)
        assert record.image_id.startswith(f"{record.cls.class_name}_{record.visibility}_")
    assert len(by_class) == len(species_in_split(split))
    assert all(shares(v) == expected for v in by_class.values())


def test_built_parquet_records_the_visibility_the_image_id_names(tmp_path):
    rows = build_rows(tmp_path, DATASET, "test_ood")
    assert len(rows) == 4 * SPLIT_SIZES["test_ood"]
    for row in rows:
        extra = row["extra_info"]
        assert extra["image_id"].split("_")[-2] == extra["visibility"], extra["image_id"]
        assert row["reward_model"]["ground_truth"] == extra["image_id"].rsplit("_", 2)[0].replace("_", " ")
    assert shares(r["extra_info"]["visibility"] for r in rows) == OOD_SHARES
    # the image in the row shows what the field says: a grey fill exactly where the colour is hidden
    for row in rows:
        fill = centre_fill(pixels(row["images"][0]["bytes"]))
        assert (len(set(fill)) == 1) == (row["extra_info"]["visibility"] == "hidden"), row["extra_info"]["image_id"]


def test_a_photo_dataset_row_and_a_plain_shapes_row_record_an_empty_visibility(tmp_path, pets_root):
    shapes = build_rows(tmp_path, "synthetic_shapes", "test", subset=6)
    out = build_parquet(
        SourceSpec("oxford_pets", pets_root, "test"), tmp_path / "pets.parquet", BuildOptions(seed=0, progress=False)
    )
    pets = pq.read_table(out.parquet).to_pylist()
    assert shapes and pets
    assert all("visibility" in r["extra_info"] and r["extra_info"]["visibility"] == "" for r in shapes + pets)


def test_hidden_images_are_grey_for_every_class_in_every_split():
    for split in SPLIT_SIZES:
        for species in species_in_split(split):
            for index in indices(split, "hidden")[:2]:
                red, green, blue = centre_fill(pixels(render_hidden(species, split, index)))
                assert red == green == blue, (species.name, split, index)


def test_clear_fills_are_near_their_colour_and_faint_ones_lie_between_it_and_grey():
    for species in SPECIES:
        base = np.array(COLOURS[species.colour])
        split = "test_ood" if (species.colour, species.family) in HELD_OUT else "test"
        clear = [centre_fill(pixels(render_hidden(species, split, i))) for i in indices(split, "clear")]
        faint = [centre_fill(pixels(render_hidden(species, split, i))) for i in indices(split, "faint")]
        assert clear and faint
        for fill in clear:
            nearest = min(COLOURS, key=lambda name: np.abs(np.array(COLOURS[name]) - fill).sum())
            assert nearest == species.colour and np.abs(fill - base).max() <= 20, (species.name, fill)

        def spread(fill):  # 0 for a grey
            return int(fill.max() - fill.min())

        assert max(map(spread, faint)) < min(map(spread, clear)), species.name
        assert min(map(spread, faint)) > 0, species.name  # faint, not hidden


def test_the_outline_of_a_hidden_image_is_its_familys():
    # the share of the bounding box each family covers, measured on clear images of one colour
    reference = {
        family: box_fill(pixels(render_hidden(next(s for s in SPECIES if s.family == family), "train", 0)))
        for family in FAMILIES
    }
    assert len({round(v, 2) for v in reference.values()}) == len(FAMILIES)  # the measure tells families apart
    for split in ("test", "test_ood"):
        for species in species_in_split(split):
            for index in indices(split, "hidden"):
                fill = box_fill(pixels(render_hidden(species, split, index)))
                nearest = min(reference, key=lambda family: abs(reference[family] - fill))
                assert nearest == species.family, (species.name, split, index, fill, reference)


def test_rendering_is_deterministic_and_images_differ_by_number_and_split():
    record = next(r for r in records("test") if r.image_id == "blue_triangle_hidden_0003")
    species = SPECIES[record.cls.class_id]
    assert (species.colour, species.family) == ("blue", "triangle")
    assert record.read_image() == render_hidden_png(species, "test", 3) == render_hidden_png(species, "test", 3)
    assert record.source_file == "rendered:test/blue_triangle/0003.png" and record.image_path is None
    pictures = {render_hidden_png(species, split, i) for split in ("train", "test") for i in range(8)}
    assert len(pictures) == 16


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("green cross", Category.SPECIFIC),
        ("cross", Category.LESS_SPECIFIC),
        ("shape", Category.GENERIC),
        ("red cross", None),  # another colour of the family: undecided, wrong without an LLM judge
        ("circle", None),  # another family
    ],
)
def test_the_offline_rule_tier_judges_a_hidden_row_against_its_species(val_rows, answer, expected):
    row = next(r for r in val_rows if r["extra_info"]["image_id"] == "green_cross_hidden_0003")
    assert row["extra_info"]["visibility"] == "hidden" and row["reward_model"]["ground_truth"] == "green cross"
    request = VerificationRequest.for_row("green cross", answer, DATASET, row["extra_info"])
    assert decide_offline(request) == expected
