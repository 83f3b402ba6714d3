"""The group stage against a real local TransferQueue, built by verl's own replay-buffer factory."""

from __future__ import annotations

import statistics
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo.metric_utils import compute_data_metrics, process_validation_metrics
from verl.trainer.ppo.v1.trainer_base import PPOTrainer

from speciarl_verl.offline_fixtures.local_cluster import build_replay_buffer
from speciarl_verl.offline_fixtures.verl_rollouts import finish_prompt, put_prompts, put_rollouts
from speciarl_verl.verl_ext.group_stage import GroupRewardReplayBuffer, GroupRewardReplayBufferAsync

pytestmark = pytest.mark.ray

S, MS, LS, G, A, W = "specific", "more specific", "less specific", "generic", "abstain", "wrong"


def publish(groups, partition="train", failed=()):
    """Write groups to TransferQueue the way verl's agent loop does and mark them terminal."""
    for rollouts in groups:
        put_prompts([rollouts[0].uid], partition, global_steps=rollouts[0].global_steps)
        put_rollouts(rollouts, partition)
    for rollouts in groups:
        finish_prompt(rollouts[0].uid, partition, failed=rollouts[0].uid in failed)


def stored(tq, keys, partition="train", fields=("rm_scores", "extra_fields")):
    data = tq.kv_batch_get(keys=list(keys), partition_id=partition, select_fields=list(fields))
    return data


def final_scores(tq, rollouts, partition="train"):
    data = stored(tq, [r.key for r in rollouts], partition)
    return [float(s[-1]) for s in data["rm_scores"].unbind(0)], [e["reward_extra_info"] for e in data["extra_fields"]]


def verl_advantages(tq, config, batch):
    """verl's own advantage estimation on a sampled batch: {trajectory key: advantage at its first token}."""
    from verl.utils import tensordict_utils as tu

    keys = batch.keys
    data = stored(tq, keys, fields=["responses"])
    zeros = [torch.zeros(r.numel()) for r in data["responses"].unbind(0)]
    # what the earlier pipeline stages would have written before advantage estimation
    tq.kv_batch_put(
        keys=keys,
        partition_id="train",
        fields=tu.get_tensordict(
            {
                name: torch.nested.as_nested_tensor(zeros, layout=torch.jagged)
                for name in ("old_log_probs", "ref_log_prob")
            }
        ),
    )
    PPOTrainer._compute_advantage(SimpleNamespace(config=config), batch, metrics={})
    advantages = stored(tq, keys, fields=["advantages"])
    return {k: float(a[0]) for k, a in zip(keys, advantages["advantages"].unbind(0), strict=True)}


def test_verl_builds_our_buffer_from_the_shipped_config(config_factory, transfer_queue):
    buffer = build_replay_buffer(config_factory())
    assert type(buffer) is GroupRewardReplayBuffer
    assert buffer.filter_groups_metric is None
    dapo = build_replay_buffer(
        config_factory(
            "algorithm.filter_groups.enable=true",
            "algorithm.filter_groups.metric=acc",
            "data.train_batch_size=4",
            "algorithm.filter_groups.max_inflight_gen_batches=3",
        ),
        refill_fn=lambda n: n,
    )
    # verl passes none of its DAPO options to a custom sampler; the stage derives them from the same config.
    assert (dapo.filter_groups_metric, dapo.train_batch_size, dapo.gen_batch_size, dapo.max_inflight_gen_batches) == (
        "acc",
        4,
        1,
        3,
    )


