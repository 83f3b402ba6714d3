"""`speciarl verify`: JSONL pairs in, the same rows plus category and source out; resumable.

Bad input is one line on stderr naming file:line and exit code 2; a judge that is down is
one line and exit code 1; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from speciarl_verl.cli import main

ROWS = [
    {"ground_truth": "737-800", "prediction": "737-800", "data_source": "fgvc_aircraft"},
    {
        "ground_truth": "737-800",
        "prediction": "Boeing 737",
        "parents": ["Boeing 737", "Boeing"],
        "parent_levels": ["close", "far"],
        "id": 7,
    },
    {"ground_truth": "737-800", "prediction": "A320"},
    {"ground_truth": "737-800", "prediction": "a320"},
    {"ground_truth": "samoyed", "prediction": "not sure"},
]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_offline_judge_leaves_undecided_pairs_null_and_says_why(tmp_path, capsys):
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 0
    rows = read_rows(out)
    assert [r["category"] for r in rows] == ["specific", "less specific", None, None, "abstain"]
    assert [r.get("reason") for r in rows] == [None, None, "undecided", "undecided", None]
    assert {r["source"] for r in rows} == {"offline"}
    assert rows[1]["id"] == 7 and rows[1]["parents"] == ["Boeing 737", "Boeing"]  # input fields are kept
    assert "rows=5 resumed=0 offline=3 undecided=2" in capsys.readouterr().out


def test_offline_judge_files_only_close_parents_and_declared_domain_nouns(tmp_path):
    boeing = {"ground_truth": "737-800", "parents": ["Boeing 737", "Boeing"], "parent_levels": ["close", "far"]}
    samoyed = {"ground_truth": "Samoyed", "data_source": "oxford_pets", "parents": ["dog"], "parent_levels": ["far"]}
    samoyed["domain_nouns"] = ["dog", "pet", "animal"]
    rows = [
        {**boeing, "prediction": "Boeing 737"},
        {**boeing, "prediction": "Boeing"},  # the manufacturer: the LLM judge decides
        {**samoyed, "prediction": "dog"},
        {"ground_truth": "737-800", "prediction": "Boeing 737", "parents": ["Boeing 737", "Boeing"]},  # no levels
    ]
    pairs, out = write_rows(tmp_path / "pairs.jsonl", rows), tmp_path / "out.jsonl"
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 0
    assert [r["category"] for r in read_rows(out)] == ["less specific", None, "generic", None]


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


def test_output_of_another_input_is_refused(tmp_path, capsys):
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    write_rows(out, [{"ground_truth": "x", "prediction": "y", "category": "wrong", "source": "offline"}])
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 2
    assert (
        capsys.readouterr().err == f"speciarl verify: {out}:1: row 1 does not match input line 1; use a new --output\n"
    )


@pytest.mark.parametrize(
    ("second_line", "problem"),
    [
        ('{"ground_truth": "a"}', "missing field 'prediction'"),
        ('{"ground_truth": "a", "prediction": 5}', "field 'prediction' must be a string, got an integer (5)"),
        ('["a", "b"]', "expected a JSON object, got a list"),
        ('{"ground_truth": "a", "prediction": "b", "parents": "Boeing"}', "field 'parents' must be a list or null"),
        ('{"ground_truth": "a", "prediction": "b", "synonyms": [1]}', "each item of 'synonyms' must be a string"),
        (
            '{"ground_truth": "a", "prediction": "b", "parents": ["x"], "parent_levels": ["near"]}',
            "parent_levels ('near',) must give one of ('close', 'far') for each of the parents ('x',)",
        ),
        ('{"ground_truth": "a", "prediction": "b",', "not valid JSON (Expecting property name"),
    ],
)
def test_bad_input_names_file_line_and_problem(tmp_path, capsys, second_line, problem):
    pairs, out = tmp_path / "pairs.jsonl", tmp_path / "o.jsonl"
    pairs.write_text(json.dumps(ROWS[0]) + "\n\n" + second_line + "\n")  # a blank line still counts
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"speciarl verify: {pairs}:3: {problem}") and err.count("\n") == 1
    assert not out.exists()


def test_a_failing_judge_keeps_a_clean_resumable_prefix(tmp_path, fake_judge, capsys):
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
    err = capsys.readouterr().err
    assert err.startswith("speciarl verify: judge failed for ") and "HTTP 500" in err and err.count("\n") == 1
    assert f"0 of 5 rows are in {out}; run the same command again to resume" in err


def test_bad_judge_settings_are_bad_input(tmp_path, capsys, monkeypatch):
    pairs = write_rows(tmp_path / "pairs.jsonl", ROWS)
    args = ["verify", "--judge", "llm", "--input", str(pairs), "--output", str(tmp_path / "o.jsonl")]
    assert main([*args, "--endpoint", "127.0.0.1:8001"]) == 2
    assert capsys.readouterr().err.startswith("speciarl verify: judge.llm.endpoints must be http(s) URLs")
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("llm: [unclosed\n")
    assert main([*args, "--judge-config", str(cfg)]) == 2
    assert capsys.readouterr().err.startswith(f"speciarl verify: {cfg}: not a valid settings file (")
    cfg.write_text("llm:\n  retries: 3\n")
    assert main([*args, "--judge-config", str(cfg)]) == 2
    assert "unknown judge.llm setting(s) ['retries']" in capsys.readouterr().err
    monkeypatch.delenv("SPECIARL_TEST_JUDGE_KEY", raising=False)
    cfg.write_text("llm:\n  api_key_env: SPECIARL_TEST_JUDGE_KEY\n")
    assert main([*args, "--judge-config", str(cfg)]) == 2  # refused before any row is judged
    assert "api_key_env names 'SPECIARL_TEST_JUDGE_KEY', which is not set" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


# ---- the command as a user runs it: a separate process, its stderr and exit code


def run_speciarl(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speciarl_verl.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_malformed_jsonl_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("{not json\n")
    done = run_speciarl("verify", "--judge", "offline", "--input", "pairs.jsonl", "--output", "o.jsonl", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "speciarl verify: pairs.jsonl:1: not valid JSON (Expecting property name enclosed in double quotes at column 2)"
    ]


def test_debug_prints_the_traceback_before_the_line(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("{not json\n")
    done = run_speciarl(
        "verify", "--judge", "offline", "--input", "pairs.jsonl", "--output", "o.jsonl", "--debug", cwd=tmp_path
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2
    assert lines[0] == "Traceback (most recent call last):" and "json.decoder.JSONDecodeError" in done.stderr
    assert lines[-1].startswith("speciarl verify: pairs.jsonl:1: not valid JSON")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed when the block ends: nothing listens there


def test_unreachable_judge_is_one_line_and_exit_code_1(tmp_path):
    write_rows(tmp_path / "pairs.jsonl", ROWS)
    (tmp_path / "judge.yaml").write_text(
        "llm:\n  max_retries: 1\n  backoff_initial_s: 0.01\n  backoff_max_s: 0.01\ncache:\n  backend: none\n"
    )
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"
    done = run_speciarl(
        "verify", "--judge", "auto", "--input", "pairs.jsonl", "--output", "o.jsonl", "--endpoint", endpoint,
        "--judge-config", "judge.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"speciarl verify: judge failed for 2 of 5 pair(s) (last endpoint {endpoint})")
    assert "failed after 2 attempt(s)" in line and "run the same command again to resume" in line
    assert (tmp_path / "o.jsonl").read_text() == ""
