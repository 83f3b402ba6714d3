"""One judge-a-file pipeline under `speciarl verify` and `speciarl eval judge`: the same settings surface,
the same resume rule, the same offline behaviour."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.cli_errors import UserInputError
from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.evaluation.report_tour import recorded_predictions_path
from speciarl_verl.judge import JudgeError, JudgeSettings
from speciarl_verl.judge.cli import PairRows
from speciarl_verl.judge.file_judging import (
    FINGERPRINT_KEY,
    JudgingStopped,
    file_judge_settings,
    judge_file,
    settings_fingerprint,
    settings_from_cli,
)

CLASS_FIELDS = ("data_source", "parents", "parent_levels", "domain_nouns", "synonyms")


def fingerprint(**settings) -> str:
    return settings_fingerprint(file_judge_settings(settings))


OFFLINE_FINGERPRINT = fingerprint(kind="offline")


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_verify_offline_and_eval_judge_offline_give_the_same_category_for_every_row(tmp_path):
    # The shipped recorded predictions: real classes of the six benchmarks, with the parents, parent
    # levels and domain nouns their adapters declare.
    predictions = recorded_predictions_path(tmp_path)
    recorded = read_rows(predictions)
    evaluated = tmp_path / "evaluated.jsonl"
    eval_args = ["eval", "judge", "--predictions", str(predictions), "--out", str(evaluated), "--no-progress"]
    assert speciarl([*eval_args, "--judge-set", "kind=offline"]) == 0

    parsed = [(row, parse_answer(row["response"])) for row in recorded]
    pairs = [
        {"ground_truth": row["ground_truth"], "prediction": answer, **{k: row[k] for k in CLASS_FIELDS}}
        for row, answer in parsed
        if answer is not None
    ]
    verified = tmp_path / "verified.jsonl"
    verify_args = ["verify", "--judge", "offline", "--input", str(write_rows(tmp_path / "pairs.jsonl", pairs))]
    assert speciarl([*verify_args, "--output", str(verified), "--no-progress"]) == 0

    by_eval = [(r["category"], r["source"], r.get("reason")) for r in read_rows(evaluated) if r["answer"] is not None]
    by_verify = [(r["category"], r["source"], r.get("reason")) for r in read_rows(verified)]
    assert by_eval == by_verify
    categories = [category for category, _, _ in by_verify]
    assert {"specific", "less specific", "generic", "abstain"} <= set(categories)  # decided by a rule
    assert categories.count(None) >= 10  # undecided: no rule, and no category guessed for them
    assert {reason for category, _, reason in by_verify if category is None} == {"undecided"}
    assert {source for _, source, _ in by_verify} == {"offline"}


def test_settings_layers_merge_in_order_and_name_a_bad_override(tmp_path):
    config = tmp_path / "judge.yaml"
    config.write_text("kind: auto\nllm: {model: from-file, max_retries: 2}\ncache: {backend: none}\n")
    merged = settings_from_cli(
        config,
        ["llm.max_retries=5", "llm.endpoints=[http://judge:8001/v1]"],
        base={"kind": "llm", "llm": {"timeout_s": 9}},
        flags={"kind": "offline", "llm": {"model": "from-flag"}},
    )
    assert merged == {
        "kind": "offline",
        "llm": {"timeout_s": 9, "model": "from-flag", "max_retries": 5, "endpoints": ["http://judge:8001/v1"]},
        "cache": {"backend": "none"},
    }
    with pytest.raises(UserInputError, match=r"^--judge-set expects KEY=VALUE, got 'llm\.model'$"):
        settings_from_cli(None, ["llm.model"])
    with pytest.raises(UserInputError, match=r"^--engine-arg 'a=\[1, 2': "):
        settings_from_cli(None, ["a=[1, 2"], option="--engine-arg")
    config.write_text("- a list\n")
    not_a_mapping = f"^{re.escape(str(config))}: expected a mapping of judge settings, got list$"
    with pytest.raises(UserInputError, match=not_a_mapping):
        settings_from_cli(config)


def test_verify_takes_judge_set_and_refuses_the_training_placeholder(tmp_path, capsys):
    pairs = write_rows(tmp_path / "pairs.jsonl", [{"ground_truth": "Samoyed", "prediction": "Husky"}])
    out = tmp_path / "out.jsonl"
    args = ["verify", "--judge", "auto", "--input", str(pairs), "--output", str(out), "--no-progress"]
    assert speciarl([*args, "--judge-set", "deferred_outcome=wrong", "--judge-set", "kind=offline"]) == 2
    assert "deferred_outcome='wrong' does not apply to evaluation or `speciarl verify`" in capsys.readouterr().err
    assert not out.exists()
    assert speciarl([*args, "--judge-set", "kind=offline"]) == 0  # the last layer wins over --judge auto
    assert read_rows(out) == [
        {
            "ground_truth": "Samoyed",
            "prediction": "Husky",
            "category": None,
            "source": "offline",
            "reason": "undecided",
            FINGERPRINT_KEY: OFFLINE_FINGERPRINT,
        }
    ]


@pytest.mark.parametrize(
    ("out_rows", "message"),
    [
        (
            [
                {"ground_truth": "a", "prediction": "a", FINGERPRINT_KEY: OFFLINE_FINGERPRINT},
                {"ground_truth": "b", "prediction": "c", FINGERPRINT_KEY: OFFLINE_FINGERPRINT},
                {"x": 1},
            ],
            "out.jsonl:3: {pairs} does not have a row 3; out.jsonl belongs to another input, use a new --output",
        ),
        ([["a", "a"]], "out.jsonl:1: expected a JSON object, got a list"),
    ],
)
def test_an_out_of_another_input_names_its_line(tmp_path, capsys, out_rows, message):
    rows = [{"ground_truth": "a", "prediction": "a"}, {"ground_truth": "b", "prediction": "c"}]
    pairs = write_rows(tmp_path / "pairs.jsonl", rows)
    out = write_rows(tmp_path / "out.jsonl", out_rows)
    before = out.read_text()
    assert speciarl(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(out)]) == 2
    assert capsys.readouterr().err == f"speciarl verify: {tmp_path}/{message.format(pairs=pairs)}\n"
    assert out.read_text() == before  # nothing appended to a file that is not this input's


def test_eval_verdicts_repeating_an_answer_are_refused_by_line(tmp_path, capsys):
    row = {"sample_id": "cub200/1", "data_source": "cub200", "ground_truth": "Laysan Albatross"}
    predictions = write_rows(tmp_path / "p.jsonl", [{**row, "prediction_index": 0, "answer": "albatross"}])
    out = tmp_path / "v.jsonl"
    args = ["eval", "judge", "--predictions", str(predictions), "--out", str(out), "--judge", "offline"]
    assert speciarl([*args, "--no-progress"]) == 0
    out.write_text(out.read_text() * 2)  # a verdict this run would accept, twice
    capsys.readouterr()
    assert speciarl(args) == 2
    assert capsys.readouterr().err == (
        f"speciarl eval judge: {out}:2: sample 'cub200/1' answer 0 repeats line 1; use a new --out\n"
    )


class FailsOnSecondPair:
    """The offline verifier, except that the second request of every call fails, as a lost judge server would."""

    def __init__(self) -> None:
        self.inner = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()

    async def verify(self, requests):
        verdicts = await self.inner.verify(requests)
        raise JudgeError("judge endpoint went away", [None if i == 1 else v for i, v in enumerate(verdicts)])


def test_a_failed_chunk_writes_nothing_for_positional_rows_and_resumes(tmp_path):
    rows = [{"ground_truth": "Samoyed", "prediction": p} for p in ("Samoyed", "Samoyed", "dog", "not sure", "x")]
    pairs, out = write_rows(tmp_path / "pairs.jsonl", rows), tmp_path / "out.jsonl"
    settings = file_judge_settings({"kind": "offline"})
    run = judge_file(
        PairRows(pairs), out, settings=settings, verifier=FailsOnSecondPair(), chunk_size=2, progress=False
    )
    with pytest.raises(JudgingStopped) as stopped:
        asyncio.run(run)
    assert (stopped.value.in_out, stopped.value.total) == (0, 5)
    assert out.read_text() == ""  # the first pair was reached, but OUT must stay a prefix of the input

    summary = asyncio.run(judge_file(PairRows(pairs), out, settings=settings, chunk_size=2, progress=False))
    assert (summary.resumed, summary.written) == (0, 5)
    assert [r["category"] for r in read_rows(out)] == ["specific", "specific", None, "abstain", None]


# ---- resume checks the judge: the fingerprint of the settings that shape a verdict


def test_the_fingerprint_follows_what_shapes_a_verdict_and_nothing_else():
    llm = {"kind": "llm", "llm": {"model": "judge-a"}}
    base = fingerprint(**llm)
    shaping = [
        {"kind": "auto", "llm": {"model": "judge-a"}},
        {"kind": "offline", "llm": {"model": "judge-a"}},
        {"kind": "llm", "llm": {"model": "judge-b"}},
        {"kind": "llm", "llm": {"model": "judge-a", "prompt": "speciarl_v1"}},
        {"kind": "llm", "llm": {"model": "judge-a", "max_tokens": 32}},
        {"kind": "llm", "llm": {"model": "judge-a", "enable_thinking": True}},
        {"kind": "llm", "llm": {"model": "judge-a", "input_text": "raw"}},
        {"kind": "llm", "llm": {"model": "judge-a", "max_prediction_chars": 50}},
    ]
    assert len({base, *(fingerprint(**s) for s in shaping)}) == 1 + len(shaping)
    transport = [  # how verdicts are reached, not what they are
        {"kind": "llm", "llm": {"model": "judge-a", "endpoints": ["http://other:9000/v1"], "max_retries": 9}},
        {"kind": "llm", "llm": {"model": "judge-a", "timeout_s": 5}, "cache": {"backend": "none"}},
        {"kind": "llm", "llm": {"model": "judge-a"}, "failure_policy": "mask"},
    ]
    assert {fingerprint(**s) for s in transport} == {base}
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert fingerprint(kind="offline", llm={"model": "anything", "prompt": "speciarl_v1"}) == OFFLINE_FINGERPRINT


def test_a_prompt_that_cannot_be_resolved_is_bad_input_before_out_is_touched(tmp_path, capsys):
    pairs = write_rows(tmp_path / "pairs.jsonl", [{"ground_truth": "Samoyed", "prediction": "dog"}])
    out = tmp_path / "out.jsonl"
    out.write_text('{"ground_truth": "Samo')  # a line cut by an interruption: a resume would drop it
    args = ["verify", "--judge", "llm", "--input", str(pairs), "--output", str(out), "--no-progress"]
    assert speciarl([*args, "--judge-set", "llm.prompt=no_such_prompt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speciarl verify: Unknown judge prompt: 'no_such_prompt'") and err.count("\n") == 1
    assert out.read_text() == '{"ground_truth": "Samo'  # the fingerprint needs the prompt: refused first


def test_both_commands_write_the_fingerprint_into_every_row(tmp_path):
    predictions = recorded_predictions_path(tmp_path)
    evaluated = tmp_path / "evaluated.jsonl"
    args = ["eval", "judge", "--predictions", str(predictions), "--out", str(evaluated), "--no-progress"]
    assert speciarl([*args, "--judge", "offline"]) == 0
    pairs = write_rows(tmp_path / "pairs.jsonl", [{"ground_truth": "Samoyed", "prediction": "dog"}] * 3)
    verified = tmp_path / "verified.jsonl"
    assert speciarl(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(verified)]) == 0
    for path in (evaluated, verified):
        assert {row[FINGERPRINT_KEY] for row in read_rows(path)} == {OFFLINE_FINGERPRINT}


def strip_fingerprints(path: Path) -> None:
    """``path`` as a version without fingerprints would have written it."""
    rows = read_rows(path)
    for row in rows:
        del row[FINGERPRINT_KEY]
    write_rows(path, rows)


def test_an_out_without_fingerprints_is_refused_by_both_commands_and_still_read(tmp_path, capsys):
    from speciarl_verl.evaluation.records import load_verdicts

    predictions = recorded_predictions_path(tmp_path)
    evaluated = tmp_path / "evaluated.jsonl"
    eval_args = ["eval", "judge", "--predictions", str(predictions), "--out", str(evaluated), "--judge", "offline"]
    assert speciarl([*eval_args, "--no-progress"]) == 0
    evaluated.write_text("".join(evaluated.read_text().splitlines(keepends=True)[:5]))  # interrupted
    strip_fingerprints(evaluated)
    pairs = write_rows(tmp_path / "pairs.jsonl", [{"ground_truth": "Samoyed", "prediction": p} for p in ("dog", "x")])
    verified = write_rows(  # the first row as an older `speciarl verify` wrote it
        tmp_path / "verified.jsonl",
        [{"ground_truth": "Samoyed", "prediction": "dog", "category": None, "source": "offline"}],
    )
    capsys.readouterr()
    before = evaluated.read_text(), verified.read_text()

    assert speciarl([*eval_args, "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"speciarl eval judge: {evaluated}:1: evaluated.jsonl was written without a judge fingerprint "
        "(judge_fingerprint, by an older version), so resuming it cannot be verified; use a new --out\n"
    )
    assert speciarl(["verify", "--judge", "offline", "--input", str(pairs), "--output", str(verified)]) == 2
    assert capsys.readouterr().err == (
        f"speciarl verify: {verified}:1: verified.jsonl was written without a judge fingerprint "
        "(judge_fingerprint, by an older version), so resuming it cannot be verified; use a new --output\n"
    )
    assert (evaluated.read_text(), verified.read_text()) == before  # nothing appended
    # only resuming is strict: the evaluator still reads such a file
    assert len(load_verdicts(evaluated)) == 5
    assert {v.judge_fingerprint for v in load_verdicts(evaluated)} == {None}
    report = tmp_path / "report"
    assert speciarl(["eval", "report", "--verdicts", str(evaluated), "--out", str(report), "--no-plots"]) == 0
    assert (report / "report.json").exists()
