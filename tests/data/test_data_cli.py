"""``speciarl data build`` / ``build-mixed`` / ``list`` through the real command parser."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from speciarl_verl.cli import main
from speciarl_verl.data.cli import parse_mixed_spec


def test_build_writes_parquet_and_manifest(cub_root, tmp_path, capsys):
    out = tmp_path / "out" / "cub.parquet"
    code = main(
        [
            "data",
            "build",
            "--dataset",
            "cub200",
            "--root",
            str(cub_root),
            "--split",
            "train",
            "--subset",
            "2",
            "--seed",
            "42",
            "--prompt",
            "specific",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pq.read_table(out).to_pylist()
    assert len(table) == 2 and table[0]["extra_info"]["prompt_name"] == "specific"
    assert json.loads((tmp_path / "out" / "cub.manifest.json").read_text())["sources"][0]["subset"] == 2
    printed = capsys.readouterr().out
    assert "cub200 train (raw): 2 rows" in printed and "wrote 2 rows" in printed


def test_build_reports_bad_input_as_an_error_exit(cub_root, tmp_path, capsys):
    (cub_root / "CUB_200_2011" / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0082_524.jpg").unlink()
    args = [
        "data",
        "build",
        "--dataset",
        "cub200",
        "--root",
        str(cub_root),
        "--split",
        "train",
        "--no-progress",
        "--out",
        str(tmp_path / "cub.parquet"),
    ]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("speciarl data build: ") and "images.txt line 3: image file missing" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "cub.parquet").exists()
    assert main([*args, "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "1 skipped" in printed and "skipped: " in printed and "Laysan_Albatross_0082_524" in printed


def build_args(root, out, dataset="cub200", *extra):
    return ["data", "build", "--dataset", dataset, "--root", str(root), "--split", "train", "--no-progress",
            "--out", str(out), *extra]  # fmt: skip


def test_unreadable_image_unknown_dataset_and_missing_root_are_one_line_exit_2(cub_root, tmp_path, capsys):
    image = cub_root / "CUB_200_2011" / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0082_524.jpg"
    image.write_bytes(b"not an image")
    out = tmp_path / "cub.parquet"
    cases = [
        (build_args(cub_root, out), f"{cub_root}/CUB_200_2011/images.txt line 3 (CUB_200_2011/images/"
         "002.Laysan_Albatross/Laysan_Albatross_0082_524.jpg): cannot decode image (UnidentifiedImageError"),
        (build_args(cub_root, out, "birds"), "Unknown dataset: birds (known: cub200, "),
        (build_args(tmp_path / "nowhere", out), f"cub200: no images.txt found under {tmp_path / 'nowhere'}"),
        (build_args(cub_root, out, "cub200", "--prompt", "nope"), "Unknown policy prompt: nope"),
        (build_args(cub_root, out, "cub200", "--subset", "0"), "subset must be positive, got 0"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.startswith(f"speciarl data build: {message}") and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_mixed_specs_and_prompt_files_are_exit_2(tmp_path, capsys):
    out = str(tmp_path / "m.parquet")
    assert main(["data", "build-mixed", "--spec", "cub200", "--out", out]) == 2
    assert capsys.readouterr().err == (
        "speciarl data build-mixed: --spec 'cub200': expected NAME=ROOT:SPLIT[:N], got 'cub200'\n"
    )
    assert main(["data", "build-mixed", "--spec", "cub200=/x:train", "--split-file", "x.json", "--out", out]) == 2
    assert capsys.readouterr().err == "speciarl data build-mixed: --split-file expects NAME=JSON, got 'x.json'\n"
    assert main(["data", "list", "--prompt-file", str(tmp_path / "p.json")]) == 2
    assert capsys.readouterr().err == f"speciarl data list: missing prompt file: {tmp_path / 'p.json'}\n"


def test_build_mixed_with_a_coop_split_file_and_a_prompt_file(cub_root, pets_root, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"cli_test_birder": "Which animal is this? Answer in <answer></answer>."}))
    out = tmp_path / "mixed.parquet"
    code = main(
        [
            "data",
            "build-mixed",
            "--spec",
            f"cub200={cub_root}:train:2",
            "--spec",
            f"oxford_pets={pets_root}:val",
            "--split-file",
            f"oxford_pets={pets_root / 'oxford-iiit-pet' / 'split_zhou_OxfordPets.json'}",
            "--prompt-file",
            str(prompts),
            "--prompt",
            "cli_test_birder",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pq.read_table(out).to_pylist()
    assert [r["data_source"] for r in table] == ["cub200", "cub200", "oxford_pets"]
    assert table[2]["reward_model"]["ground_truth"] == "Sphynx"
    assert table[0]["prompt"][0]["content"] == "<image>Which animal is this? Answer in <answer></answer>."


def test_mixed_spec_parsing():
    spec = parse_mixed_spec("food101=/mnt/c:/data/food-101:test")
    assert (spec.root, spec.split, spec.subset) == ("/mnt/c:/data/food-101", "test", None)
    spec = parse_mixed_spec("cub200=data/CUB_200_2011:train:3000")
    assert (spec.root, spec.split, spec.subset) == ("data/CUB_200_2011", "train", 3000)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="NAME=ROOT:SPLIT"):
        parse_mixed_spec("cub200:train")


def test_list_shows_datasets_splits_and_prompts(capsys):
    assert main(["data", "list"]) == 0
    printed = capsys.readouterr().out
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in printed.splitlines() if line.startswith("  ")}
    assert lines["fgvc_aircraft"] == "train, val, trainval, test"
    assert lines["oxford_pets"] == "trainval, test, CoOp JSON (split_zhou_OxfordPets.json: train, val, test)"
    assert lines["synthetic_shapes"] == "train, val, test, test_ood"
    for name in (
        "general",
        "specific",
        "calibrated",
        "elimination",
        "high_precision",
        "max_correctness",
        "max_specificity",
    ):
        assert f"  {name} " in printed


def test_reference_sampler_from_the_command_line(cub_root, tmp_path):
    # the README's `speciarl data build --dataset cub200 --sampler reference --subset N --seed S`
    out = tmp_path / "ref.parquet"
    args = ["data", "build", "--dataset", "cub200", "--root", str(cub_root), "--split", "train", "--subset", "2"]
    assert main([*args, "--seed", "3", "--sampler", "reference", "--no-progress", "--out", str(out)]) == 0
    manifest = json.loads((tmp_path / "ref.manifest.json").read_text())
    assert manifest["sampler"] == "reference" and manifest["rows"] == 2
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--sampler", "shuffled", "--out", str(out)])
    assert exit_info.value.code == 2


def test_pets_coop_train_split_from_the_command_line(pets_root, tmp_path, capsys):
    """The split the method trained on: CoOp train, which exists only in the CoOp split file."""
    out = tmp_path / "pets_train.parquet"
    args = ["data", "build", "--dataset", "oxford_pets", "--root", str(pets_root), "--split", "train", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown split 'train' for the official layout; choose from trainval, test" in err
    assert "add --split-file split_zhou_OxfordPets.json" in err and not out.exists()

    split_file = pets_root / "oxford-iiit-pet" / "split_zhou_OxfordPets.json"
    assert main([*args, "--split-file", str(split_file), "--sampler", "reference", "--out", str(out)]) == 0
    rows = pq.read_table(out).to_pylist()
    assert sorted(row["extra_info"]["image_id"] for row in rows) == ["Abyssinian_1", "american_bulldog_10"]
    manifest = json.loads((tmp_path / "pets_train.manifest.json").read_text())
    assert manifest["sampler"] == "reference" and manifest["sources"][0]["split_file"] == str(split_file)
