"""The shipped DAPO config really turns on group-aware dynamic sampling in the buffer verl builds.

The rollouts are scored by the real reward manager the config selects, written to a real
TransferQueue in verl's layout, and sampled from the replay buffer that verl's own
``_build_replay_buffer`` constructs from the config.
"""

from __future__ import annotations

import uuid

import pytest
from verl.trainer.ppo.reward import load_reward_manager

from speciarl_verl.offline_fixtures.local_cluster import build_replay_buffer
from speciarl_verl.offline_fixtures.verl_rollouts import (
    Rollout,
    finish_prompt,
    put_prompts,
    put_rollouts,
    trajectory_dataproto,
)
from speciarl_verl.verl_ext.group_stage import GroupRewardReplayBuffer

pytestmark = pytest.mark.ray

ROW = {
    "data_source": "fgvc_aircraft",
    "prompt": [{"role": "user", "content": "<image>What is this?"}],
    "reward_model": {"style": "model", "ground_truth": "737-800"},
    "extra_info": {
        "index": 0,
        "parents": ["Boeing 737", "Boeing"],
        "parent_levels": ["close", "far"],
        "domain_nouns": ["aircraft", "airplane", "aeroplane", "plane"],
        "synonyms": [],
    },
    "index": 0,
}
ANSWERS = {"specific": "737-800", "generic": "airplane", "wrong": "A320"}


@pytest.fixture
def dapo_config(compose, tokenizer_dir):
    # the shipped config; only the batch is shrunk to a few groups, and the offline judge is used
    return compose(
        "speciarl_dapo_ds",
        [f"actor_rollout_ref.model.path={tokenizer_dir}", "data.train_batch_size=2", "actor_rollout_ref.rollout.n=4"],
    )


def test_dapo_ds_builds_our_buffer_with_the_filter_on(dapo_config, transfer_queue):
    buffer = build_replay_buffer(dapo_config, refill_fn=lambda count: count)
    assert type(buffer) is GroupRewardReplayBuffer
    # verl gives these DAPO options only to its own buffer; ours reads them from the same config keys
    assert (buffer.filter_groups_metric, buffer.train_batch_size, buffer.gen_batch_size) == ("acc", 2, 1)
    assert buffer.max_inflight_gen_batches == 3


def test_dapo_ds_drops_groups_whose_group_reward_is_uniform(dapo_config, tokenizer, transfer_queue):
    manager = load_reward_manager(dapo_config, tokenizer)
    prompt = tokenizer.encode("<|im_start|>user\nWhat is this?<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def publish(verdicts, steps=1):
        uid = uuid.uuid4().hex
        rollouts = []
        for session, verdict in enumerate(verdicts):
            text = f"<think>swept wings</think><answer>{ANSWERS[verdict]}</answer>"
            rollout = Rollout(uid, session, ROW, prompt, [*tokenizer.encode(text), eos], global_steps=steps)
            result = manager.loop.run_until_complete(manager.run_single(trajectory_dataproto(rollout)))
            assert result["reward_extra_info"]["verdict"] == verdict
            rollout.score, rollout.reward_extra_info = result["reward_score"], result["reward_extra_info"]
            rollouts.append(rollout)
        put_prompts([uid], global_steps=steps)
        put_rollouts(rollouts)
        finish_prompt(uid)
        return uid, rollouts

    # Alone, every parsed non-wrong answer scores 1, so this group's provisional scores are uniform;
    # its group reward (1, 0, 0, 0) is not. The second group is uniform either way (1, 1, 1, 1).
    mixed, mixed_rollouts = publish(["specific", "generic", "generic", "generic"])
    assert {r.score for r in mixed_rollouts} == {1.0}
    uniform, _ = publish(["generic"] * 4)
    refills = []

    def refill(count):
        refills.extend(publish(["specific", "wrong", "wrong", "wrong"], steps=2)[0] for _ in range(count))
        return count

    batch, metrics = build_replay_buffer(dapo_config, refill_fn=refill).sample(
        global_steps=1, partition_id="train", batch_size=2
    )
    sampled = {key.rsplit("_", 2)[0] for key in batch.keys}
    assert mixed in sampled and uniform not in sampled and len(sampled) == 2
    assert metrics["training/filter_groups/evicted_samples"] == 1
    assert refills and sampled - {mixed} <= set(refills)
    assert metrics["speciarl/groups_zero_variance"] == 0.0
    scores = transfer_queue.kv_batch_get(
        keys=[r.key for r in mixed_rollouts], partition_id="train", select_fields=["rm_scores"]
    )["rm_scores"]
    assert [float(s[-1]) for s in scores.unbind(0)] == [1.0, 0.0, 0.0, 0.0]
