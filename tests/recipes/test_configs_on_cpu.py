"""Every shipped config composes on verl 0.9.1, passes its validation and changes only what it says."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from speciarl_verl import RewardSettings
from speciarl_verl.config.compose import compose_config, shipped_config_names
from speciarl_verl.verl_ext.config_checks import check_group_stage, group_stage_class, judge_kind_given
from speciarl_verl.verl_ext.group_stage import GroupRewardReplayBuffer

STATIC = {"reward.reward_kwargs.scheme": "static"}
SCALA = ("scala1", "scala2", "scala3")
DRGRPO = {
    "algorithm.norm_adv_by_std_in_grpo": False,
    "actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-sum-norm",
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.actor.loss_scale_factor": "${data.max_response_length}",
}
DAPO = {
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.actor.clip_ratio_high": 0.28,
    "actor_rollout_ref.actor.clip_ratio_c": 10.0,
    "actor_rollout_ref.actor.use_dynamic_bsz": True,
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": 4096,
    "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz": True,
    "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu": 4096,
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": True,
    "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": 4096,
    "reward.reward_kwargs.overlong_buffer_cfg.enable": True,
    "reward.reward_kwargs.overlong_buffer_cfg.len": 512,
    "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": 1.0,
    "reward.reward_kwargs.max_resp_len": "${data.max_response_length}",
}
DYNAMIC_SAMPLING = {
    "algorithm.filter_groups.enable": True,
    "algorithm.filter_groups.metric": "acc",
    "algorithm.filter_groups.max_inflight_gen_batches": 3,
}

# Each config's keys that differ from speciarl_grpo (besides trainer.experiment_name), as in its header.
EXPECTED_CHANGES = {
    "speciarl_grpo": {},
    "speciarl_grpo_reward3": STATIC,
    **{f"speciarl_grpo_{t}": {**STATIC, "reward.reward_kwargs.static_table": t} for t in SCALA},
    "speciarl_grpo_n5": {"actor_rollout_ref.rollout.n": 5},
    "speciarl_grpo_n15": {"actor_rollout_ref.rollout.n": 15},
    "speciarl_grpo_noise5": {"reward.reward_kwargs.noise_rate": 0.05},
    "speciarl_grpo_noise10": {"reward.reward_kwargs.noise_rate": 0.1},
    "speciarl_grpo_noise25": {"reward.reward_kwargs.noise_rate": 0.25},
    "speciarl_grpo_data128": {"data.train_batch_size": 128},
    "speciarl_grpo_data1024": {},  # the data itself comes from the recipe (--train-subset 1024)
    "speciarl_grpo_data2048": {},
    # another training domain: only the data differs, and it comes from the recipe (--train-file)
    **{f"speciarl_grpo_{d}": {} for d in ("fgvc_aircraft", "flowers102", "food101", "oxford_pets")},
    "speciarl_grpo_mixed": {"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 16},
    "speciarl_drgrpo": DRGRPO,
    "speciarl_drgrpo_reward3": {**DRGRPO, **STATIC},
    "speciarl_dapo": DAPO,
    "speciarl_dapo_reward3": {**DAPO, **STATIC},
    "speciarl_dapo_ds": {**DAPO, **DYNAMIC_SAMPLING},
    "speciarl_dapo_ds_reward3": {**DAPO, **DYNAMIC_SAMPLING, **STATIC},
}


def leaves(node, prefix: str = "") -> dict:
    """Flat ``dotted.key -> value`` of a config, interpolations left as written."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


@pytest.fixture(scope="module")
def composed():
    return {name: compose_config(name) for name in shipped_config_names()}


