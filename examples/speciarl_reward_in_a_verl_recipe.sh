#!/usr/bin/env bash
# The SpeciaRL reward inside another verl recipe: verl's own Qwen2.5-VL-7B GRPO example (the
# geo3k one, full fine-tuning, verl's ppo_trainer config) run on a SpeciaRL classification parquet.
# The recipe is unchanged; the SPECIARL block below is all that is added.
#
#   bash examples/speciarl_reward_in_a_verl_recipe.sh \
#       data.train_files=/abs/cub200_train_3000_seed42_reference.parquet data.val_files=/abs/cub200_test_500_seed42.parquet
#   bash examples/speciarl_reward_in_a_verl_recipe.sh --dry-run ...   # print the arguments, one per line
#
# Needs `pip install "speciarl-verl[gpu,train]"` on every node (verl finds the reward manager through
# the package's verl.plugins entry point) and a judge server, e.g.
#   vllm serve Qwen/Qwen3-30B-A3B-Instruct-2507 --port 8001 --tensor-parallel-size 2
# Arguments are Hydra overrides, added last. Every reward option: docs/configuration.md.
set -euo pipefail

# verl's Qwen2.5-VL GRPO example (examples/grpo_trainer, geo3k), minus its data paths and wandb.
RECIPE=(
    algorithm.adv_estimator=grpo
    algorithm.use_kl_in_reward=false
    data.image_key=images
    data.train_batch_size=512
    data.max_prompt_length=1024
    data.max_response_length=2048
    data.filter_overlong_prompts=true
    data.truncation=error
    actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-7B-Instruct
    actor_rollout_ref.model.use_remove_padding=true
    actor_rollout_ref.model.enable_gradient_checkpointing=true
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.ppo_mini_batch_size=128
    actor_rollout_ref.actor.use_dynamic_bsz=true
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576
    actor_rollout_ref.actor.use_kl_loss=true
    actor_rollout_ref.actor.kl_loss_coef=0.01
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
    actor_rollout_ref.actor.entropy_coeff=0
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.tensor_model_parallel_size=2
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    actor_rollout_ref.rollout.n=5
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=24576
    actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=24576
    actor_rollout_ref.ref.fsdp_config.param_offload=true
    'trainer.logger=[console,tensorboard]'
    trainer.project_name=verl_grpo_speciarl
    trainer.experiment_name=qwen2_5_vl_7b_speciarl_reward
    trainer.n_gpus_per_node=8
    trainer.nnodes=1
    trainer.test_freq=5
    trainer.total_epochs=15
)

# SpeciaRL: the reward manager scores each rollout with the judge, the group stage (a verl v1
# replay buffer) turns the n rollouts of an image into the group reward before the advantages.
# Both are needed: the reward manager refuses to start with the dynamic reward and no group stage,
# and without judge.kind (offline: rule tier only, undecided pairs wrong; llm; auto: rules, then the LLM).
# `+` because verl's own tree has no reward.reward_kwargs; unset keys keep their defaults.
SPECIARL=(
    reward.reward_manager.name=speciarl
    trainer.use_v1=true
    trainer.v1.sampler.custom_sampler.path=pkg://speciarl_verl.verl_ext.group_stage
    trainer.v1.sampler.custom_sampler.name=GroupRewardReplayBuffer
    +reward.reward_kwargs.scheme=dynamic
    +reward.reward_kwargs.judge.kind=auto
    '+reward.reward_kwargs.judge.llm.endpoints=[http://127.0.0.1:8001/v1]'
    +reward.reward_kwargs.judge.llm.model=Qwen/Qwen3-30B-A3B-Instruct-2507
)

dry_run=0
if [[ ${1:-} == --dry-run ]]; then
    dry_run=1
    shift
fi
command=(python3 -m verl.trainer.main_ppo "${RECIPE[@]}" "${SPECIARL[@]}" "$@")
if ((dry_run)); then
    printf '%s\n' "${command[@]}"
    exit 0
fi
exec "${command[@]}"
