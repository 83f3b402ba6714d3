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
from speciarl_verl.judge.file_judging import FINGERPRINT_KEY, file_judge_settings, settings_fingerprint

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


def fingerprint(**settings):
    return {FINGERPRINT_KEY: settings_fingerprint(file_judge_settings(settings))}


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
    judge = fingerprint(kind="auto", llm={"model": "fake"})
    out.write_text(json.dumps({**ROWS[0], "category": "specific", "source": "offline", **judge}) + "\n")
    with out.open("a") as handle:
        handle.write(json.dumps({**ROWS[1], "category": "less specific", "source": "offline", **judge}) + "\n")
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
    row = {
        "ground_truth": "x",
        "prediction": "y",
        "category": "wrong",
        "source": "offline",
        **fingerprint(kind="offline"),
    }
    write_rows(out, [row])
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"speciarl verify: {out}:1: ground_truth '737-800' in pairs.jsonl:1, 'x' in out.jsonl; use a new --output\n"
    )


def judged_offline(tmp_path, rows=ROWS):
    pairs, out = write_rows(tmp_path / "pairs.jsonl", rows), tmp_path / "out.jsonl"
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 0
    return pairs, out


def test_an_unchanged_resume_skips_every_row_and_absent_equals_empty(tmp_path, capsys):
    pairs, out = judged_offline(tmp_path)
    before = out.read_text()
    capsys.readouterr()
    same = [{"synonyms": [], "domain_nouns": None, "data_source": None, **row} for row in ROWS]
    write_rows(pairs, same)  # the judge reads an absent, null or empty class field alike
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 0
    assert "rows=5 resumed=5 offline=0 undecided=0" in capsys.readouterr().out
    assert out.read_text() == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"prediction": "Boeing"}, "prediction 'Boeing' in pairs.jsonl:2, 'Boeing 737' in out.jsonl"),
        ({"ground_truth": "737-900"}, "ground_truth '737-900' in pairs.jsonl:2, '737-800' in out.jsonl"),
        ({"data_source": "fgvc_aircraft"}, "data_source 'fgvc_aircraft' in pairs.jsonl:2, '' in out.jsonl"),
        (
            {"parents": ["Boeing 737"], "parent_levels": ["close"]},
            "the class fields differ: parents ['Boeing 737'] in pairs.jsonl:2, ['Boeing 737', 'Boeing'] in out.jsonl",
        ),
        (
            {"parent_levels": ["far", "far"]},
            "the class fields differ: parent_levels ['far', 'far'] in pairs.jsonl:2, ['close', 'far'] in out.jsonl",
        ),
        (
            {"synonyms": ["B737-800"]},
            "the class fields differ: synonyms ['B737-800'] in pairs.jsonl:2, [] in out.jsonl",
        ),
        (
            {"domain_nouns": ["aircraft"]},
            "the class fields differ: domain_nouns ['aircraft'] in pairs.jsonl:2, [] in out.jsonl",
        ),
    ],
)
def test_a_resume_refuses_a_row_whose_pair_or_class_fields_changed(tmp_path, capsys, change, problem):
    pairs, out = judged_offline(tmp_path)
    write_rows(pairs, [ROWS[0], {**ROWS[1], **change}, *ROWS[2:]])
    before = out.read_text()
    capsys.readouterr()
    assert main(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 2
    assert capsys.readouterr().err == f"speciarl verify: {out}:2: {problem}; use a new --output\n"
    assert out.read_text() == before


def test_a_resume_with_another_judge_is_refused(tmp_path, fake_judge, capsys):
    server = fake_judge()
    pairs, out = write_rows(tmp_path / "pairs.jsonl", ROWS), tmp_path / "out.jsonl"
    args = ["verify", "--input", str(pairs), "--output", str(out), "--cache", str(tmp_path / "cache.sqlite")]
    first = ["--judge", "auto", "--endpoint", server.url, "--model", "fake"]
    assert main([*args, *first]) == 0
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:2]))  # as if interrupted
    before = out.read_text()
    ours = fingerprint(kind="auto", llm={"model": "fake"})[FINGERPRINT_KEY]
    assert {row[FINGERPRINT_KEY] for row in read_rows(out)} == {ours}
    others = {
        "another model": ["--judge", "auto", "--endpoint", server.url, "--model", "other"],
        "another kind": ["--judge", "llm", "--endpoint", server.url, "--model", "fake"],
        "no LLM": ["--judge", "offline"],
        "another prompt": [*first, "--judge-set", "llm.prompt=speciarl_v1"],
        "other decoding": [*first, "--judge-set", "llm.max_tokens=32"],
    }
    capsys.readouterr()
    for what, other in others.items():
        assert main([*args, *other]) == 2, what
        err = capsys.readouterr().err
        assert err.startswith(f"speciarl verify: {out}:1: judged by another judge (judge_fingerprint '{ours}' in "), (
            what
        )
        assert err.endswith("the judge kind, model, prompt or decoding differ); use a new --output\n"), what
        assert err.count("\n") == 1 and out.read_text() == before, what
    # the same judge behind another endpoint and cache resumes: they do not change a verdict
    again = fake_judge()
    same = ["--judge", "auto", "--endpoint", again.url, "--model", "fake", "--judge-set", "llm.max_retries=1"]
    assert (
        main(["verify", "--input", str(pairs), "--output", str(out), "--cache", str(tmp_path / "c2.sqlite"), *same])
        == 0
    )
    assert "rows=5 resumed=2" in capsys.readouterr().out
    assert len(read_rows(out)) == 5


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
    assert line.startswith(f"speciarl verify: judge failed for 2 of 5 pair(s): judge endpoint {endpoint} failed")
    assert "failed after 2 attempt(s)" in line and "run the same command again to resume" in line
    assert (tmp_path / "o.jsonl").read_text() == ""


def test_two_long_answers_that_differ_only_in_their_species_get_two_judge_calls(tmp_path, fake_judge):
    server = fake_judge()
    truth = "Laysan Albatross"
    rows = [{"ground_truth": truth, "prediction": "!" * 200 + " laysan albatross"}]
    rows += [{"ground_truth": truth, "prediction": "!" * 200 + " crow"}]
    pairs, out = write_rows(tmp_path / "pairs.jsonl", rows), tmp_path / "out.jsonl"
    args = ["verify", "--judge", "llm", "--input", str(pairs), "--output", str(out)]
    assert main([*args, "--endpoint", server.url, "--model", "fake", "--cache", str(tmp_path / "cache.sqlite")]) == 0
    assert server.calls == 2  # one cache key per text the judge reads: no verdict is shared
    assert [(r["category"], r["source"]) for r in read_rows(out)] == [("specific", "llm"), ("wrong", "llm")]
