"""The mistakes a newcomer makes with the documented commands: each is one line on stderr naming the
option or file, exit code 2, nothing written; a mistyped option gets its command's usage and a
suggestion. And the fixes behind them: a second ``data build --root .`` run, ``verify`` reading the
settings file's ``kind`` and a parquet row's nested ``extra_info``.
"""

from __future__ import annotations

import json

import pytest

from speciarl_verl.cli import main
from speciarl_verl.data.builder import SourceSpec
from speciarl_verl.judge.file_judging import FINGERPRINT_KEY, file_judge_settings, settings_fingerprint

PAIR = {"ground_truth": "737-800", "prediction": "Boeing 737", "data_source": "fgvc_aircraft"}
CLASS_FIELDS = {"parents": ["Boeing 737", "Boeing"], "parent_levels": ["close", "far"]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line_exit_2(capsys, argv) -> str:
    """Run ``speciarl argv``; it must exit 2 with exactly one line on stderr, which is returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


@pytest.fixture
def verdicts(tmp_path):
    """A verdicts file of ``speciarl eval judge --judge offline`` (the input of report and agree)."""
    predictions = write_jsonl(
        tmp_path / "preds.jsonl",
        [{**PAIR, "sample_id": "a", "prediction_index": 0, "response": "<answer>737-800</answer>"}],
    )
    out = tmp_path / "verdicts.jsonl"
    assert main(["eval", "judge", "--judge", "offline", "--predictions", str(predictions), "--out", str(out)]) == 0
    return out


def test_an_output_folder_where_a_file_is_written_is_refused(tmp_path, capsys, verdicts):
    folder = tmp_path / "existing"
    folder.mkdir()
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [PAIR])
    build = ["data", "build", "--dataset", "synthetic_shapes", "--root", ".", "--split", "val", "--no-progress"]
    cases = [
        ([*build, "--out", str(folder)], f"speciarl data build: --out {folder}: is a folder"),
        ([*build, "--out", f"{tmp_path}/newdir/"], f"speciarl data build: --out {tmp_path}/newdir/: ends in '/'"),
        (
            ["verify", "--judge", "offline", "--input", str(pairs), "--output", str(folder)],
            f"speciarl verify: --output {folder}: is a folder",
        ),
        (
            ["eval", "judge", "--judge", "offline", "--predictions", str(verdicts), "--out", str(folder)],
            f"speciarl eval judge: --out {folder}: is a folder",
        ),
        (
            ["verify", "--judge", "offline", "--input", str(pairs), "--output", f"{pairs}/v.jsonl"],
            f"speciarl verify: --output {pairs}/v.jsonl: {pairs} is a file, not a folder",
        ),
    ]
    for argv, start in cases:
        assert one_line_exit_2(capsys, argv).startswith(start)
    assert list(folder.iterdir()) == [] and not (tmp_path / "newdir").exists()


def test_an_existing_file_where_a_folder_is_written_is_refused(tmp_path, capsys, verdicts):
    taken = write_jsonl(tmp_path / "taken.jsonl", [])
    line = one_line_exit_2(capsys, ["eval", "report", "--verdicts", str(verdicts), "--out", str(taken)])
    assert line == (
        f"speciarl eval report: --out {taken}: is a file; --out names a folder (created if missing) for report.md, "
        "report.json and the plots"
    )
    argv = ["eval", "agree", "--verdicts", str(verdicts), "--verdicts", str(verdicts), "--out", str(taken)]
    assert one_line_exit_2(capsys, argv).startswith(f"speciarl eval agree: --out {taken}: is a file")
    assert taken.read_text() == ""


def test_a_parquet_given_for_predictions_is_named_as_such(tmp_path, capsys):
    data = tmp_path / "data.parquet"
    build = ["data", "build", "--dataset", "synthetic_shapes", "--root", ".", "--split", "val", "--subset", "2"]
    assert main([*build, "--no-progress", "--out", str(data)]) == 0
    capsys.readouterr()
    argv = ["eval", "judge", "--judge", "offline", "--predictions", str(data), "--out", str(tmp_path / "v.jsonl")]
    line = one_line_exit_2(capsys, argv)
    assert line == f"speciarl eval judge: {data}: a parquet file; expected JSONL (one JSON object per line)"


def test_a_mistyped_option_gets_its_commands_usage_and_a_suggestion(capsys):
    given = ["data", "build", "--dataset", "synthetic_shapes", "--root", ".", "--split", "val", "--out", "x.parquet"]
    for argv in ([*given, "--subest", "20"], ["data", "build", "--subest", "20"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: speciarl data build ")
        assert "speciarl data build: error: unrecognized arguments: --subest" in err
        assert "(did you mean --subset?)" in err
    with pytest.raises(SystemExit):
        main(["verify", "--input", "p.jsonl", "--output", "o.jsonl", "--judeg", "offline"])
    assert "(did you mean --judge?)" in capsys.readouterr().err


def test_build_mixed_refuses_an_unused_split_file_and_a_size_that_is_no_number(tmp_path, capsys):
    out = str(tmp_path / "m.parquet")
    spec = ["data", "build-mixed", "--spec", "synthetic_shapes=.:val:4", "--no-progress", "--out", out]
    line = one_line_exit_2(capsys, [*spec, "--split-file", "food101=split_zhou_Food101.json"])
    assert line.startswith("speciarl data build-mixed: --split-file food101=split_zhou_Food101.json: no --spec is of")
    line = one_line_exit_2(capsys, ["data", "build-mixed", "--spec", "synthetic_shapes=x:train:ten", "--out", out])
    assert "must be a positive whole number (images to draw), got 'ten'" in line and "unknown split" not in line
    assert main(spec) == 0  # the same spec without the mistakes builds


def test_data_build_with_root_dot_runs_again_beside_its_own_parquet(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["data", "build", "--dataset", "synthetic_shapes", "--root", ".", "--split", "val", "--no-progress"]
    for _ in range(2):  # the second run finds data/shapes_val.parquet under the root
        assert main([*argv, "--out", "data/shapes_val.parquet"]) == 0, capsys.readouterr().err
    assert SourceSpec("synthetic_shapes", ".", "val").resolved_source() == "raw"


def test_auto_source_skips_our_own_builds_and_names_source_raw_when_it_guesses_wrong(tmp_path, capsys):
    root = tmp_path / "cub"
    (root / "data").mkdir(parents=True)
    argv = ["data", "build", "--dataset", "synthetic_shapes", "--root", ".", "--split", "val", "--no-progress"]
    assert main([*argv, "--out", str(root / "data" / "train.parquet")]) == 0  # ours, with its manifest
    assert SourceSpec("cub200", root, "test").resolved_source() == "raw"
    (root / "data" / "train.manifest.json").unlink()  # now it looks like a hub copy's train shard
    assert SourceSpec("cub200", root, "test").resolved_source() == "hf"
    build = ["data", "build", "--dataset", "cub200", "--root", str(root), "--split", "test", "--no-progress"]
    line = one_line_exit_2(capsys, [*build, "--out", str(tmp_path / "o.parquet")])
    assert "no parquet file for split 'test'" in line and line.endswith("pass --source raw)")


def test_verify_reads_the_kind_of_its_settings_file(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{**PAIR, "prediction": "A320"}])  # no rule decides it
    settings = tmp_path / "judge.yaml"
    settings.write_text("kind: offline\n")
    out = tmp_path / "v.jsonl"
    assert main(["verify", "--judge-config", str(settings), "--input", str(pairs), "--output", str(out)]) == 0
    [row] = read_jsonl(out)
    assert (row["category"], row["reason"]) == (None, "undecided")  # offline: never sent to an LLM
    offline = settings_fingerprint(file_judge_settings({"kind": "offline"}))
    assert row[FINGERPRINT_KEY] == offline
    capsys.readouterr()
    # --judge still wins over the file, and the help says which kind applies when
    again = ["verify", "--judge-config", str(settings), "--judge", "auto", "--input", str(pairs), "--output", str(out)]
    assert f"judged by another judge (judge_fingerprint '{offline}' in {out.name}" in one_line_exit_2(capsys, again)
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: the kind of the --judge-config file, else auto)" in help_text
    assert 'inside an "extra_info" object' in help_text and "parent_levels" in help_text


def test_verify_reads_the_class_fields_of_a_nested_extra_info(tmp_path, capsys):
    rows = [
        {**PAIR, "extra_info": {**CLASS_FIELDS, "index": 3, "image_id": "fgvc-0062781"}},  # as a parquet row
        {**PAIR, **CLASS_FIELDS},  # the same fields at the top level
        {**PAIR, "parents": None, "extra_info": CLASS_FIELDS},  # a null at the top level defers to extra_info
    ]
    pairs, out = write_jsonl(tmp_path / "pairs.jsonl", rows), tmp_path / "v.jsonl"
    argv = ["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]
    assert main(argv) == 0
    assert [row["category"] for row in read_jsonl(out)] == ["less specific"] * 3
    assert main(argv) == 0  # a resume checks the nested fields as it checks the top-level ones
    assert "resumed=3" in capsys.readouterr().out

    changed = [{**rows[0], "extra_info": {**CLASS_FIELDS, "parent_levels": ["far", "far"]}}, *rows[1:]]
    write_jsonl(pairs, changed)
    assert "the class fields differ" in one_line_exit_2(capsys, argv)

    bad = tmp_path / "bad.jsonl"
    cases = [
        ({**PAIR, "parents": ["Boeing 737"], "extra_info": CLASS_FIELDS}, "'parents' is given at the top level"),
        ({**PAIR, "extra_info": {"parents": "Boeing 737"}}, "field 'extra_info.parents' must be a list or null"),
        ({**PAIR, "extra_info": ["Boeing 737"]}, "field 'extra_info' must be an object or null"),
    ]
    for row, problem in cases:
        write_jsonl(bad, [row])
        line = one_line_exit_2(capsys, ["verify", "--judge", "offline", "--input", str(bad), "--output", str(out)])
        assert line.startswith(f"speciarl verify: {bad}:1: ") and problem in line, line
