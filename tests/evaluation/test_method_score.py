"""The method's average score in the report: per source, out-of-domain mean, best-of-N, undecided answers, report.md."""

import pytest

from speciarl_verl.evaluation.method_score import METHOD_SCORES
from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
from speciarl_verl.evaluation.report_markdown import render_markdown

NO_BOOTSTRAP = ReportSettings(replicates=0)


def test_the_methods_table():
    assert dict(METHOD_SCORES) == {
        "more specific": 1.0,
        "specific": 1.0,
        "less specific": 0.6,
        "generic": 0.2,
        "abstain": 0.0,
        "wrong": -1.0,
        "unparseable": -1.0,
    }


def test_per_source_and_out_of_domain_mean_from_hand_computed_scores(verdict_factory):
    every = [["more specific"], ["specific"], ["less specific"], ["generic"], ["abstain"], ["wrong"], [None]]
    verdicts = [
        *verdict_factory("cub200", [["specific"]] * 3),  # the training domain: not in the out-of-domain mean
        *verdict_factory("food101", every),
        *verdict_factory("flowers102", [["specific"], ["generic"]]),
    ]
    report = build_report([RunVerdicts("r", verdicts)], NO_BOOTSTRAP)
    run = report["runs"]["r"]
    assert "method_score" in report["aggregations"]
    food = (1 + 1 + 0.6 + 0.2 + 0 - 1 - 1) / 7
    assert run["per_source"]["food101"]["method_score"] == pytest.approx(food)
    assert run["per_source"]["flowers102"]["method_score"] == pytest.approx(0.6)
    assert run["per_source"]["cub200"]["method_score"] == pytest.approx(1.0)
    assert run["ood_mean"]["sources"] == ["flowers102", "food101"]
    assert run["ood_mean"]["method_score"] == pytest.approx((food + 0.6) / 2)


def test_undecided_answers_are_left_out_or_scored_as_the_category_named(verdict_factory):
    verdicts = verdict_factory("food101", [["specific"], ["generic"], ["undecided"], ["undecided"]])
    excluded = build_report([RunVerdicts("r", verdicts)], NO_BOOTSTRAP)["runs"]["r"]["per_source"]["food101"]
    assert excluded["method_score"] == pytest.approx((1 + 0.2) / 2)
    settings = ReportSettings(replicates=0, undecided="wrong")
    as_wrong = build_report([RunVerdicts("r", verdicts)], settings)["runs"]["r"]["per_source"]["food101"]
    assert as_wrong["method_score"] == pytest.approx((1 + 0.2 - 1 - 1) / 4)


def test_best_of_n_and_intervals_carry_it(verdict_factory):
    images = [["wrong", "specific"], ["generic", "generic"], [None, "less specific"]]
    block = build_report([RunVerdicts("r", verdict_factory("food101", images))], ReportSettings(replicates=200))
    source = block["runs"]["r"]["per_source"]["food101"]
    assert source["best_of_n"]["k"] == [1, 2]
    assert source["best_of_n"]["method_score"][-1] == pytest.approx((1 + 0.2 + 0.6) / 3)  # each image's best
    low, high = source["ci"]["method_score"]
    assert low <= source["method_score"] <= high


def test_report_markdown_defines_it_and_shows_its_column(verdict_factory):
    report = build_report([RunVerdicts("r", verdict_factory("food101", [["specific"], ["wrong"]]))], NO_BOOTSTRAP)
    text = render_markdown(report)
    assert (
        "- **method_score** (Score): the method's average score: each scored answer gets more specific 1, "
        "specific 1, less specific 0.6, generic 0.2, abstain 0, wrong -1, unparseable -1;"
    ) in text
    assert "| HM | Score |" in text
    assert report["definitions"]["method_score"].startswith("the method's average score")
