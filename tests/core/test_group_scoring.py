"""One group's scores and rewritten records from its rollouts' records: every branch, without Ray."""

import subprocess
import sys

import pytest

from speciarl_verl.core import Category, score_group
from speciarl_verl.core.rollout_record import MissingRecordError, record_info
from speciarl_verl.reward_settings import OverlongPenalty, RewardSettings

C = Category


def judged(verdict, category=None, penalty=0.0, source="cache"):
    category = category or verdict
    noised = category is not verdict
    return record_info("judged", "an answer", verdict, source, category, noised, penalty, 1.0, 0.3)


def unparseable(penalty=0.0):
    return record_info("unparseable", None, None, None, None, False, penalty, -1.0)


def failed(attempts=None):
    return record_info(
        "judge_error",
        "gull",
        None,
        None,
        None,
        False,
        0.0,
        0.0,
        judge_error="HTTP 503 from j1",
        judge_attempts=attempts,
    )


def test_training_rewards_the_best_level_and_adds_each_length_penalty():
    settings = RewardSettings(overlong=OverlongPenalty(True, 4, 1.0, 8))  # penalties come from the records
    records = [judged(C.SPECIFIC, penalty=-0.25), judged(C.MORE_SPECIFIC), judged(C.GENERIC), unparseable(-0.5)]
    scored = score_group(records, settings, validation=False, uid="u1")
    assert scored.outcome.rewards == (1.0, 1.0, 0.0, -1.0)
    assert scored.scores == [0.75, 1.0, 0.0, -1.5]
    assert [r["acc"] for r in scored.records] == [1.0, 1.0, 0.0, -1.0]
    # the evaluation order breaks the training tie: more specific is the group's best
    assert {(r["group_best"], r["group_size"], r["masked"]) for r in scored.records} == {("more specific", 4, 0.0)}
    assert [r["overlong_penalty"] for r in scored.records] == [-0.25, 0.0, 0.0, -0.5]
    assert scored.outcome.categories == (C.SPECIFIC, C.MORE_SPECIFIC, C.GENERIC, None)
    assert scored.outcome.sources == ("cache", "cache", "cache", None)
    assert (scored.outcome.uid, scored.outcome.short, scored.outcome.masked) == ("u1", False, False)


def test_an_unparseable_answer_gets_the_format_penalty_and_no_rank():
    scored = score_group([unparseable(), judged(C.WRONG)], RewardSettings(format_penalty=-0.5), validation=False)
    assert scored.scores == [-0.5, 0.0]  # an all-wrong group earns nothing; the wrong answer is not outranked
    assert [r["group_best"] for r in scored.records] == ["wrong", "wrong"]
    only_unparseable = score_group([unparseable(), unparseable()], RewardSettings(), validation=False)
    assert only_unparseable.scores == [-1.0, -1.0]
    assert {r["group_best"] for r in only_unparseable.records} == {None}


def test_training_rewards_the_noised_category_and_validation_never_sees_the_noise():
    records = [judged(C.GENERIC, category=C.SPECIFIC, penalty=-0.5), judged(C.SPECIFIC, category=C.LESS_SPECIFIC)]
    training = score_group(records, RewardSettings(), validation=False)
    assert training.scores == [0.5, 0.0]  # the reward pays the noised categories
    assert training.outcome.noised == (True, True)
    assert training.outcome.categories == (C.GENERIC, C.SPECIFIC)  # the metrics count the judge's verdicts
    assert [r["category"] for r in training.records] == ["specific", "less specific"]
    validation = score_group(records, RewardSettings(), validation=True)
    assert validation.scores == [0.0, 1.0]  # reward3 of the verdicts; no length penalty in validation
    assert validation.outcome.categories == (C.GENERIC, C.SPECIFIC)
    # validation records carry the verdict, not the training noise: category, level and noised agree with acc
    assert [(r["category"], r["level"], r["noised"]) for r in validation.records] == [
        ("generic", 2, 0.0),
        ("specific", 4, 0.0),
    ]
    assert [r["acc"] for r in validation.records] == [0.0, 1.0]
    assert [r["overlong_penalty"] for r in validation.records] == [0.0, 0.0]


def test_validation_scores_each_answer_on_its_own_with_the_validation_table():
    records = [judged(C.LESS_SPECIFIC), judged(C.LESS_SPECIFIC), unparseable(-0.5)]
    scored = score_group(records, RewardSettings(validation_table="scala1"), validation=True)
    assert scored.scores == [0.75, 0.75, 0.0]  # a group reward would pay 1; unparseable scores 0 in validation