def test_dynamic_group_reward_replaces_the_provisional_score(config_factory, scored_group, transfer_queue):
    config = config_factory("data.train_batch_size=3", "actor_rollout_ref.rollout.n=5")
    groups = [
        scored_group(config, [S, S, G, W, None]),
        scored_group(config, [G, G, LS, W, A], source="oxford_pets"),
        scored_group(config, [W, W, A, W, W]),
    ]
    # alone, every parsed non-wrong answer would score 1
    assert [r.score for r in groups[1]] == [1.0, 1.0, 1.0, 0.0, 1.0]
    publish(groups)
    buffer = build_replay_buffer(config)
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=3)
    assert sorted(batch.keys) == sorted(r.key for g in groups for r in g)

    expected = [[1, 1, 0, 0, -1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]
    for rollouts, want in zip(groups, expected, strict=True):
        scores, infos = final_scores(transfer_queue, rollouts)
        assert scores == [float(x) for x in want]
        assert [i["acc"] for i in infos] == [float(x) for x in want]
        assert {i["group_size"] for i in infos} == {5}
    assert {i["group_best"] for i in final_scores(transfer_queue, groups[1])[1]} == {LS}

    assert metrics["speciarl/groups_total"] == 3
    assert metrics["speciarl/rollouts_total"] == 15
    assert metrics["speciarl/parse_failure_rate"] == pytest.approx(1 / 15)
    assert metrics["speciarl/category/wrong"] == pytest.approx(6 / 15)
    assert metrics["speciarl/group_best/specific"] == pytest.approx(1 / 3)
    assert metrics["speciarl/group_best/abstain"] == pytest.approx(1 / 3)
    assert metrics["speciarl/groups_zero_variance"] == 0.0


def test_single_mode_and_static_tables_are_config_switches(config_factory, scored_group, transfer_queue):
    single = config_factory("reward.reward_kwargs.group_mode=single")
    static = config_factory("reward.reward_kwargs.scheme=static", "reward.reward_kwargs.static_table=scala2")
    g1 = scored_group(single, [G, LS, LS, S, S])
    g2 = scored_group(static, [G, LS, A, S, None])
    publish([g1])
    build_replay_buffer(single).sample(global_steps=1, partition_id="train", batch_size=1)
    assert final_scores(transfer_queue, g1)[0] == [0.0, 0.0, 0.0, 1.0, 0.0]
    publish([g2])
    build_replay_buffer(static).sample(global_steps=1, partition_id="train", batch_size=1)
    assert final_scores(transfer_queue, g2)[0] == [0.5, 0.75, 0.0, 1.0, -1.0]


@pytest.mark.parametrize(
    ("estimator_overrides", "normalise"), [((), True), (("algorithm.norm_adv_by_std_in_grpo=false",), False)]
)
def test_verl_advantages_are_computed_from_the_group_reward(
    config_factory, scored_group, transfer_queue, estimator_overrides, normalise
):
    config = config_factory("data.train_batch_size=2", "actor_rollout_ref.rollout.n=4", *estimator_overrides)
    groups = [scored_group(config, [S, S, G, W]), scored_group(config, [G, G, LS, W])]
    publish(groups)
    batch, _ = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=2)
    by_key = verl_advantages(transfer_queue, config, batch)
    for rollouts, rewards in zip(groups, ([1, 1, 0, 0], [0, 0, 1, 0]), strict=True):
        mean = statistics.mean(rewards)
        scale = statistics.stdev(rewards) + 1e-6 if normalise else 1.0
        want = [(r - mean) / scale for r in rewards]
        assert [by_key[r.key] for r in rollouts] == pytest.approx(want, abs=1e-5)


def test_logged_score_is_the_trained_reward_including_the_length_penalty(config_factory, scored_group, transfer_queue):
    config = config_factory(
        "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
        "+reward.reward_kwargs.overlong_buffer_cfg.len=8",
        "+reward.reward_kwargs.max_resp_len=16",
    )
    group = scored_group(config, [S, G, S, W], padding_words=4)
    penalties = [r.reward_extra_info["overlong_penalty"] for r in group]
    assert all(p < 0 for p in penalties)
    publish([group])
    batch, _ = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=1)
    scores, infos = final_scores(transfer_queue, group)
    assert scores == pytest.approx([r + p for r, p in zip([1, 0, 1, 0], penalties, strict=True)])
    assert [i["acc"] for i in infos] == [1.0, 0.0, 1.0, 0.0]  # acc is the reward before the length penalty

    data = stored(transfer_queue, batch.keys, fields=["prompts", "responses", "response_mask", "rm_scores"])
    response_lengths = data["responses"].offsets().diff()
    padded = data.to_padded_tensor()
    padded["token_level_scores"] = padded["rm_scores"]
    padded["token_level_rewards"] = padded["rm_scores"]
    padded["advantages"] = torch.zeros_like(padded["rm_scores"])
    padded["returns"] = torch.zeros_like(padded["rm_scores"])
    padded["attention_mask"] = torch.cat([torch.ones_like(padded["prompts"]), padded["response_mask"]], dim=1)
    padded["prompt_length"] = data["prompts"].offsets().diff().float()
    padded["response_length"] = response_lengths.float()
    logged = compute_data_metrics(DataProto(batch=padded), use_critic=False)
    assert logged["critic/score/mean"] == pytest.approx(float(np.mean(scores)), abs=1e-6)


