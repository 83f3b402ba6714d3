"""The evaluation honours the parse mode and reports the unparseable rate under both modes."""

import json

import pytest

from speciarl_verl.cli import build_parser
from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.cli import predict_config
from speciarl_verl.evaluation.judging import judge_predictions
from speciarl_verl.evaluation.prediction_requests import PredictionRequest, prediction_rows
from speciarl_verl.evaluation.records import load_predictions, load_verdicts
from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
from speciarl_verl.evaluation.report_files import write_report

OFFLINE = {"kind": "offline"}
TWO_BLOCKS = "<think>rice and fish</think><answer>sushi</answer> or maybe <answer>sashimi</answer>"


def row(index, response, **extra):
    return {
        "sample_id": f"food101/{index}",
        "data_source": "food101",
        "ground_truth": "sushi",
        "prediction_index": 0,
        "response": response,
        **extra,
    }


def test_two_answer_blocks_are_parseable_under_first_and_unparseable_under_strict(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", [row(0, TWO_BLOCKS)])
    first = judge_predictions(predictions, tmp_path / "first.jsonl", OFFLINE, progress=False)
    strict = judge_predictions(predictions, tmp_path / "strict.jsonl", OFFLINE, progress=False, parse_mode="strict")
    assert (first.unparseable, strict.unparseable) == (0, 1)
    (by_first,) = load_verdicts(tmp_path / "first.jsonl")
    (by_strict,) = load_verdicts(tmp_path / "strict.jsonl")
    assert (by_first.answer, by_first.category.value, by_first.parse_mode) == ("sushi", "specific", "first")
    assert (by_strict.answer, by_strict.outcome, by_strict.parse_mode) == (None, "unparseable", "strict")
    assert by_first.parseable == by_strict.parseable == {"first": True, "strict": False}


def test_eval_judge_parse_mode_option_reaches_the_parser(tmp_path, jsonl_writer, capsys):
    predictions = jsonl_writer(tmp_path / "p.jsonl", [row(0, TWO_BLOCKS), row(1, "<ANSWER>sushi</ANSWER>")])
    args = ["eval", "judge", "--predictions", str(predictions), "--judge", "offline", "--no-progress"]
    assert speciarl([*args, "--out", str(tmp_path / "default.jsonl")]) == 0
    assert speciarl([*args, "--out", str(tmp_path / "strict.jsonl"), "--parse-mode", "strict"]) == 0
    printed = capsys.readouterr().out
    assert "responses parsed in mode first" in printed and "responses parsed in mode strict" in printed
    default = {v.sample_id: v for v in load_verdicts(tmp_path / "default.jsonl")}
    strict = {v.sample_id: v for v in load_verdicts(tmp_path / "strict.jsonl")}
    # first takes the first block and matches tags case-sensitively; strict the other way round.
    assert [default[s].answer for s in ("food101/0", "food101/1")] == ["sushi", None]
    assert [strict[s].answer for s in ("food101/0", "food101/1")] == [None, "sushi"]
    assert {v.parse_mode for v in default.values()} == {"first"} and {v.parse_mode for v in strict.values()} == {
        "strict"
    }
    with pytest.raises(SystemExit):
        build_parser().parse_args([*args, "--out", str(tmp_path / "x.jsonl"), "--parse-mode", "lenient"])


def test_eval_predict_parse_mode_option_fills_the_answer(tmp_path):
    base = ["eval", "predict", "--data", str(tmp_path / "d.parquet"), "--model", "m", "--out", str(tmp_path / "p")]
    assert predict_config(build_parser().parse_args(base)).parse_mode == "first"
    config = predict_config(build_parser().parse_args([*base, "--parse-mode", "strict", "--max-answer-words", "3"]))
    request = PredictionRequest("food101/0", "food101", "sushi", (("user", ("", "Classify.")),), (b"",))
    texts = [TWO_BLOCKS, "<answer>salmon nigiri</answer>"]
    rows = prediction_rows(request, texts, config.max_answer_words, config.parse_mode)
    assert [r["answer"] for r in rows] == [None, "salmon nigiri"]
    assert [(r["parse_mode"], r["max_answer_words"]) for r in rows] == [("strict", 3)] * 2


def test_a_row_parsed_in_another_mode_is_parsed_again_from_its_response(tmp_path, jsonl_writer):
    request = PredictionRequest("food101/0", "food101", "sushi", (("user", ("", "Classify.")),), (b"",))
    texts = [TWO_BLOCKS, "<answer>one two three four</answer><answer>x</answer>"]
    written = prediction_rows(request, texts, max_answer_words=3, parse_mode="strict")
    written[1]["sample_id"] = "food101/1"
    path = jsonl_writer(tmp_path / "p.jsonl", written)
    assert [r.answer for r in load_predictions(path, "strict")] == [None, None]
    again = load_predictions(path, "first")
    # The first block of the second response has four words: the recorded cap of three still applies.
    assert [r.answer for r in again] == ["sushi", None]
    assert {r.parse_mode for r in again} == {"first"}

    given = jsonl_writer(tmp_path / "given.jsonl", [row(0, TWO_BLOCKS, answer="maki")])
    (record,) = load_predictions(given, "strict")
    assert (record.answer, record.parse_mode, record.parseable) == ("maki", None, {"first": True, "strict": False})

    no_response = {k: v for k, v in written[0].items() if k != "response"}
    path = jsonl_writer(tmp_path / "bare.jsonl", [no_response])
    with pytest.raises(ValueError, match=r"bare.jsonl:1: 'answer' was parsed with parse_mode 'strict'.*--parse-mode"):
        load_predictions(path, "first")


def test_a_verdicts_file_holds_one_parse_mode(tmp_path, jsonl_writer):
    predictions = jsonl_writer(tmp_path / "p.jsonl", [row(0, TWO_BLOCKS), row(1, "<answer>sushi</answer>")])
    out = tmp_path / "v.jsonl"
    judge_predictions(predictions, out, OFFLINE, progress=False, parse_mode="strict")
    first_line = out.read_text().splitlines()[0]
    out.write_text(first_line + "\n")  # as if interrupted after one answer
    with pytest.raises(ValueError, match="parse mode 'strict', this run asks for 'first'"):
        judge_predictions(predictions, out, OFFLINE, progress=False)
    summary = judge_predictions(predictions, out, OFFLINE, progress=False, parse_mode="strict")
    assert (summary.already_judged, summary.judged) == (1, 1)


def verdict(source, index, first, strict, category="specific"):
    parsed = first  # the metrics below use the first mode
    return {
        "sample_id": f"{source}/{index}",
        "data_source": source,
        "prediction_index": 0,
        "ground_truth": "x",
        "answer": "x" if parsed else None,
        "category": category if parsed else None,
        "source": "offline" if parsed else "unparseable",
        "judge": "offline",
        **({} if parsed else {"reason": "unparseable"}),
        "parse_mode": "first",
        "parseable": {"first": first, "strict": strict},
    }


def test_the_report_gives_the_hand_counted_unparseable_rates_under_both_modes(tmp_path, jsonl_writer):
    rows = [
        verdict("cub200", 0, True, True),
        verdict("cub200", 1, True, False),
        verdict("cub200", 2, False, False),
        verdict("cub200", 3, True, True, category="wrong"),
        verdict("food101", 0, True, False),
        verdict("food101", 1, True, False),
        {**verdict("food101", 2, True, True), "parseable": None},  # no response: not counted under either
    ]
    path = jsonl_writer(tmp_path / "v.jsonl", rows)
    report = build_report([RunVerdicts("run", load_verdicts(path), str(path))], ReportSettings(replicates=0))
    run = report["runs"]["run"]
    cub, food = run["per_source"]["cub200"]["unparseable_rate"], run["per_source"]["food101"]["unparseable_rate"]
    assert (cub["answers"], cub["first"], cub["strict"], cub["counts"]) == (4, 1 / 4, 2 / 4, {"first": 1, "strict": 2})
    assert (food["answers"], food["first"], food["strict"]) == (2, 0.0, 1.0)
    overall = run["unparseable_rate"]
    assert (overall["answers"], overall["first"], overall["strict"]) == (6, 1 / 6, 4 / 6)
    assert run["parse_modes"] == {"first": 7}
    assert run["per_source"]["cub200"]["counts"]["unparseable"] == 1  # the metrics count the first mode's

    written = write_report(report, tmp_path / "report", plots=False)
    assert json.loads(written["json"].read_text())["runs"]["run"]["unparseable_rate"]["strict"] == 4 / 6
    text = written["markdown"].read_text()
    assert "- parse mode of the metrics (which `<answer>` block counts): `first`;" in text
    assert "| `run` | cub200 (training domain) | 4 | 25.0% (1) | 50.0% (2) |" in text
    assert "| `run` | food101 | 2 | 0.0% (0) | 100.0% (2) |" in text
    assert "| `run` | **all sources** | 6 | 16.7% (1) | 66.7% (4) |" in text


def test_predictions_to_report_counts_both_modes_from_the_responses(tmp_path, jsonl_writer):
    responses = [
        "<answer>sushi</answer>",  # both
        TWO_BLOCKS,  # first only
        "<answer>sushi</answer><answer>maki</answer>",  # first only
        "<Answer>sushi</Answer>",  # strict only
        "sushi, no tags",  # neither
    ]
    predictions = jsonl_writer(tmp_path / "p.jsonl", [row(i, text) for i, text in enumerate(responses)])
    verdicts = tmp_path / "v.jsonl"
    judge = ["eval", "judge", "--predictions", str(predictions), "--out", str(verdicts), "--judge", "offline"]
    assert speciarl([*judge, "--no-progress", "--parse-mode", "strict"]) == 0
    out = tmp_path / "report"
    assert speciarl(["eval", "report", "--verdicts", str(verdicts), "--out", str(out), "--no-plots"]) == 0
    run = json.loads((out / "report.json").read_text())["runs"]["v"]
    assert run["parse_modes"] == {"strict": 5}
    assert run["unparseable_rate"]["counts"] == {"first": 2, "strict": 3}
    assert run["per_source"]["food101"]["counts"]["unparseable"] == 3  # the metrics used strict
    assert "- parse mode of the metrics (which `<answer>` block counts): `strict`;" in (out / "report.md").read_text()
