import json

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.judging import judge_predictions
from speciarl_verl.evaluation.records import load_predictions, load_verdicts
from speciarl_verl.judge import JudgeError, JudgeSettings

OFFLINE = {"kind": "offline"}


def rows():
    base = {"sample_id": "fgvc_aircraft/1025794", "data_source": "fgvc_aircraft", "ground_truth": "707-320"}
    extra = {
        "parents": ["Boeing 707", "Boeing"],
        "parent_levels": ["close", "far"],
        "domain_nouns": ["aircraft", "airplane"],
        "synonyms": ["Boeing 707-320"],
    }
    answers = ["Boeing 707-320", "Boeing 707", "aircraft", "DC-8", "None", None]
    out = []
    for i, answer in enumerate(answers):
        response = "four engines, no tags" if answer is None else f"<think>...</think><answer>{answer}</answer>"
        out.append({**base, **extra, "prediction_index": i, "response": response})
    for i in range(14):  # a second source, without parents or synonyms
        label = ["sushi", "sashimi", "food"][i % 3]
        out.append(
            {
                "sample_id": f"food101/{i}",
                "data_source": "food101",
                "ground_truth": "sushi",
                "prediction_index": 0,
                "response": f"<answer>{label}</answer>",
                "domain_nouns": ["food", "dish", "meal"],
            }
        )
    return out