def test_the_shipped_configs_are_the_documented_ones():
    assert shipped_config_names() == sorted(EXPECTED_CHANGES)


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_config_composes_validates_and_wires_both_stages(composed, validate_on_cpu, name):
    config = composed[name]
    validate_on_cpu(config)
    settings = RewardSettings.from_verl_config(config)  # raises on an unknown or invalid reward key
    check_group_stage(config, settings)
    assert judge_kind_given(config)  # every shipped config chooses its judge (the reward refuses otherwise)
    assert group_stage_class(config) is GroupRewardReplayBuffer
    assert config.reward.reward_manager.name == "speciarl"
    assert config.trainer.use_v1 is True


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_config_changes_only_what_its_ablation_needs(composed, name):
    base = leaves(OmegaConf.to_container(composed["speciarl_grpo"], resolve=False))
    mine = leaves(OmegaConf.to_container(composed[name], resolve=False))
    assert mine.keys() >= base.keys()  # a config may add keys (DAPO's length penalty), never drop one
    changed = {k: v for k, v in mine.items() if k not in base or base[k] != v}
    changed.pop("trainer.experiment_name", None)
    assert changed == EXPECTED_CHANGES[name]


def test_every_config_logs_under_its_own_experiment_name(composed):
    names = [c.trainer.experiment_name for c in composed.values()]
    assert len(set(names)) == len(names)


def test_main_recipe_is_the_paper_setting(composed):
    config = composed["speciarl_grpo"]
    model, actor, rollout = (config.actor_rollout_ref[k] for k in ("model", "actor", "rollout"))
    assert model.path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (model.lora_rank, model.lora_alpha, model.target_modules) == (64, 32, "all-linear")
    # peft matches exclude_modules against whole module names: the vision tower, merger included, gets no adapter
    excluded = re.compile(model.exclude_modules)
    assert excluded.fullmatch("model.visual.blocks.0.attn.qkv") and excluded.fullmatch("model.visual.merger.mlp.0")
    assert not excluded.fullmatch("model.language_model.layers.0.self_attn.q_proj")
    assert (actor.optim.lr, actor.optim.lr_warmup_steps_ratio, actor.optim.weight_decay) == (3e-5, 0.0, 0.01)
    assert (config.data.train_batch_size, actor.ppo_mini_batch_size, rollout.n) == (256, 128, 10)
    assert config.data.seed == 1 and config.data.shuffle is True
    assert (actor.use_kl_loss, actor.kl_loss_type, actor.kl_loss_coef) == (True, "low_var_kl", 0.01)
    assert actor.fsdp_config.model_dtype == "bf16"  # the method's weights; verl 0.9.1 would load fp32
    assert (config.data.max_prompt_length, config.data.max_response_length) == (2048, 2048)
    assert (rollout.name, rollout.tensor_model_parallel_size, rollout.gpu_memory_utilization) == ("vllm", 2, 0.6)
    # vLLM >= 0.13 has no disable_mm_preprocessor_cache; a 0 GB cache is how it is switched off
    assert OmegaConf.to_container(rollout.engine_kwargs.vllm) == {"mm_processor_cache_gb": 0}
    assert (config.trainer.total_epochs, list(config.trainer.logger)) == (15, ["console", "tensorboard"])
    assert (config.algorithm.adv_estimator, config.algorithm.filter_groups.enable) == ("grpo", False)
    judge = RewardSettings.from_verl_config(config).judge
    assert (judge.kind, judge.failure_policy, judge.llm.endpoints) == ("auto", "raise", ("http://127.0.0.1:8001/v1",))
    # the judge reads what the method's did: both strings cleaned, the prediction whole
    assert (judge.llm.input_text, judge.llm.max_prediction_chars) == ("normalized", None)


def test_dapo_length_penalty_resolves_against_the_response_length(composed):
    overlong = RewardSettings.from_verl_config(composed["speciarl_dapo"]).overlong
    assert (overlong.enable, overlong.buffer_length, overlong.max_response_length) == (True, 512, 2048)
    assert overlong.penalty(1536) == 0.0 and overlong.penalty(2048) == -1.0
    shorter = compose_config("speciarl_dapo", ["data.max_response_length=1024"])
    assert RewardSettings.from_verl_config(shorter).overlong.max_response_length == 1024
