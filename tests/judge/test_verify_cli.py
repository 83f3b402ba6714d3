"""`speciarl verify`: JSONL pairs in, the same rows plus category and source out; resumable."""

from __future__ import annotations

import json

import pytest

from speciarl_verl.cli import main

ROWS = [
    {"ground_truth": "737-800", "prediction": "737-800", "data_source": "fgvc_aircraft"},
    {"ground_truth": "737-800", "prediction": "Boeing 737", "parents": ["Boeing 737", "Boeing"], "id": 7},
    {"ground_truth": "737-800", "prediction": "A320"},
    {"ground_truth": "737-800", "prediction": "a320"},
    {"ground_truth": "samoyed", "prediction": "not sure"},
]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_offline_judge_leaves_undecided_pairs_null(tmp_path, capsys):
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 0
    rows = read_rows(out)
    assert [r["category"] for r in rows] == ["specific", "less specific", None, None, "abstain"]
    assert {r["source"] for r in rows} == {"offline"}
    assert rows[1]["id"] == 7 and rows[1]["parents"] == ["Boeing 737", "Boeing"]  # input fields are kept
    assert "rows=5" in capsys.readouterr().out


def test_auto_judge_through_an_endpoint_and_resume(tmp_path, fake_judge):
    server = fake_judge()
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    args = ["verify", "--judge", "auto", "--input", str(pairs), "--output", str(out)]
    args += ["--endpoint", server.url, "--model", "fake", "--cache", str(tmp_path / "cache.sqlite")]
    # an earlier run stopped after two rows and in the middle of the third line
    out.write_text(json.dumps({**ROWS[0], "category": "specific", "source": "offline"}) + "\n")
    with out.open("a") as handle:
        handle.write(json.dumps({**ROWS[1], "category": "less specific", "source": "offline"}) + "\n")
        handle.write('{"ground_truth": "737-800", "predic')
    assert main(args) == 0
    rows = read_rows(out)
    assert len(rows) == 5
    resumed = [(r["category"], r["source"]) for r in rows[2:]]
    assert resumed == [("wrong", "llm"), ("wrong", "dedup"), ("abstain", "offline")]
    assert server.calls == 1  # "A320" and "a320" are one pair
    assert main(args) == 0 and len(read_rows(out)) == 5 and server.calls == 1  # nothing left to do


def test_output_of_another_input_is_refused(tmp_path):
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    write_rows(out, [{"ground_truth": "x", "prediction": "y", "category": "wrong", "source": "offline"}])
    with pytest.raises(ValueError, match="does not match input line 1"):
        main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)])


def test_bad_input_names_the_line(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"ground_truth": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: 'prediction' must be a string"):
        main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(tmp_path / "o.jsonl")])


def test_a_failing_judge_keeps_a_clean_resumable_prefix(tmp_path, fake_judge):
    server = fake_judge(fault="status:500")
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("llm:\n  max_retries: 0\ncache:\n  backend: none\n")
    code = main(
        ["verify", "--judge", "llm", "--input", str(pairs), "--output", str(out), "--endpoint", server.url,
         "--judge-config", str(cfg)]
    )  # fmt: skip
    assert code == 1
    assert out.read_text() == ""  # the first chunk failed: nothing half-written, rerun resumes from row 1