def test_offline_judge_uses_parents_and_synonyms_and_never_guesses(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    out = tmp_path / "v.jsonl"
    summary = judge_predictions(predictions, out, OFFLINE, batch_size=4, progress=False)
    assert (summary.predictions, summary.judged, summary.already_judged, summary.unparseable) == (20, 20, 0, 1)
    assert (summary.undecided, summary.judge) == (1 + 5, "offline")  # DC-8, and the five sashimi answers
    verdicts = {v.key: v for v in load_verdicts(out)}
    aircraft = [verdicts[("fgvc_aircraft/1025794", i)] for i in range(6)]
    assert [v.category.value if v.category else None for v in aircraft] == [
        "specific",  # a listed synonym
        "less specific",  # the close parent (the family) from the dataset's hierarchy
        "generic",  # a domain noun the row declares
        None,  # no rule for it: undecided, not wrong
        "abstain",
        None,
    ]
    assert [v.reason for v in aircraft] == [None, None, None, "undecided", None, "unparseable"]
    assert [v.outcome for v in aircraft][3:] == ["undecided", "abstain", "unparseable"]
    assert [v.source for v in aircraft] == ["offline"] * 5 + ["unparseable"]
    assert {v.judge for v in verdicts.values()} == {"offline"}
    assert verdicts[("food101/1", 0)].outcome == "undecided"
    assert verdicts[("food101/2", 0)].category.value == "generic"
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(("reason" in row) == (row["category"] is None) for row in written)


def test_eval_judge_offline_and_verify_offline_give_the_same_rows(tmp_path, jsonl_writer):
    """One notion of undecided for both commands: null category, ``reason: undecided``."""
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    judge_predictions(predictions, tmp_path / "v.jsonl", OFFLINE, progress=False)
    evaluated = [v for v in load_verdicts(tmp_path / "v.jsonl") if v.reason != "unparseable"]
    asked = {p.key: p for p in load_predictions(predictions)}
    pairs = [
        {
            "ground_truth": v.ground_truth,
            "prediction": v.answer,
            "data_source": v.data_source,
            "parents": list(asked[v.key].parents),
            "parent_levels": list(asked[v.key].parent_levels),
            "domain_nouns": list(asked[v.key].domain_nouns),
            "synonyms": list(asked[v.key].synonyms),
        }
        for v in evaluated
    ]
    jsonl_writer(tmp_path / "pairs.jsonl", pairs)
    assert speciarl(["verify", "--judge", "offline", "--input", str(tmp_path / "pairs.jsonl"),
                     "--output", str(tmp_path / "verified.jsonl")]) == 0  # fmt: skip
    verified = [json.loads(line) for line in (tmp_path / "verified.jsonl").read_text().splitlines()]
    assert [(r["category"], r.get("reason")) for r in verified] == [
        (None if v.category is None else v.category.value, v.reason) for v in evaluated
    ]
    assert any(r.get("reason") == "undecided" for r in verified)


class FailingAfter:
    """An offline verifier that breaks on its ``fail_on``-th call, as a lost judge server would."""

    def __init__(self, fail_on: int) -> None:
        self.calls = 0
        self.fail_on = fail_on
        self.inner = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()

    async def verify(self, requests):
        self.calls += 1
        if self.calls == self.fail_on:
            raise ConnectionError("judge went away")
        return await self.inner.verify(requests)


def test_an_interrupted_run_resumes_without_duplicates(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    reference = tmp_path / "reference.jsonl"
    judge_predictions(predictions, reference, OFFLINE, batch_size=4, progress=False)

    out = tmp_path / "v.jsonl"
    with pytest.raises(ConnectionError):
        judge_predictions(predictions, out, OFFLINE, batch_size=4, verifier=FailingAfter(3), progress=False)
    partial = load_verdicts(out)
    assert len(partial) == 8  # two whole batches survived

    with out.open("a", encoding="utf-8") as handle:  # and a crash in the middle of a write
        handle.write('{"sample_id": "food101/9", "data_sou')
    summary = judge_predictions(predictions, out, OFFLINE, batch_size=4, progress=False)
    assert (summary.already_judged, summary.judged) == (8, 12)
    resumed = load_verdicts(out)  # would raise on a repeated (sample_id, prediction_index)
    assert sorted(v.to_json().items() for v in resumed) == sorted(v.to_json().items() for v in load_verdicts(reference))

    again = judge_predictions(predictions, out, OFFLINE, batch_size=4, progress=False)
    assert (again.already_judged, again.judged) == (20, 0)
    assert len(load_verdicts(out)) == 20


def test_verdicts_of_another_predictions_file_are_refused(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    stranger = {"sample_id": "cub200/9", "data_source": "cub200", "prediction_index": 0, "category": "specific"}
    out = jsonl_writer(tmp_path / "v.jsonl", [stranger])
    with pytest.raises(ValueError, match="does not have"):
        judge_predictions(predictions, out, OFFLINE, progress=False)


def test_a_verifier_returning_too_few_verdicts_is_an_error(tmp_path, jsonl_writer):
    class Short:
        async def verify(self, requests):
            verifier = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()
            return (await verifier.verify(requests))[:-1]

    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    with pytest.raises(RuntimeError, match="returned 3 verdicts for 4 requests"):
        judge_predictions(predictions, tmp_path / "v.jsonl", OFFLINE, batch_size=4, verifier=Short(), progress=False)


def test_cli_merges_config_file_and_flag_and_reports_bad_settings(tmp_path, jsonl_writer, capsys):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    config = tmp_path / "judge.yaml"
    config.write_text("kind: offline\nllm: {model: m}\n", encoding="utf-8")
    out = tmp_path / "v.jsonl"
    code = speciarl(
        ["eval", "judge", "--predictions", str(predictions), "--out", str(out), "--judge-config", str(config)]
    )
    assert code == 0
    assert sum(v.outcome == "undecided" for v in load_verdicts(out)) == 6
    printed = capsys.readouterr().out
    assert "20 answers: 0 already judged, 20 judged now by offline" in printed
    assert "unparseable 1; undecided 6)" in printed and "leaves them out of the metrics" in printed

    # The training judge's placeholder for undecided pairs has no place in an evaluation.
    args = ["eval", "judge", "--predictions", str(predictions), "--out", str(tmp_path / "d.jsonl")]
    assert speciarl([*args, "--judge", "offline", "--judge-set", "deferred_outcome=abstain"]) == 2
    assert "deferred_outcome='abstain' does not apply to evaluation" in capsys.readouterr().err
    assert not (tmp_path / "d.jsonl").exists()

    config.write_text("kind: offline\nno_such_setting: 1\n", encoding="utf-8")
    code = speciarl(
        [
            "eval",
            "judge",
            "--predictions",
            str(predictions),
            "--out",
            str(tmp_path / "w.jsonl"),
            "--judge-config",
            str(config),
        ]
    )
    assert code == 2
    assert "no_such_setting" in capsys.readouterr().err

    bad = jsonl_writer(tmp_path / "bad.jsonl", [dict(rows()[0], prediction_index="zero")])
    code = speciarl(["eval", "judge", "--predictions", str(bad), "--out", str(tmp_path / "x.jsonl")])
    assert code == 2
    assert f"{bad}:1: 'prediction_index' must be an integer" in capsys.readouterr().err


def test_judge_mapping_precedence(tmp_path):
    from speciarl_verl.evaluation.cli import judge_mapping
    from speciarl_verl.evaluation.judging import default_judge_settings

    shipped = default_judge_settings()
    assert judge_mapping(None, None) == shipped
    tuned = judge_mapping("auto", None, ["llm.model=m", "llm.max_in_flight=8"])
    assert tuned["kind"] == "auto" and tuned["llm"] == {**shipped["llm"], "model": "m", "max_in_flight": 8}
    assert tuned["cache"] == shipped["cache"]
    config = tmp_path / "judge.yaml"
    config.write_text("llm: {model: m}\n", encoding="utf-8")  # a file of its own replaces the shipped one
    assert judge_mapping(None, config) == {"kind": "llm", "llm": {"model": "m"}}
    assert json.loads(json.dumps(judge_mapping("offline", config))) == {"kind": "offline", "llm": {"model": "m"}}


def test_the_default_evaluation_judge_is_the_shipped_llama3_70b_llm():
    from speciarl_verl.evaluation.cli import judge_mapping

    settings = JudgeSettings.from_mapping(judge_mapping(None, None))
    assert settings.kind == "llm"
    assert settings.llm.model == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert settings.llm.endpoints == ("http://127.0.0.1:8002/v1",)
    training_default = JudgeSettings()
    assert settings.cache.backend == "sqlite"
    assert settings.cache.sqlite_path() != training_default.cache.sqlite_path()
    assert settings.cache.sqlite_path().name == "eval_judge_llama3_70b.sqlite"


def test_eval_judge_without_judge_flag_asks_the_llm_for_every_pair(tmp_path, jsonl_writer, fake_judge, capsys):
    server = fake_judge()
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    out = tmp_path / "v.jsonl"
    code = speciarl(
        ["eval", "judge", "--predictions", str(predictions), "--out", str(out), "--no-progress",
         "--judge-set", f"llm.endpoints=[{server.url}]", "--judge-set", f"cache.path={tmp_path / 'cache.sqlite'}"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    verdicts = load_verdicts(out)
    parsed = [v for v in verdicts if v.reason != "unparseable"]
    assert len(parsed) == 19 and not [v for v in verdicts if v.outcome == "undecided"]
    assert {v.judge for v in verdicts} == {"llm:meta-llama/Meta-Llama-3-70B-Instruct"}
    assert {v.source for v in parsed} <= {"llm", "dedup"}  # no pair was decided by a rule
    # The pairs the rule tier has no rule for were judged (the fake judge files them as wrong).
    assert {v.category.value for v in parsed if v.answer in ("DC-8", "sashimi")} == {"wrong"}
    assert server.calls == len({(v.ground_truth, v.answer) for v in parsed})
    assert {body["model"] for body in server.requests} == {"meta-llama/Meta-Llama-3-70B-Instruct"}
    assert {body["temperature"] for body in server.requests} == {0.0}
    assert "judged now by llm:meta-llama/Meta-Llama-3-70B-Instruct" in capsys.readouterr().out


class PartlyFailing:
    """Decides every other request, then raises the judge's error with the partial results, as the LLM judge does."""

    def __init__(self) -> None:
        self.inner = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()

    async def verify(self, requests):
        verdicts = await self.inner.verify(requests)
        raise JudgeError("judge endpoint went away", [v if i % 2 == 0 else None for i, v in enumerate(verdicts)])


def test_partial_judge_failures_keep_the_verdicts_reached(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    out = tmp_path / "v.jsonl"
    with pytest.raises(JudgeError, match="went away"):
        judge_predictions(predictions, out, OFFLINE, batch_size=20, verifier=PartlyFailing(), progress=False)
    kept = load_verdicts(out)
    assert len(kept) == 11  # 19 parsed answers -> 10 reached (even positions), plus the unparseable one
    assert sum(v.outcome == "unparseable" for v in kept) == 1
    summary = judge_predictions(predictions, out, OFFLINE, progress=False)
    assert (summary.already_judged, summary.judged) == (11, 9)
    assert len(load_verdicts(out)) == 20


# ---- resume keeps no stale verdict: every field that decides a verdict, and the judge, must match


def eval_judge(predictions, out, *args):
    return speciarl(["eval", "judge", "--predictions", str(predictions), "--out", str(out), "--no-progress", *args])


def test_a_resume_on_a_changed_answer_is_refused_not_skipped(tmp_path, jsonl_writer, capsys):
    """The issue's case: a new checkpoint's predictions under the old file name."""
    row = {"sample_id": "cub200/1", "data_source": "cub200", "ground_truth": "Laysan Albatross", "prediction_index": 0}
    predictions, out = jsonl_writer(tmp_path / "p.jsonl", [{**row, "answer": "Laysan Albatross"}]), tmp_path / "v.jsonl"
    assert eval_judge(predictions, out, "--judge", "offline") == 0
    assert [v.category.value for v in load_verdicts(out)] == ["specific"]
    before = out.read_text()
    jsonl_writer(predictions, [{**row, "answer": "bird"}])
    capsys.readouterr()
    assert eval_judge(predictions, out, "--judge", "offline") == 2
    assert capsys.readouterr().err == (
        f"speciarl eval judge: {out}:1: sample 'cub200/1' answer 0: answer 'bird' in p.jsonl, 'Laysan Albatross' "
        "in v.jsonl; use a new --out\n"
    )
    assert out.read_text() == before


CLASS_FIELDS_DIFFER = (
    "the class fields (parents, parent levels, synonyms, domain nouns) in p.jsonl differ from those its verdict "
    "in v.jsonl was judged with"
)


def aircraft(change):
    """``change`` applied to every answer of the aircraft sample of :func:`rows`."""
    return lambda row: {**row, **change} if row["data_source"] == "fgvc_aircraft" else row


@pytest.mark.parametrize(
    ("edit", "line", "problem"),
    [
        (
            lambda row: {**row, "response": "<answer>bird</answer>"} if row["prediction_index"] == 1 else row,
            2,
            "answer 1: answer 'bird' in p.jsonl, 'Boeing 707' in v.jsonl",
        ),
        (  # an answer that could not be parsed is one now
            lambda row: {**row, "response": "<answer>DC-9</answer>"} if row["prediction_index"] == 5 else row,
            6,
            "answer 5: answer 'DC-9' in p.jsonl, None in v.jsonl",
        ),
        (aircraft({"ground_truth": "707-200"}), 1, "answer 0: ground truth '707-200' in p.jsonl, '707-320' in v.jsonl"),
        (aircraft({"parents": ["Boeing 707", "Boeing Co."]}), 1, f"answer 0: {CLASS_FIELDS_DIFFER}"),
        (aircraft({"parent_levels": ["close", "close"]}), 1, f"answer 0: {CLASS_FIELDS_DIFFER}"),
        (aircraft({"synonyms": ["707"]}), 1, f"answer 0: {CLASS_FIELDS_DIFFER}"),
        (aircraft({"domain_nouns": ["aircraft"]}), 1, f"answer 0: {CLASS_FIELDS_DIFFER}"),
    ],
    ids=["answer", "now-parseable", "ground-truth", "parents", "parent-levels", "synonyms", "domain-nouns"],
)
def test_a_resume_on_changed_predictions_is_refused_naming_the_line(
    tmp_path, jsonl_writer, capsys, edit, line, problem
):
    predictions, out = jsonl_writer(tmp_path / "p.jsonl", rows()), tmp_path / "v.jsonl"
    assert eval_judge(predictions, out, "--judge", "offline") == 0
    before = out.read_text()
    jsonl_writer(predictions, [edit(row) for row in rows()])
    capsys.readouterr()
    assert eval_judge(predictions, out, "--judge", "offline") == 2
    sample = "fgvc_aircraft/1025794"
    assert (
        capsys.readouterr().err == f"speciarl eval judge: {out}:{line}: sample '{sample}' {problem}; use a new --out\n"
    )
    assert out.read_text() == before


def test_an_unchanged_resume_still_skips_every_answer(tmp_path, jsonl_writer, capsys):
    predictions, out = jsonl_writer(tmp_path / "p.jsonl", rows()), tmp_path / "v.jsonl"
    assert eval_judge(predictions, out, "--judge", "offline") == 0
    before = out.read_text()
    capsys.readouterr()
    assert eval_judge(predictions, out, "--judge", "offline") == 0
    assert capsys.readouterr().out.startswith("20 answers: 20 already judged, 0 judged now by -")
    assert out.read_text() == before
    summary = judge_predictions(predictions, out, OFFLINE, progress=False)
    assert (summary.already_judged, summary.judged) == (20, 0)


def test_a_resume_with_another_judge_is_refused(tmp_path, jsonl_writer, fake_judge, capsys):
    server = fake_judge()
    predictions, out = jsonl_writer(tmp_path / "p.jsonl", rows()), tmp_path / "v.jsonl"
    served = ["--judge-set", f"llm.endpoints=[{server.url}]", "--judge-set", f"cache.path={tmp_path / 'c.sqlite'}"]
    assert eval_judge(predictions, out, *served) == 0
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:7]))  # as if interrupted
    before = out.read_text()
    capsys.readouterr()
    llama = "llm:meta-llama/Meta-Llama-3-70B-Instruct"
    by_name = {  # another name: the message says which judges
        "another model": (["--judge-set", "llm.model=other"], "llm:other"),
        "another kind": (["--judge", "auto"], "auto:meta-llama/Meta-Llama-3-70B-Instruct"),
        "no LLM": (["--judge", "offline"], "offline"),
    }
    for what, (other, name) in by_name.items():
        assert eval_judge(predictions, out, *served, *other) == 2, what
        assert capsys.readouterr().err == (
            f"speciarl eval judge: {out}:1: sample 'fgvc_aircraft/1025794' answer 0 was judged by {llama!r}, this "
            f"run's judge is {name!r}; use a new --out\n"
        ), what
    for what, other in {"another prompt": "llm.prompt=speciarl_v1", "other decoding": "llm.max_tokens=32"}.items():
        assert eval_judge(predictions, out, *served, "--judge-set", other) == 2, what
        err = capsys.readouterr().err
        assert err.startswith(f"speciarl eval judge: {out}:1: judged by another judge (judge_fingerprint '"), what
        assert err.endswith("the judge kind, model, prompt or decoding differ); use a new --out\n"), what
    assert out.read_text() == before
    assert eval_judge(predictions, out, *served) == 0  # the same judge resumes
    assert capsys.readouterr().out.startswith("20 answers: 7 already judged, 13 judged now by " + llama)
