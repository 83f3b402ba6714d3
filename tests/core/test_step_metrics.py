import pytest

from speciarl_verl.core import Category, GroupOutcome, step_metrics

C = Category


def outcome(uid, categories, rewards, **kw):
    return GroupOutcome(uid, tuple(categories), tuple(float(r) for r in rewards), **kw)


def test_rates_best_distribution_and_zero_variance_share():
    groups = [
        outcome(
            "a", [C.SPECIFIC, C.GENERIC, None, C.WRONG], [1, 0, -1, 0], sources=("offline", "offline", None, "deferred")
        ),
        outcome("b", [C.LESS_SPECIFIC] * 4, [1, 1, 1, 1], sources=("offline",) * 4),
        outcome("c", [C.WRONG, C.WRONG, C.MORE_SPECIFIC, C.SPECIFIC], [0, 0, 1, 1], short=True, sources=("llm",) * 4),
    ]
    m = step_metrics(groups)
    assert m["speciarl/groups_total"] == 3
    assert m["speciarl/rollouts_total"] == 12
    assert m["speciarl/short_groups_total"] == 1
    assert m["speciarl/category/wrong"] == pytest.approx(3 / 12)
    assert m["speciarl/category/less_specific"] == pytest.approx(4 / 12)
    assert m["speciarl/parse_failure_rate"] == pytest.approx(1 / 12)
    assert sum(m[f"speciarl/category/{c.slug}"] for c in Category) + m["speciarl/parse_failure_rate"] == pytest.approx(
        1
    )
    # group best in evaluation order: a -> specific, b -> less specific, c -> more specific
    assert m["speciarl/group_best/specific"] == pytest.approx(1 / 3)
    assert m["speciarl/group_best/more_specific"] == pytest.approx(1 / 3)
    assert m["speciarl/group_best/less_specific"] == pytest.approx(1 / 3)
    assert m["speciarl/group_best_level/mean"] == pytest.approx((4 + 3 + 4) / 3)
    assert m["speciarl/groups_zero_variance"] == pytest.approx(1 / 3)
    assert m["speciarl/verdict_source/offline"] == pytest.approx(6 / 11)
    assert m["speciarl/verdict_source/deferred"] == pytest.approx(1 / 11)


def test_all_unparseable_group_has_no_best():
    m = step_metrics([outcome("x", [None, None], [-1, -1])])
    assert m["speciarl/group_best/none"] == 1.0
    assert "speciarl/group_best_level/mean" not in m
    assert m["speciarl/groups_zero_variance"] == 1.0


def test_empty_batch_reports_counts_only():
    metrics = step_metrics([])
    assert all(name.endswith("_total") for name in metrics)
    assert set(metrics.values()) == {0.0}


def test_judge_traffic_failures_and_latency_quantiles():
    groups = [
        outcome(
            "a",
            [C.SPECIFIC, C.SPECIFIC, C.GENERIC, C.WRONG],
            [1, 1, 0, 0],
            sources=("llm", "dedup", "cache", "offline"),
            latencies=(0.2, None, None, None),
        ),
        outcome(
            "b",
            [C.WRONG, None, None, C.ABSTAIN],
            [0, 0, 0, 0],
            sources=("llm", None, None, "llm"),
            latencies=(0.4, None, None, 1.0),
            judge_failed=(False, True, False, False),
            masked=True,
        ),
    ]
    m = step_metrics(groups)
    assert (m["speciarl/judge/calls_total"], m["speciarl/judge/dedup_total"]) == (3, 1)
    assert (m["speciarl/judge/cache_hits_total"], m["speciarl/judge/failures_total"]) == (1, 1)
    assert m["speciarl/masked_groups_total"] == 1
    assert m["speciarl/judge/offline_share"] == pytest.approx(1 / 6)
    assert m["speciarl/parse_failure_rate"] == pytest.approx(1 / 8)  # the judge failure is not a parse failure
    assert (m["speciarl/judge/latency_p50_s"], m["speciarl/judge/latency_p95_s"]) == (0.4, 1.0)


def test_outcome_validates_lengths():
    with pytest.raises(ValueError, match="2 categories but 1 rewards"):
        outcome("bad", [C.WRONG, C.WRONG], [0])


def test_metric_names_avoid_verl_aggregation_keywords():
    # verl sums names containing sum/total, maxes max, mins min; only counts may say "total".
    names = step_metrics(
        [outcome("a", [C.ABSTAIN, C.GENERIC], [1, 0], sources=("offline", "offline"), noised=(False, True))]
    )
    for name in names:
        lowered = name.lower()
        assert "max" not in lowered, name
        assert "min" not in lowered, name
        assert ("total" in lowered) == name.endswith("_total"), name


def test_retries_count_attempts_beyond_the_first_of_llm_verdicts_and_judge_failures():
    groups = [
        outcome(
            "a",
            [C.SPECIFIC, C.SPECIFIC, C.GENERIC, C.WRONG],
            [1, 1, 0, 0],
            sources=("llm", "dedup", "cache", "llm"),
            attempts=(2, None, None, 1),  # the dedup waited on the first rollout's call: not counted twice
        ),
        outcome(
            "b",
            [C.WRONG, None, None, C.ABSTAIN],
            [0, 0, 0, 0],
            sources=("llm", None, None, "offline"),
            judge_failed=(False, True, True, False),
            attempts=(3, 5, None, None),  # a failure counts its attempts when it carries them
            masked=True,
        ),
        outcome("c", [C.WRONG, C.WRONG], [0, 0], sources=("llm", "llm")),  # records without attempts
    ]
    m = step_metrics(groups)
    assert m["speciarl/judge/retries_total"] == 1 + 2 + 4
    assert step_metrics(groups[2:])["speciarl/judge/retries_total"] == 0