@pytest.mark.parametrize("metric", ["reward", "acc"])
def test_dapo_filter_judges_groups_by_the_group_reward(config_factory, scored_group, transfer_queue, metric):
    config = config_factory(
        "algorithm.filter_groups.enable=true",
        f"algorithm.filter_groups.metric={metric}",
        "data.train_batch_size=2",
        "actor_rollout_ref.rollout.n=4",
    )
    mixed = scored_group(config, [S, G, G, G])  # alone each scores 1 (uniform!); as a group 1,0,0,0
    uniform = scored_group(config, [G, G, G, G])  # group reward 1,1,1,1: no signal
    refills = []

    def refill(count):
        # later prompts (global step 2), so the selection prefers the original mixed group
        fresh = [scored_group(config, [S, W, W, A], steps=2) for _ in range(count)]
        refills.extend(fresh)
        publish(fresh)
        return count

    publish([mixed, uniform])
    buffer = build_replay_buffer(config, refill_fn=refill)
    batch, metrics = buffer.sample(global_steps=1, partition_id="train", batch_size=2)

    sampled = {key.rsplit("_", 2)[0] for key in batch.keys}
    assert mixed[0].uid in sampled and uniform[0].uid not in sampled
    assert metrics["training/filter_groups/evicted_samples"] == 1
    assert len(refills) == 2  # sync DAPO dispatches twice what it evicted
    assert metrics["training/filter_groups/discarded_surplus_samples"] == 1
    assert len(sampled) == 2
    assert metrics["speciarl/groups_zero_variance"] == 0.0
    assert metrics["speciarl/scored_groups_total"] == 4
    assert transfer_queue.kv_list().get("train", {}).keys() >= {r.key for r in mixed}


def test_a_group_that_lost_sessions_is_masked_never_scored_as_if_whole(config_factory, scored_group, transfer_queue):
    config = config_factory("data.train_batch_size=3", "actor_rollout_ref.rollout.n=4")
    full = scored_group(config, [S, G, W, W])
    short = scored_group(config, [G, LS, W, W])[:3]  # session 3 raised in the agent loop: it may have been specific
    lone = scored_group(config, [G, W, W, W])[:1]  # three sessions raised: one rollout alone
    publish([full, short, lone], failed={short[0].uid, lone[0].uid})
    batch, metrics = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=3)
    assert len(batch.keys) == 8
    for group in (short, lone):
        scores, infos = final_scores(transfer_queue, group)
        assert scores == [0.0] * len(group)  # not [0, 1, 0]: the survivors' best is not the group's best
        assert {(i["masked"], i["group_size"]) for i in infos} == {(1.0, len(group))}
    assert (metrics["speciarl/short_groups_total"], metrics["speciarl/masked_groups_total"]) == (2, 2)
    assert metrics["speciarl/rollouts_total"] == 8
    # what verl trains on: no advantage for either (a lone rollout would otherwise get its raw score, +1)
    advantages = verl_advantages(transfer_queue, config, batch)
    assert [advantages[r.key] for r in short + lone] == [0.0] * 4
    assert [advantages[r.key] for r in full] != [0.0] * 4


