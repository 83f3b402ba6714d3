"""CoOp split files and Hugging Face copies give the same ground truths, ids and parents as the raw layout."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
from speciarl_verl.data.coop_split import read_coop_split
from speciarl_verl.data.hf_source import looks_like_hf_copy, read_hf_source
from speciarl_verl.data.source_record import DataSourceError, ProblemLog


def coop(dataset, root, file, split, skip_bad=False):
    problems = ProblemLog(skip_bad)
    return read_coop_split(get_adapter(dataset), root, file, split, problems), problems


def test_coop_flowers_matches_the_official_names_and_ids(flowers_root):
    file = flowers_root / "flowers-102" / "split_zhou_OxfordFlowers.json"
    train, _ = coop("flowers102", flowers_root, file, "train")
    assert [(r.image_id, r.cls.class_id, r.cls.ground_truth) for r in train] == [
        ("image_00003", 0, "pink primrose"),
        ("image_00001", 76, "passion flower"),
    ]
    assert train[1].source_file == "flowers-102/jpg/image_00001.jpg" and train[1].image_path.is_file()


def test_coop_food_matches_classes_by_name_not_by_its_sorted_index(food_root):
    file = food_root / "food-101" / "split_zhou_Food101.json"
    train, _ = coop("food101", food_root, file, "train")
    val, _ = coop("food101", food_root, file, "val")
    # CoOp's label 1 is cheese_plate; the official class id of cheese_plate is 17, of cheesecake 16
    assert [(r.image_id, r.cls.class_id) for r in train] == [("apple_pie/1005649", 0), ("cheese_plate/1007057", 17)]
    assert val[0].cls.class_id == 16 and val[0].cls.ground_truth == "cheesecake"


def test_coop_pets_gets_the_official_case_and_species(pets_root):
    file = pets_root / "oxford-iiit-pet" / "split_zhou_OxfordPets.json"
    val, _ = coop("oxford_pets", pets_root, file, "val")
    (sphynx,) = val
    assert sphynx.cls.ground_truth == "Sphynx" and sphynx.cls.parents == ("cat",) and sphynx.cls.class_id == 33
    train, _ = coop("oxford_pets", pets_root, file, "train")
    assert [r.cls.parents for r in train] == [("cat",), ("dog",)]
    assert [r.cls.ground_truth for r in train] == ["Abyssinian", "american bulldog"]


def test_coop_rows_with_an_unknown_class_or_clashing_label_are_reported(food_root, tmp_path):
    file = tmp_path / "split.json"
    rows = [
        ["apple_pie/1005649.jpg", 0, "apple_pie"],
        ["apple_pie/101251.jpg", 0, "cheesecake"],
        ["cheesecake/1004515.jpg", 5, "sushi roll"],
    ]
    file.write_text(json.dumps({"train": rows, "val": [], "test": []}))
    with pytest.raises(DataSourceError, match=r"split.json train\[1\]: label 0 is 'cheesecake' here but 'apple_pie'"):
        coop("food101", food_root, file, "train")
    kept, problems = coop("food101", food_root, file, "train", skip_bad=True)
    assert len(kept) == 1 and len(problems.problems) == 2
    assert "train[2]: class 'sushi roll' is not a food101 class" in problems.problems[1]
    with pytest.raises(DataSourceError, match=r"no split 'trainval'"):
        coop("food101", food_root, file, "trainval")


def test_coop_is_refused_for_a_dataset_without_the_format(cub_root, tmp_path):
    with pytest.raises(DataSourceError, match="CoOp split files are supported for"):
        coop("cub200", cub_root, tmp_path / "x.json", "train")


def test_build_with_a_coop_split_file(pets_root, tmp_path):
    spec = SourceSpec(
        "oxford_pets", pets_root, "test", split_file=pets_root / "oxford-iiit-pet" / "split_zhou_OxfordPets.json"
    )
    assert spec.resolved_source() == "coop"
    report = build_parquet(spec, tmp_path / "pets.parquet", BuildOptions(progress=False))
    table = pq.read_table(report.parquet).to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in table] == ["Abyssinian", "american bulldog"]
    assert json.loads(report.manifest.read_text())["sources"][0]["source"] == "coop"


@pytest.mark.parametrize("copy", ["pets_hf", "pets_parquet"])
def test_hf_copy_maps_class_labels_to_official_classes(hf_copy, copy, tmp_path):
    source = hf_copy / copy
    assert looks_like_hf_copy(source)
    records = read_hf_source(get_adapter("oxford_pets"), source, "train", ProblemLog(), cache_dir=str(tmp_path / "c"))
    assert [r.cls.ground_truth for r in records] == ["Abyssinian", "american bulldog", "Sphynx", "american bulldog"]
    assert [r.cls.class_id for r in records] == [0, 1, 33, 1]
    assert [r.cls.parents for r in records][:3] == [("cat",), ("dog",), ("cat",)]
    assert records[2].source_file == "hf:train/2"


def test_build_from_an_hf_copy_keeps_the_stored_bytes(hf_copy, tmp_path):
    import datasets

    spec = SourceSpec("oxford_pets", hf_copy / "pets_hf", "test")
    assert spec.resolved_source() == "hf"
    report = build_parquet(spec, tmp_path / "out" / "pets.parquet", BuildOptions(progress=False))
    table = pq.read_table(report.parquet).to_pylist()
    original = datasets.load_from_disk(str(hf_copy / "pets_hf"))["test"].cast_column(
        "image", datasets.Image(decode=False)
    )
    assert [r["images"][0]["bytes"] for r in table] == [row["image"]["bytes"] for row in original]
    assert [r["reward_model"]["ground_truth"] for r in table] == ["Sphynx", "Abyssinian"]


def test_hf_copy_without_class_names_is_refused(tmp_path):
    import datasets
    from PIL import Image

    plain = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (4, 4))], "label": [3]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    plain.save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(DataSourceError, match="not a ClassLabel"):
        read_hf_source(get_adapter("food101"), tmp_path / "plain", "train", ProblemLog())
    datasets.DatasetDict({"train": plain}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(DataSourceError, match="no split 'test'"):
        read_hf_source(get_adapter("food101"), tmp_path / "dict", "test", ProblemLog())


def test_a_stray_parquet_beside_a_raw_layout_does_not_make_it_an_hf_copy(cub_root):
    (cub_root / "CUB_200_2011" / "old_build.parquet").write_bytes(b"PAR1")
    assert not looks_like_hf_copy(cub_root / "CUB_200_2011")
    assert SourceSpec("cub200", cub_root / "CUB_200_2011", "train").resolved_source() == "raw"
