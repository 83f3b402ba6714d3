import pytest

from speciarl_verl import Category, RewardSettings
from speciarl_verl.reward_settings import OverlongPenalty

C = Category


def test_defaults_are_the_paper_setting():
    s = RewardSettings()
    assert (s.scheme, s.group_mode, s.format_penalty, s.noise_rate) == ("dynamic", "all", -1.0, 0.0)
    assert s.training_rewards([C.SPECIFIC, C.GENERIC, None]) == [1.0, 0.0, -1.0]


def test_static_scheme_scores_each_rollout_from_its_table():
    s = RewardSettings.from_mapping({"scheme": "static", "static_table": "scala1", "format_penalty": -0.5})
    assert s.training_rewards([C.SPECIFIC, C.LESS_SPECIFIC, C.ABSTAIN, None]) == [1.0, 0.75, 0.25, -0.5]


def test_provisional_reward_is_the_group_of_one():
    s = RewardSettings()
    assert [s.provisional_reward(c) for c in (C.ABSTAIN, C.WRONG, None)] == [1.0, 0.0, -1.0]


def test_validation_score_is_exact_level_accuracy_without_format_penalty():
    s = RewardSettings()
    assert [s.validation_score(c) for c in (C.MORE_SPECIFIC, C.SPECIFIC, C.LESS_SPECIFIC, C.ABSTAIN, None)] == [
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
    ]


def test_dapo_overlong_keys_are_understood():
    s = RewardSettings.from_mapping(
        {"overlong_buffer_cfg": {"enable": True, "len": 512, "penalty_factor": 1.0, "log": False}, "max_resp_len": 2048}
    )
    assert s.overlong.penalty(1536) == 0.0
    assert s.overlong.penalty(1792) == pytest.approx(-0.5)
    assert s.overlong.penalty(2048) == pytest.approx(-1.0)
    assert RewardSettings().overlong.penalty(10_000) == 0.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"scheme": "best"}, "scheme='best'"),
        ({"group_mode": "first"}, "group_mode='first'"),
        ({"static_table": "base"}, "Unknown static reward table: 'base'"),
        ({"noise_rate": 1.5}, "noise_rate"),
        ({"max_answer_words": 0}, "max_answer_words"),
        ({"parse_mode": "lenient"}, "parse_mode='lenient' is not one of"),
        ({"format_penalty": float("nan")}, "format_penalty"),
        ({"reward_mode": "all"}, r"unknown reward.reward_kwargs key\(s\) \['reward_mode'\]"),
        ({"overlong_buffer_cfg": {"enable": True, "len": 512}}, "max_resp_len"),
        ({"overlong_buffer_cfg": {"enable": True, "len": 4096}, "max_resp_len": 2048}, "must be >="),
    ],
)
def test_bad_settings_fail_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        RewardSettings.from_mapping(values)


def test_overlong_penalty_disabled_needs_nothing():
    assert OverlongPenalty().penalty(5) == 0.0
