import json

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.judging import judge_predictions
from speciarl_verl.evaluation.records import load_verdicts
from speciarl_verl.judge import JudgeSettings


def rows():
    base = {"sample_id": "fgvc_aircraft/1025794", "data_source": "fgvc_aircraft", "ground_truth": "707-320"}
    extra = {"parents": ["Boeing 707", "Boeing"], "synonyms": ["Boeing 707-320"]}
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
            }
        )
    return out


def test_offline_judge_uses_parents_and_synonyms_and_skips_unparseable(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    out = tmp_path / "v.jsonl"
    summary = judge_predictions(predictions, out, {"kind": "offline"}, batch_size=4, progress=False)
    assert (summary.predictions, summary.judged, summary.already_judged, summary.unparseable) == (20, 20, 0, 1)
    verdicts = {v.key: v for v in load_verdicts(out)}
    aircraft = [verdicts[("fgvc_aircraft/1025794", i)] for i in range(6)]
    assert [v.category.value if v.category else None for v in aircraft] == [
        "specific",  # a listed synonym
        "less specific",  # a parent from the dataset's hierarchy
        "generic",  # the domain noun
        "wrong",  # undecided -> deferred outcome
        "abstain",
        None,
    ]
    assert [v.source for v in aircraft] == ["offline", "offline", "offline", "deferred", "offline", "unparseable"]
    assert {v.judge for v in verdicts.values()} == {"offline"}
    assert verdicts[("food101/1", 0)].category.value == "wrong"
    assert verdicts[("food101/2", 0)].category.value == "generic"


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
    judge_predictions(predictions, reference, batch_size=4, progress=False)

    out = tmp_path / "v.jsonl"
    with pytest.raises(ConnectionError):
        judge_predictions(predictions, out, batch_size=4, verifier=FailingAfter(3), progress=False)
    partial = load_verdicts(out)
    assert len(partial) == 8  # two whole batches survived

    with out.open("a", encoding="utf-8") as handle:  # and a crash in the middle of a write
        handle.write('{"sample_id": "food101/9", "data_sou')
    summary = judge_predictions(predictions, out, batch_size=4, progress=False)
    assert (summary.already_judged, summary.judged) == (8, 12)
    resumed = load_verdicts(out)  # would raise on a repeated (sample_id, prediction_index)
    assert sorted(v.to_json().items() for v in resumed) == sorted(v.to_json().items() for v in load_verdicts(reference))

    again = judge_predictions(predictions, out, batch_size=4, progress=False)
    assert (again.already_judged, again.judged) == (20, 0)
    assert len(load_verdicts(out)) == 20


def test_verdicts_of_another_predictions_file_are_refused(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    stranger = {"sample_id": "cub200/9", "data_source": "cub200", "prediction_index": 0, "category": "specific"}
    out = jsonl_writer(tmp_path / "v.jsonl", [stranger])
    with pytest.raises(ValueError, match="does not have"):
        judge_predictions(predictions, out, progress=False)


def test_a_verifier_returning_too_few_verdicts_is_an_error(tmp_path, jsonl_writer):
    class Short:
        async def verify(self, requests):
            verifier = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()
            return (await verifier.verify(requests))[:-1]

    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    with pytest.raises(RuntimeError, match="returned 3 verdicts for 4 requests"):
        judge_predictions(predictions, tmp_path / "v.jsonl", batch_size=4, verifier=Short(), progress=False)


def test_cli_merges_config_file_and_flag_and_reports_bad_settings(tmp_path, jsonl_writer, capsys):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    config = tmp_path / "judge.yaml"
    config.write_text("kind: offline\ndeferred_outcome: abstain\n", encoding="utf-8")
    out = tmp_path / "v.jsonl"
    code = speciarl(
        ["eval", "judge", "--predictions", str(predictions), "--out", str(out), "--judge-config", str(config)]
    )
    assert code == 0
    deferred = [v for v in load_verdicts(out) if v.source == "deferred"]
    assert deferred and {v.category.value for v in deferred} == {"abstain"}
    assert "20 answers: 0 already judged, 20 judged now" in capsys.readouterr().out

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


def test_judge_mapping_precedence():
    from speciarl_verl.evaluation.cli import judge_mapping

    assert judge_mapping(None, None) == {}
    assert judge_mapping("llm", None, ["llm.model=m", "llm.max_in_flight=8"]) == {
        "kind": "llm",
        "llm": {"model": "m", "max_in_flight": 8},
    }
    assert json.loads(json.dumps(judge_mapping("auto", None))) == {"kind": "auto"}


class PartlyFailing:
    """Decides every other request, then raises with the partial results, as the LLM judge does."""

    def __init__(self) -> None:
        self.inner = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()

    async def verify(self, requests):
        verdicts = await self.inner.verify(requests)
        error = RuntimeError("judge endpoint went away")
        error.verdicts = [v if i % 2 == 0 else None for i, v in enumerate(verdicts)]
        raise error


def test_partial_judge_failures_keep_the_verdicts_reached(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", rows())
    out = tmp_path / "v.jsonl"
    with pytest.raises(RuntimeError, match="went away"):
        judge_predictions(predictions, out, batch_size=20, verifier=PartlyFailing(), progress=False)
    kept = load_verdicts(out)
    assert len(kept) == 11  # 19 parsed answers -> 10 decided (even positions), plus the unparseable one
    assert sum(v.category is None for v in kept) == 1
    summary = judge_predictions(predictions, out, progress=False)
    assert (summary.already_judged, summary.judged) == (11, 9)
    assert len(load_verdicts(out)) == 20