def test_a_judge_failure_gives_the_whole_training_group_one_reward():
    records = [judged(C.SPECIFIC, penalty=-0.25), failed(), judged(C.WRONG)]
    scored = score_group(records, RewardSettings(), validation=False, uid="u3")
    assert scored.scores == [0.0, 0.0, 0.0]
    assert scored.outcome.masked
    assert scored.outcome.judge_failed == (False, True, False)
    assert [r["masked"] for r in scored.records] == [1.0, 1.0, 1.0]
    assert scored.records[1]["judge_error"] == "HTTP 503 from j1"


def test_the_judges_attempts_reach_the_outcome_and_stay_in_the_records():
    llm = record_info("judged", "gull", C.WRONG, "llm", C.WRONG, False, 0.0, 0.0, 0.3, judge_attempts=2)
    records = [llm, failed(attempts=3), judged(C.SPECIFIC)]
    for validation in (False, True):
        scored = score_group(records, RewardSettings(), validation=validation, uid="u4")
        assert scored.outcome.attempts == (2, 3, None)
        assert [r["judge_attempts"] for r in scored.records] == [2, 3, None]


def test_a_judge_failure_in_validation_costs_only_that_answer():
    records = [judged(C.SPECIFIC, penalty=-0.25), failed(), judged(C.WRONG)]
    scored = score_group(records, RewardSettings(), validation=True, uid="u3")
    assert scored.scores == [1.0, 0.0, 0.0]  # the correct sibling keeps its score
    assert not scored.outcome.masked
    assert [r["acc"] for r in scored.records] == [1.0, 0.0, 0.0]
    # one denominator for every validation rate: the failed answer is 0 in acc, correct and each cat_*
    assert [(r["correct"], r["cat_specific"], r["judge_failed"]) for r in scored.records] == [
        (1.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
        (0.0, 0.0, 0.0),
    ]


def test_static_scheme_and_single_mode_come_from_the_settings():
    records = [judged(C.LESS_SPECIFIC), judged(C.LESS_SPECIFIC), judged(C.GENERIC)]
    assert score_group(records, RewardSettings(), validation=False).scores == [1.0, 1.0, 0.0]
    assert score_group(records, RewardSettings(group_mode="single"), validation=False).scores == [1.0, 0.0, 0.0]
    static = RewardSettings(scheme="static", static_table="scala1")
    assert score_group(records, static, validation=False).scores == [0.75, 0.75, 0.5]


def test_zero_variance_counts_the_length_penalty():
    # same reward, different penalties: GRPO still sees a difference between the two
    scored = score_group([judged(C.WRONG, penalty=-0.5), judged(C.WRONG)], RewardSettings(), validation=False)
    assert scored.outcome.rewards == (0.0, 0.0) and scored.scores == [-0.5, 0.0]
    assert not scored.outcome.zero_variance


def test_a_training_group_that_is_not_whole_is_never_scored_as_if_it_were():
    # two sessions of four failed: the survivors' best (generic) need not be the group's best
    short = score_group([judged(C.GENERIC), judged(C.WRONG)], RewardSettings(), validation=False, uid="u6", short=True)
    assert short.scores == [0.0, 0.0]
    assert (short.outcome.short, short.outcome.masked) == (True, True)
    assert [(r["group_size"], r["masked"]) for r in short.records] == [(2, 1.0), (2, 1.0)]
    # one rollout alone has nothing to be compared with: GRPO would hand it its raw score as advantage
    alone = score_group([judged(C.GENERIC, penalty=-0.5)], RewardSettings(), validation=False, uid="u7")
    assert (alone.scores, alone.outcome.masked) == ([0.0], True)
    # validation scores each answer on its own: a lone or short group keeps its scores
    assert score_group([judged(C.SPECIFIC)], RewardSettings(), validation=True, short=True).scores == [1.0]


def test_scoring_reads_records_and_never_their_previous_group_fields():
    first = score_group([judged(C.GENERIC), judged(C.ABSTAIN)], RewardSettings(), validation=False)
    again = score_group(first.records, RewardSettings(), validation=False)
    assert again.scores == first.scores
    assert again.records == first.records


def test_a_missing_record_names_the_trajectory():
    with pytest.raises(MissingRecordError, match="trajectory u5_1_0 has no SpeciaRL reward record"):
        score_group([judged(C.WRONG), None], RewardSettings(), validation=False, where=["u5_0_0", "trajectory u5_1_0"])
    with pytest.raises(MissingRecordError, match="a rollout of group u5"):
        score_group([{"acc": 1.0}], RewardSettings(), validation=False, uid="u5")


def test_the_core_scores_a_group_without_loading_torch_or_verl():
    code = (
        "import sys; import speciarl_verl.core as c; c.score_group; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert "speciarl_verl" in loaded
    assert not loaded & {"torch", "verl", "transfer_queue", "ray", "omegaconf"}, loaded