def test_validation_scores_each_answer_by_its_verdict_and_logs_category_rates(
    config_factory, scored_group, transfer_queue
):
    # Noise is on: validation must still use the judge's verdict, never the noised one.
    config = config_factory("reward.reward_kwargs.noise_rate=1.0")
    items = [
        scored_group(config, [v], source=s)
        for v, s in [
            (S, "fgvc_aircraft"),
            (G, "fgvc_aircraft"),
            (A, "oxford_pets"),
            (None, "oxford_pets"),
            (S, "oxford_pets"),
        ]
    ]
    assert items[0][0].reward_extra_info["category"] == LS  # the noise moved it
    publish(items, partition="val")
    _batch, _ = build_replay_buffer(config).sample(global_steps=1, partition_id="val", batch_size=len(items))
    scores = [final_scores(transfer_queue, item, "val")[0][0] for item in items]
    assert scores == [1.0, 0.0, 0.0, 0.0, 1.0]  # a group of one would have paid 1 for generic and abstain

    infos = [final_scores(transfer_queue, item, "val")[1][0] for item in items]
    infos_dict = {"reward": scores}
    for key in infos[0]:
        infos_dict[key] = [info[key] for info in infos]
    sources = [item[0].row["data_source"] for item in items]
    metrics = process_validation_metrics(sources, [item[0].uid for item in items], infos_dict)
    assert metrics["fgvc_aircraft"]["cat_generic"]["mean@1"] == 0.5
    assert metrics["fgvc_aircraft"]["acc"]["mean@1"] == 0.5
    assert metrics["oxford_pets"]["cat_abstain"]["mean@1"] == pytest.approx(1 / 3)
    assert metrics["oxford_pets"]["parse_failed"]["mean@1"] == pytest.approx(1 / 3)
    assert metrics["oxford_pets"]["correct"]["mean@1"] == pytest.approx(1 / 3)


def test_rescoring_after_a_restart_is_idempotent(config_factory, scored_group, transfer_queue):
    config = config_factory()
    group = scored_group(config, [S, G, None, W])
    publish([group])
    build_replay_buffer(config)._sync_metadata_from_transfer_queue()
    first = final_scores(transfer_queue, group)
    build_replay_buffer(config)._sync_metadata_from_transfer_queue()  # a fresh buffer, as after a checkpoint restore
    assert final_scores(transfer_queue, group) == first
    assert first[0] == [1.0, 0.0, -1.0, 0.0]


def test_trajectories_without_our_record_are_refused(config_factory, transfer_queue):
    config = config_factory()
    from speciarl_verl.offline_fixtures.verl_rollouts import Rollout

    foreign = Rollout(
        str(uuid.uuid4()), 0, {"data_source": "x"}, [1, 2], [3, 4], score=1.0, reward_extra_info={"acc": 1.0}
    )
    publish([[foreign]])
    with pytest.raises(RuntimeError, match="has no SpeciaRL reward record"):
        build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=1)


def test_async_trainer_modes_use_the_async_variant(config_factory, scored_group, transfer_queue):
    config = config_factory(
        "trainer.v1.trainer_mode=colocate_async",
        "trainer.v1.sampler.custom_sampler.name=GroupRewardReplayBufferAsync",
    )
    buffer = build_replay_buffer(config, refill_fn=lambda n: n, trainer_mode="colocate_async")
    assert type(buffer) is GroupRewardReplayBufferAsync
    group = scored_group(config, [G, LS, W])
    publish([group])
    buffer.sample(global_steps=1, partition_id="train", batch_size=1)
    assert final_scores(transfer_queue, group)[0] == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="GroupRewardReplayBufferAsync"):
        build_replay_buffer(config_factory("trainer.v1.trainer_mode=colocate_async"), trainer_mode="colocate_async")


def test_without_the_stage_verls_filter_would_drop_the_informative_group(config_factory, scored_group, transfer_queue):
    """The same DAPO step with verl's stock buffer: the provisional scores make the mixed group look uniform."""
    config = config_factory(
        "algorithm.filter_groups.enable=true",
        "algorithm.filter_groups.metric=reward",
        "data.train_batch_size=1",
        "actor_rollout_ref.rollout.n=4",
    )
    mixed = scored_group(config, [S, G, G, G])
    publish([mixed])
    stock = config_factory(
        "algorithm.filter_groups.enable=true",
        "algorithm.filter_groups.metric=reward",
        "data.train_batch_size=1",
        "trainer.v1.sampler.custom_sampler.path=null",
        "trainer.v1.sampler.custom_sampler.name=null",
    )
    refills = []

    def refill(count):
        fresh = [scored_group(config, [S, W, W, W], steps=2) for _ in range(count)]
        refills.extend(fresh)
        publish(fresh)
        return count

    batch, metrics = build_replay_buffer(stock, refill_fn=refill).sample(
        global_steps=1, partition_id="train", batch_size=1
    )
    assert mixed[0].uid not in {key.rsplit("_", 2)[0] for key in batch.keys}
    assert metrics["training/filter_groups/evicted_samples"] == 1
