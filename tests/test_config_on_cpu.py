"""The shipped Hydra config composes on verl's ppo_trainer and passes verl's own validation."""

import copy

import pytest
from omegaconf import open_dict
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

from speciarl_verl import RewardSettings
from speciarl_verl.verl_ext.config_checks import group_stage_class
from speciarl_verl.verl_ext.group_stage import GroupRewardReplayBuffer


def validate(config):
    """verl's validate_config, on a copy with lora_rank=0.

    With LoRA on and rollout.name=vllm, validate_config imports vLLM (to round the rank to one vLLM
    supports), and vLLM cannot be installed beside the CPU torch; tests/recipes asserts the LoRA keys.
    """
    checked = copy.deepcopy(config)
    with open_dict(checked):
        checked.actor_rollout_ref.model.lora_rank = 0
    validate_config(config=checked, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_speciarl_grpo_composes_and_validates():
    from dataclasses import replace

    from speciarl_verl.config.compose import compose_config
    from speciarl_verl.judge import JudgeSettings

    config = compose_config()
    validate(config)
    assert config.reward.reward_manager.name == "speciarl"
    assert group_stage_class(config) is GroupRewardReplayBuffer
    settings = RewardSettings.from_verl_config(config)
    # every key of the yaml is a field with the dataclass default, except the judge's kind (auto on GPU nodes)
    assert settings == replace(RewardSettings(), judge=replace(JudgeSettings(), kind="auto"))
    assert settings.judge.llm.model == "Qwen/Qwen3-30B-A3B-Instruct-2507"
    assert (config.algorithm.adv_estimator, config.actor_rollout_ref.rollout.n, config.data.train_batch_size) == (
        "grpo",
        10,
        256,
    )


@pytest.mark.parametrize(
    ("overrides", "field", "value"),
    [
        (["reward.reward_kwargs.scheme=static", "reward.reward_kwargs.static_table=scala3"], "static_table", "scala3"),
        (["reward.reward_kwargs.noise_rate=0.1", "reward.reward_kwargs.noise_seed=7"], "noise_rate", 0.1),
        (["reward.reward_kwargs.group_mode=single"], "group_mode", "single"),
    ],
)
def test_ablations_are_plain_overrides(compose, overrides, field, value):
    config = compose(overrides=overrides)
    validate(config)
    assert getattr(RewardSettings.from_verl_config(config), field) == value


def test_dr_grpo_and_dapo_filter_overrides_validate(compose):
    validate(
        compose(
            overrides=[
                "algorithm.norm_adv_by_std_in_grpo=false",
                "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
                "actor_rollout_ref.actor.use_kl_loss=false",
            ]
        )
    )
    validate(compose(overrides=["algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=acc"]))
