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
    assert main(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "images.txt line 3: image file missing" in error
    assert not (tmp_path / "cub.parquet").exists()
    assert main([*args, "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "1 skipped" in printed and "skipped: " in printed and "Laysan_Albatross_0082_524" in printed


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
    assert "fgvc_aircraft  train, val, trainval, test" in printed
    assert "oxford_pets    trainval, test, CoOp JSON" in printed
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
