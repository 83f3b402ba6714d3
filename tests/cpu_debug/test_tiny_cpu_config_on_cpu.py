"""The CPU overrides (config group cpu_debug/tiny_cpu) compose onto every method recipe and pass verl's validation."""

from __future__ import annotations

import pytest
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

from speciarl_verl import RewardSettings
from speciarl_verl.config.compose import compose_config, shipped_config_names

CPU = "+cpu_debug=tiny_cpu"


@pytest.mark.parametrize("name", ["speciarl_grpo", "speciarl_drgrpo", "speciarl_dapo_ds"])
def test_cpu_overrides_compose_on_each_method_and_validate(name):
    recipe = compose_config(name)
    config = compose_config(name, [CPU])
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    rollout = config.actor_rollout_ref.rollout
    assert (rollout.name, rollout.tensor_model_parallel_size, config.trainer.n_gpus_per_node) == ("hf_cpu", 1, 1)
    assert config.actor_rollout_ref.model.lora_rank > 0  # LoRA stays on: the CPU run exercises the adapter sync
    # fp32 like the hf_cpu rollout, where every GPU recipe loads the actor in bf16
    assert (
        recipe.actor_rollout_ref.actor.fsdp_config.model_dtype,
        config.actor_rollout_ref.actor.fsdp_config.model_dtype,
    ) == ("bf16", "fp32")
    env = config.ray_kwargs.ray_init.runtime_env.env_vars
    assert env.VERL_USE_EXTERNAL_MODULES == "speciarl_verl.cpu_debug.activate" and env.VERL_PLATFORM == "cpu"
    # the method itself is untouched: only sizes and machinery change
    for key in ("adv_estimator", "norm_adv_by_std_in_grpo", "filter_groups"):
        assert config.algorithm.get(key) == recipe.algorithm.get(key)
    assert config.actor_rollout_ref.actor.loss_agg_mode == recipe.actor_rollout_ref.actor.loss_agg_mode
    settings = RewardSettings.from_verl_config(config)  # e.g. DAPO's overlong buffer must fit the short responses
    assert settings.judge.kind == "offline"


def test_cpu_overrides_are_not_a_shipped_recipe():
    assert not any("cpu" in name for name in shipped_config_names())


def test_activation_env_in_config_matches_the_activate_module():
    from speciarl_verl.cpu_debug.activate import CPU_RUN_ENV

    env = compose_config("speciarl_grpo", [CPU]).ray_kwargs.ray_init.runtime_env.env_vars
    assert {key: env[key] for key in CPU_RUN_ENV} == CPU_RUN_ENV
