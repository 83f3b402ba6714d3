import pytest

from speciarl_verl.evaluation import metrics
from speciarl_verl.evaluation.metrics import (
    CategorySets,
    aggregate_all,
    aggregation_names,
    apply_undecided,
    get_aggregation,
    harmonic_mean,
    histogram,
    register_aggregation,
    undecided_policy,
)

# 10 answers: 1 more specific, 2 specific, 1 less specific, 1 generic, 1 abstain, 3 wrong, 1 unparseable.
COUNTS = {
    "more specific": 1,
    "specific": 2,
    "less specific": 1,
    "generic": 1,
    "abstain": 1,
    "wrong": 3,
    "unparseable": 1,
}


def test_hand_computed_histogram_gives_the_documented_metrics():
    values = aggregate_all(COUNTS, CategorySets())
    # correct = 1 + 2 + 1 + 1 = 5 of 10; specific = 1 + 2 = 3 of those 5.
    assert values["correctness"] == pytest.approx(5 / 10)
    assert values["specificity"] == pytest.approx(3 / 5)
    assert values["hm"] == pytest.approx(2 * 0.5 * 0.6 / (0.5 + 0.6))


def test_unparseable_answers_count_as_not_correct():
    with_failures = dict(COUNTS, unparseable=6)  # 15 answers, still 5 correct
    assert aggregate_all(with_failures, CategorySets())["correctness"] == pytest.approx(5 / 15)
    assert aggregate_all(with_failures, CategorySets())["specificity"] == pytest.approx(3 / 5)


def test_undecided_answers_are_in_no_denominator():
    # 10 decided answers as in COUNTS plus 7 nobody decided: the metrics are those of the 10.
    assert aggregate_all(dict(COUNTS, undecided=7), CategorySets()) == aggregate_all(COUNTS, CategorySets())
    assert aggregate_all({"undecided": 3}, CategorySets())["correctness"] == 0.0


def test_undecided_answers_are_left_out_or_filed_only_as_asked():
    values = ["specific", "undecided", "wrong", "undecided"]
    assert apply_undecided(values, "exclude") == ["specific", "wrong"]
    assert apply_undecided(values, "wrong") == ["specific", "wrong", "wrong", "wrong"]
    assert apply_undecided(values, "Abstain") == ["specific", "abstain", "wrong", "abstain"]
    with pytest.raises(ValueError, match="expected 'exclude' or a category"):
        undecided_policy("ignore")


def test_nothing_correct_gives_zero_specificity_and_hm():
    values = aggregate_all({"wrong": 4, "abstain": 2, "unparseable": 1}, CategorySets())
    assert values == {"correctness": 0.0, "specificity": 0.0, "hm": 0.0, "method_score": pytest.approx(-5 / 7)}
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(1.0, 0.0) == 0.0


def test_empty_histogram_gives_zeros_not_errors():
    zeros = {"correctness": 0.0, "specificity": 0.0, "hm": 0.0, "method_score": 0.0}
    assert aggregate_all({}, CategorySets()) == zeros


def test_set_definitions_are_configurable():
    strict = CategorySets.from_labels(correct=["specific", "more specific"], specific=["more specific"])
    values = aggregate_all(COUNTS, strict)
    assert values["correctness"] == pytest.approx(3 / 10)
    assert values["specificity"] == pytest.approx(1 / 3)
    lenient = CategorySets.from_labels(specific=["less specific", "specific", "more specific"])
    assert aggregate_all(COUNTS, lenient)["specificity"] == pytest.approx(4 / 5)


def test_category_sets_refuse_bad_definitions():
    with pytest.raises(ValueError, match="not in the correct set"):
        CategorySets.from_labels(correct=["specific"], specific=["more specific"])
    with pytest.raises(ValueError, match="not a verdict category"):
        CategorySets.from_labels(correct=["specfic"])
    with pytest.raises(ValueError, match="empty"):
        CategorySets.from_labels(specific=[])


def test_histogram_keeps_every_category_key():
    counts = histogram(["specific", "unparseable", "specific", "undecided"])
    assert counts["specific"] == 2 and counts["unparseable"] == 1 and counts["generic"] == 0
    assert counts["undecided"] == 1
    assert list(counts) == list(metrics.HISTOGRAM_KEYS)
    assert metrics.HISTOGRAM_KEYS[-2:] == ("undecided", "unparseable")
    assert "undecided" not in metrics.SCORED_KEYS


def test_a_user_aggregation_is_computed_without_touching_report_code(restore_aggregations):
    @register_aggregation("abstain_rate")
    def abstain_rate(counts, sets):
        return counts.get("abstain", 0) / sum(counts.values())

    assert aggregation_names()[:3] == ["correctness", "specificity", "hm"]
    assert "abstain_rate" in aggregation_names()
    assert aggregate_all(COUNTS, CategorySets())["abstain_rate"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="already registered"):
        register_aggregation("abstain_rate")(lambda counts, sets: 0.0)


def test_unknown_aggregation_names_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown aggregation: 'nope'.*correctness"):
        get_aggregation("nope")
