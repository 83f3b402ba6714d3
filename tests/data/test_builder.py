"""The builder: row layout, original bytes, determinism, subsets, mixed builds, manifest, bad input."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest

from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet, list_records, manifest_path
from speciarl_verl.data.source_record import DataSourceError, ProblemLog
from speciarl_verl.prompts import get_policy_prompt

QUIET = BuildOptions(progress=False)


def rows(path):
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize(
    ("dataset", "root_fixture", "split", "expected_rows", "expected_classes"),
    [
        ("cub200", "cub_root", "train", 3, 3),
        ("fgvc_aircraft", "fgvc_root", "test", 2, 2),
        ("flowers102", "flowers_root", "train", 2, 2),
        ("food101", "food_root", "test", 3, 3),
        ("oxford_pets", "pets_root", "trainval", 3, 3),
        ("stanford_cars", "cars_root", "train", 3, 3),
    ],
)
def test_each_layout_builds_rows_that_carry_the_original_bytes(
    request, tmp_path, dataset, root_fixture, split, expected_rows, expected_classes
):
    root = request.getfixturevalue(root_fixture)
    out = tmp_path / "out" / f"{dataset}.parquet"
    report = build_parquet(SourceSpec(dataset, root, split), out, QUIET)
    table = rows(out)
    assert report.rows == len(table) == expected_rows
    assert len(report.sources[0].classes) == expected_classes
    prompt = get_policy_prompt("general")
    for position, row in enumerate(table):
        info = row["extra_info"]
        assert row["data_source"] == dataset
        assert row["prompt"] == [{"role": "user", "content": "<image>" + prompt.text}]
        assert row["prompt"][0]["content"].count("<image>") == 1
        assert row["reward_model"]["style"] == "model" and row["reward_model"]["ground_truth"]
        assert info["index"] == position and info["split"] == split
        assert info["prompt_version"] == prompt.version
        # the exact bytes of the file the record points at
        assert row["images"][0]["bytes"] == (root / info["source_file"]).read_bytes()
        assert info["reencoded"] == ""


def test_rows_carry_hierarchy_and_synonyms(fgvc_root, cub_root, tmp_path):
    build_parquet(SourceSpec("fgvc_aircraft", fgvc_root, "train"), tmp_path / "fgvc.parquet", QUIET)
    fgvc = {r["extra_info"]["image_id"]: r for r in rows(tmp_path / "fgvc.parquet")}
    assert fgvc["0056978"]["reward_model"]["ground_truth"] == "BAE 146-200"
    assert fgvc["0056978"]["extra_info"]["parents"] == ["BAE 146", "British Aerospace"]
    build_parquet(SourceSpec("cub200", cub_root, "train"), tmp_path / "cub.parquet", QUIET)
    cub = {r["extra_info"]["image_id"]: r["extra_info"] for r in rows(tmp_path / "cub.parquet")}
    assert cub["5"]["synonyms"] == ["Brewer's Blackbird"] and cub["5"]["class_name"] == "009.Brewer_Blackbird"


def test_png_inside_a_jpg_file_is_kept_as_is(pets_root, tmp_path):
    build_parquet(SourceSpec("oxford_pets", pets_root, "test"), tmp_path / "pets.parquet", QUIET)
    first = rows(tmp_path / "pets.parquet")[0]
    assert first["extra_info"]["image_id"] == "Abyssinian_2"
    assert first["extra_info"]["image_format"] == "PNG" and first["extra_info"]["reencoded"] == ""
    assert first["images"][0]["bytes"].startswith(b"\x89PNG")


def test_an_image_pillow_reads_only_in_another_container_is_reencoded_and_flagged(cub_root, tmp_path):
    import io

    from PIL import Image

    path = cub_root / "CUB_200_2011" / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0082_524.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(buffer, "TIFF")
    path.write_bytes(buffer.getvalue())
    build_parquet(SourceSpec("cub200", cub_root, "train"), tmp_path / "cub.parquet", QUIET)
    converted = {r["extra_info"]["image_id"]: r for r in rows(tmp_path / "cub.parquet")}["3"]
    assert converted["extra_info"]["reencoded"] == "TIFF -> PNG"
    assert converted["images"][0]["bytes"].startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(converted["images"][0]["bytes"])).getpixel((0, 0)) == (10, 200, 30)


def test_same_inputs_give_byte_identical_parquet_and_manifest(food_root, tmp_path):
    spec = SourceSpec("food101", food_root, "train", subset=2)
    first = build_parquet(spec, tmp_path / "a" / "food.parquet", BuildOptions(seed=7, progress=False))
    second = build_parquet(spec, tmp_path / "b" / "food.parquet", BuildOptions(seed=7, progress=False, workers=1))
    assert first.parquet.read_bytes() == second.parquet.read_bytes()
    assert first.manifest.read_text() == second.manifest.read_text()
    assert first.sha256 == second.sha256


def test_output_does_not_depend_on_the_process(food_root, tmp_path):
    # string hashing is randomised per process; the draw and the bytes must not be
    import os
    import subprocess
    import sys

    code = (
        "import sys; from speciarl_verl.data.builder import *; "
        "build_parquet(SourceSpec('food101', sys.argv[1], 'train', subset=2), sys.argv[2], "
        "BuildOptions(seed=5, progress=False))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"p{hash_seed}" / "food.parquet"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(food_root), str(out)], check=True, env=env)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_builder_and_cli_import_neither_verl_torch_nor_datasets():
    import subprocess
    import sys

    code = (
        "import sys, speciarl_verl.data.builder, speciarl_verl.data.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'verl', 'torch', 'transformers', 'datasets'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_subset_draw_depends_on_the_seed_and_equals_its_part_of_a_mixed_build(cub_root, food_root, tmp_path):
    drawn = {}
    for seed in range(6):
        build_parquet(
            SourceSpec("food101", food_root, "test", subset=2),
            tmp_path / f"s{seed}.parquet",
            BuildOptions(seed=seed, progress=False),
        )
        drawn[seed] = [r["extra_info"]["image_id"] for r in rows(tmp_path / f"s{seed}.parquet")]
    assert all(len(ids) == 2 and len(set(ids)) == 2 for ids in drawn.values())
    assert len({tuple(ids) for ids in drawn.values()}) > 1  # six seeds do not all draw the same pair
    specs = [SourceSpec("cub200", cub_root, "train", subset=2), SourceSpec("food101", food_root, "test", subset=2)]
    build_parquet(specs, tmp_path / "mixed.parquet", BuildOptions(seed=3, progress=False))
    mixed = rows(tmp_path / "mixed.parquet")
    assert [r["data_source"] for r in mixed] == ["cub200", "cub200", "food101", "food101"]
    assert [r["extra_info"]["index"] for r in mixed] == [0, 1, 2, 3]
    assert [r["extra_info"]["image_id"] for r in mixed[2:]] == drawn[3]


def test_manifest_counts_classes_and_records_sources(cub_root, food_root, tmp_path):
    specs = [SourceSpec("cub200", cub_root, "train"), SourceSpec("food101", food_root, "train", subset=2)]
    report = build_parquet(specs, tmp_path / "train.parquet", BuildOptions(seed=42, prompt="specific", progress=False))
    assert report.manifest == manifest_path(tmp_path / "train.parquet") == tmp_path / "train.manifest.json"
    manifest = json.loads(report.manifest.read_text())
    assert manifest["rows"] == 5 and manifest["seed"] == 42 and manifest["parquet"] == "train.parquet"
    assert manifest["prompt"]["name"] == "specific"
    assert manifest["prompt"]["version"] == get_policy_prompt("specific").version
    cub, food = manifest["sources"]
    assert cub["classes"] == {"Black footed Albatross": 1, "Laysan Albatross": 1, "Brewer Blackbird": 1}
    assert cub["available"] == 3 and cub["source"] == "raw" and cub["subset"] is None
    assert food["rows"] == 2 and food["subset"] == 2 and sum(food["classes"].values()) == 2
    assert manifest["sha256"] == report.sha256


def test_pixel_limits_go_into_every_image_entry(flowers_root, tmp_path):
    options = BuildOptions(min_pixels=3136, max_pixels=12544, progress=False)
    build_parquet(SourceSpec("flowers102", flowers_root, "test"), tmp_path / "f.parquet", options)
    for row in rows(tmp_path / "f.parquet"):
        assert row["images"][0]["min_pixels"] == 3136 and row["images"][0]["max_pixels"] == 12544
    with pytest.raises(ValueError, match="larger than max_pixels"):
        BuildOptions(min_pixels=100, max_pixels=10)


def test_missing_image_names_the_file_and_list_line(cub_root, tmp_path):
    (cub_root / "CUB_200_2011" / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0082_524.jpg").unlink()
    with pytest.raises(DataSourceError, match=r"images.txt line 3: image file missing: .*Laysan_Albatross_0082_524"):
        build_parquet(SourceSpec("cub200", cub_root, "train"), tmp_path / "cub.parquet", QUIET)
    assert not (tmp_path / "cub.parquet").exists()
    assert list(tmp_path.glob(".*tmp*")) == []  # the temporary file is gone too


def test_corrupt_image_fails_without_touching_an_existing_output(cub_root, tmp_path):
    out = tmp_path / "out" / "cub.parquet"
    out.parent.mkdir()
    out.write_bytes(b"previous build")
    path = cub_root / "CUB_200_2011" / "images" / "009.Brewer_Blackbird" / "Brewer_Blackbird_0028_2682.jpg"
    path.write_bytes(path.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(DataSourceError, match=r"images.txt line 5 \(.*Brewer_Blackbird_0028_2682.jpg\): cannot decode"):
        build_parquet(SourceSpec("cub200", cub_root, "train"), out, QUIET)
    assert out.read_bytes() == b"previous build"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cub.parquet"]  # no temp file, no manifest


def test_skip_bad_reports_and_a_subset_still_reaches_its_size(cub_root, tmp_path):
    path = cub_root / "CUB_200_2011" / "images" / "009.Brewer_Blackbird" / "Brewer_Blackbird_0028_2682.jpg"
    path.write_bytes(b"not an image")
    labels = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("2 1", "2 77"))
    report = build_parquet(
        SourceSpec("cub200", cub_root, "train"), tmp_path / "cub.parquet", BuildOptions(skip_bad=True, progress=False)
    )
    assert report.rows == 1
    assert len(report.skipped) == 2
    assert any("class id 77" in s for s in report.skipped) and any("cannot decode" in s for s in report.skipped)
    manifest = json.loads(report.manifest.read_text())
    assert manifest["skipped"] == 2 and manifest["sources"][0]["skipped"] == report.skipped
    # a subset of 1 from {good, bad}: whatever the draw, the good image fills it
    for seed in range(4):
        again = build_parquet(
            SourceSpec("cub200", cub_root, "train", subset=1),
            tmp_path / f"sub{seed}.parquet",
            BuildOptions(seed=seed, skip_bad=True, progress=False),
        )
        assert [r["extra_info"]["image_id"] for r in rows(again.parquet)] == ["3"]


def test_empty_split_is_an_error_even_when_skipping(food_root, tmp_path):
    (food_root / "food-101" / "meta" / "test.txt").write_text("\n")
    for skip in (False, True):
        with pytest.raises(DataSourceError, match=r"food101 split 'test' .*no images listed \(empty split\)"):
            build_parquet(
                SourceSpec("food101", food_root, "test"),
                tmp_path / "f.parquet",
                BuildOptions(skip_bad=skip, progress=False),
            )
    assert not (tmp_path / "f.parquet").exists()


def test_subset_larger_than_the_split_is_refused(food_root, tmp_path):
    with pytest.raises(DataSourceError, match="asked for a subset of 10 but only 3 images"):
        build_parquet(SourceSpec("food101", food_root, "test", subset=10), tmp_path / "f.parquet", QUIET)


def test_unknown_prompt_is_refused_before_anything_is_written(food_root, tmp_path):
    with pytest.raises(ValueError, match="Unknown policy prompt: chatty"):
        build_parquet(
            SourceSpec("food101", food_root, "test"),
            tmp_path / "out" / "f.parquet",
            BuildOptions(prompt="chatty", progress=False),
        )
    assert not (tmp_path / "out").exists()


def test_reference_sampler_draws_as_the_methods_code_does(cub_root, food_root, tmp_path):
    # the method: one generator seeded once, then rng.sample over each split's own image order, sources in turn
    def image_ids(dataset, root):
        return [r.image_id for r in list_records(SourceSpec(dataset, root, "train"), ProblemLog())]

    cub, food = image_ids("cub200", cub_root), image_ids("food101", food_root)
    rng = random.Random(7)
    expected = [cub[i] for i in rng.sample(range(len(cub)), 2)] + [food[i] for i in rng.sample(range(len(food)), 2)]
    specs = [SourceSpec("cub200", cub_root, "train", subset=2), SourceSpec("food101", food_root, "train", subset=2)]
    out = tmp_path / "mixed.parquet"
    build_parquet(specs, out, BuildOptions(seed=7, sampler="reference", progress=False))
    assert [r["extra_info"]["image_id"] for r in rows(out)] == expected
    assert json.loads(manifest_path(out).read_text())["sampler"] == "reference"
    # under our per-source sampler a source draws the same images alone as inside a mixed build
    options = BuildOptions(seed=7, progress=False)
    build_parquet(specs[1], tmp_path / "food.parquet", options)
    build_parquet(specs, out, options)
    food_alone = [r["extra_info"]["image_id"] for r in rows(tmp_path / "food.parquet")]
    assert food_alone == [r["extra_info"]["image_id"] for r in rows(out)][2:]


def test_an_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="sampler must be one of"):
        BuildOptions(sampler="stratified")
