"""The group stage's per-group math on records, without TransferQueue (the stage itself: test_group_stage_on_cpu)."""

import pytest

from speciarl_verl import Category
from speciarl_verl.reward_settings import RewardSettings
from speciarl_verl.rollout_record import MissingRecordError, record_info
from speciarl_verl.verl_ext.group_stage import score_group_records

C = Category


def judged(verdict, category=None, penalty=0.0, source="cache"):
    category = category or verdict
    noised = category is not verdict
    return record_info("judged", verdict.value, verdict, source, category, noised, penalty, 1.0, 0.3)


def unparseable(penalty=0.0):
    return record_info("unparseable", None, None, None, None, False, penalty, -1.0)


def failed():
    return record_info("judge_error", "gull", None, None, None, False, 0.0, 0.0, judge_error="HTTP 503 from j1")


def test_training_group_rewards_the_best_level_and_adds_each_length_penalty():
    records = [judged(C.SPECIFIC, penalty=-0.25), judged(C.MORE_SPECIFIC), judged(C.GENERIC), unparseable(-0.5)]
    scored = score_group_records(records, RewardSettings(), uid="u1")
    assert scored.outcome.rewards == (1.0, 1.0, 0.0, -1.0)
    assert scored.scores == [0.75, 1.0, 0.0, -1.5]
    assert [r["acc"] for r in scored.records] == [1.0, 1.0, 0.0, -1.0]
    # the evaluation order breaks the training tie: more specific is the group's best
    assert {(r["group_best"], r["group_size"], r["masked"]) for r in scored.records} == {("more specific", 4, 0.0)}
    assert [r["overlong_penalty"] for r in scored.records] == [-0.25, 0.0, 0.0, -0.5]
    assert scored.outcome.categories == (C.SPECIFIC, C.MORE_SPECIFIC, C.GENERIC, None)
    assert scored.outcome.sources == ("cache", "cache", "cache", None)


def test_training_ranks_the_noised_category_and_validation_the_judges_verdict():
    records = [judged(C.GENERIC, category=C.SPECIFIC, penalty=-0.5), judged(C.SPECIFIC, category=C.LESS_SPECIFIC)]
    training = score_group_records(records, RewardSettings(), uid="u2")
    assert training.scores == [0.5, 0.0]
    assert training.outcome.noised == (True, True)
    validation = score_group_records(records, RewardSettings(), uid="u2", validation=True)
    assert validation.scores == [0.0, 1.0]  # reward3 of the verdicts; no length penalty in validation
    assert [r["category"] for r in validation.records] == ["specific", "less specific"]  # records stay as written


def test_a_judge_failure_gives_the_whole_group_one_reward():
    records = [judged(C.SPECIFIC, penalty=-0.25), failed(), judged(C.WRONG)]
    scored = score_group_records(records, RewardSettings(), uid="u3")
    assert scored.scores == [0.0, 0.0, 0.0]
    assert scored.outcome.masked and scored.outcome.judge_failed == (False, True, False)
    assert [r["masked"] for r in scored.records] == [1.0, 1.0, 1.0]
    assert scored.records[1]["judge_error"] == "HTTP 503 from j1"


def test_static_scheme_and_single_mode_come_from_the_settings():
    records = [judged(C.LESS_SPECIFIC), judged(C.LESS_SPECIFIC), judged(C.GENERIC)]
    assert score_group_records(records, RewardSettings(group_mode="single"), uid="u4").scores == [1.0, 0.0, 0.0]
    static = RewardSettings(scheme="static", static_table="scala1")
    assert score_group_records(records, static, uid="u4").scores == [0.75, 0.75, 0.5]


def test_a_missing_record_names_the_trajectory():
    with pytest.raises(MissingRecordError, match="trajectory u5_1_0 has no SpeciaRL reward record"):
        score_group_records([judged(C.WRONG), None], RewardSettings(), uid="u5", where=["u5_0_0", "trajectory u5_1_0"])
    with pytest.raises(MissingRecordError, match="a rollout of group u5"):
        score_group_records([{"acc": 1.0}], RewardSettings(), uid="u5")
