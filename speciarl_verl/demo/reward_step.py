"""Demo step 2: recorded rollouts through verl's reward loop and SpeciaRL's group stage, on CPU.

Each part is verl 0.9.1's real component:

1. compose the shipped ``speciarl_grpo`` Hydra config;
2. tokenize the recorded answers with a tiny offline Qwen-style tokenizer;
3. score every rollout on verl's ``RewardLoopWorker`` Ray actors (our
   ``speciarl`` reward manager, offline judge);
4. write the rollouts to TransferQueue as verl's agent loop does and mark
   each group finished;
5. sample a training batch through the replay buffer verl builds from the
   config (our group stage), then compute GRPO advantages with verl's
   ``core_algos``;
6. print each group's answers, categories and rewards, and the step metrics.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

__all__ = ["print_reward_step", "run_reward_step"]


def run_reward_step(rollouts_path, workers: int, overrides, status):
    import ray
    import torch
    import transfer_queue as tq
    from verl.experimental.reward_loop import RewardLoopManager
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from speciarl_verl.config.compose import compose_config
    from speciarl_verl.offline_fixtures.local_cluster import build_replay_buffer
    from speciarl_verl.offline_fixtures.recorded_rollouts import load_recorded_groups
    from speciarl_verl.offline_fixtures.tiny_tokenizer import build_tiny_tokenizer
    from speciarl_verl.offline_fixtures.verl_rollouts import (
        Rollout,
        finish_prompt,
        put_prompts,
        put_rollouts,
        score_rollouts,
    )

    groups = load_recorded_groups(rollouts_path)
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="speciarl-demo-tokenizer-"))
    tokenizer = build_tiny_tokenizer(tokenizer_dir, corpus=[r for g in groups for r in g.responses])
    n = max(len(g.responses) for g in groups)
    config = compose_config(
        overrides=[
            f"actor_rollout_ref.model.path={tokenizer_dir}",
            f"reward.num_workers={workers}",
            "reward.reward_kwargs.judge.kind=offline",  # no judge model on a CPU machine
            f"data.train_batch_size={len(groups)}",
            f"actor_rollout_ref.rollout.n={n}",
            *overrides,
        ]
    )

    status.update("scoring rollouts on verl's RewardLoopWorker actors...")
    reward_loop = RewardLoopManager(config)
    rollouts: list[Rollout] = []
    uids = []
    for index, group in enumerate(groups):
        uid = str(uuid.uuid4())  # verl's uids: no "_" (its buffer splits keys on the first one)
        uids.append(uid)
        row = group.row(index)
        prompt_text = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer.encode(prompt_text, add_special_tokens=False)
        eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        for session, text in enumerate(group.responses):
            response_ids = [*tokenizer.encode(text, add_special_tokens=False), eos]
            rollouts.append(Rollout(uid, session, row, list(prompt_ids), response_ids))
    score_rollouts(reward_loop.reward_loop_worker_handles, rollouts)

    status.update("group stage: sampling through the replay buffer verl builds...")
    put_prompts(uids)
    put_rollouts(rollouts)
    for uid in uids:
        finish_prompt(uid)
    buffer = build_replay_buffer(config)
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=len(groups))
    stored = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores", "extra_fields"])
    by_key = {
        key: (float(scores[-1]), extra["reward_extra_info"])
        for key, scores, extra in zip(batch.keys, stored["rm_scores"].unbind(0), stored["extra_fields"], strict=True)
    }
    for handle in reward_loop.reward_loop_workers:
        ray.kill(handle)

    ordered = [by_key[r.key] for r in rollouts]
    rewards = torch.tensor([[reward] for reward, _ in ordered])
    index = [r.uid for r in rollouts]
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=rewards, response_mask=torch.ones_like(rewards), index=index
    )
    return groups, rollouts, ordered, advantages[:, 0].tolist(), metrics, config


def print_reward_step(console, groups, rollouts, ordered, advantages, metrics, config) -> None:
    from speciarl_verl.demo.tables import AnswerRow, answer_table, metric_table

    kwargs = config.reward.reward_kwargs
    console.print(
        f"[bold]SpeciaRL reward[/bold]: scheme={kwargs.scheme}, group_mode={kwargs.group_mode}, "
        f"judge={kwargs.judge.kind} (undecided pairs -> {kwargs.judge.deferred_outcome})"
    )
    position = 0
    for group in groups:
        rows = []
        for _ in group.responses:
            reward, info = ordered[position]
            advantage = advantages[position]
            rows.append(AnswerRow(info["answer"], info["category"], info["verdict_source"], reward, advantage))
            position += 1
        title = f"{group.data_source} / {group.image_id}: ground truth [bold]{group.ground_truth}[/bold]"
        console.print(answer_table(title, rows))
    console.print(metric_table("step metrics (what verl logs for this batch)", metrics))
