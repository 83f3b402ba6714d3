import subprocess
import sys

import pytest

from speciarl_verl.cli import SUBCOMMAND_MODULES, build_parser


def test_every_subcommand_module_registers_something():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert len(commands) >= len(SUBCOMMAND_MODULES)
    assert "demo" in commands


def test_unknown_command_exits_with_usage_error():
    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(["nope"])
    assert excinfo.value.code == 2


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "speciarl_verl.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "--debug" in out.stdout


@pytest.mark.parametrize(
    ("argv", "debug"),
    [
        (["data", "list"], False),
        (["--debug", "data", "list"], True),
        (["data", "list", "--debug"], True),
        (["--debug", "eval", "report", "--verdicts", "v.jsonl", "--out", "r", "--debug"], True),
        (["demo", "--steps", "report", "--debug"], True),
    ],
)
def test_debug_is_accepted_before_or_after_the_command(argv, debug):
    assert build_parser().parse_args(argv).debug is debug


def test_each_command_knows_its_full_name():
    parser = build_parser()
    assert parser.parse_args(["data", "list"]).command_name == "speciarl data list"
    assert parser.parse_args(["eval", "agree", "--verdicts", "a", "--out", "o"]).command_name == "speciarl eval agree"
    assert parser.parse_args(["demo"]).command_name == "speciarl demo"


def speciarl(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speciarl_verl.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["eval", "judge", "--predictions", "bad.jsonl", "--out", "v.jsonl", "--no-progress"],
            "speciarl eval judge: bad.jsonl:1: not valid JSON (Expecting property name enclosed in double quotes",
        ),
        (
            ["eval", "report", "--verdicts", "missing.jsonl", "--out", "r", "--no-plots"],
            "speciarl eval report: missing.jsonl: cannot read it (No such file or directory)",
        ),
        (
            ["data", "build", "--dataset", "nope", "--root", ".", "--split", "train", "--out", "x.parquet"],
            "speciarl data build: Unknown dataset: nope (known: cub200, ",
        ),
        (
            ["eval", "predict", "--data", "bad.jsonl", "--model", "m", "--out", "p.jsonl"],
            "speciarl eval predict: bad.jsonl: cannot read it as parquet (",
        ),
        (
            ["demo", "--steps", "reward", "--rollouts", "bad.jsonl"],
            "speciarl demo: bad.jsonl:1: not valid JSON",
        ),
    ],
    ids=["eval-judge", "eval-report", "data-build", "eval-predict", "demo"],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(tmp_path, argv, line):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    done = speciarl(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    [printed] = done.stderr.splitlines()
    assert printed.startswith(line)


def test_eval_judge_against_an_unreachable_judge_is_one_line_and_exit_code_1(tmp_path):
    import json
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the block ends
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    row = {"sample_id": "s1", "data_source": "cub200", "ground_truth": "Laysan Albatross", "prediction_index": 0}
    answers = ["Laysan Albatross", "gull"]  # the first is decided offline, the second needs the judge
    (tmp_path / "p.jsonl").write_text(
        "".join(json.dumps({**row, "sample_id": f"s{i}", "answer": a}) + "\n" for i, a in enumerate(answers))
    )
    done = speciarl(
        "eval", "judge", "--predictions", "p.jsonl", "--out", "v.jsonl", "--judge", "auto", "--no-progress",
        "--judge-set", f"llm.endpoints=[{endpoint}]", "--judge-set", "llm.max_retries=0",
        "--judge-set", "cache.backend=none", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"speciarl eval judge: judge failed for 1 of 2 pair(s): judge endpoint {endpoint} failed")
    assert line.endswith("The verdicts reached so far are in v.jsonl; run the same command again to judge the rest")
    assert [json.loads(v)["answer"] for v in (tmp_path / "v.jsonl").read_text().splitlines()] == ["Laysan Albatross"]


def test_eval_predict_checks_its_arguments_before_it_needs_vllm(tmp_path, capsys):
    from speciarl_verl.cli import main

    args = ["eval", "predict", "--model", "m", "--out", str(tmp_path / "p.jsonl")]
    assert main([*args, "--data", str(tmp_path / "d.parquet"), "--prompt", "nope"]) == 2
    assert capsys.readouterr().err == "speciarl eval predict: Unknown policy prompt: nope\n"
    assert main([*args, "--data", str(tmp_path / "d.parquet")]) == 2
    assert (
        capsys.readouterr().err == f"speciarl eval predict: {tmp_path / 'd.parquet'}: no such dataset file (--data)\n"
    )
    assert main([*args, "--data", str(tmp_path), "--limit", "0"]) == 2
    assert capsys.readouterr().err == "speciarl eval predict: limit must be >= 1, got 0\n"
    assert not (tmp_path / "p.jsonl").exists()
