"""The LLM judge inside verl's reward path: failure policy, judge metrics, nothing silently scored 0."""

from __future__ import annotations

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
from speciarl_verl.verl_ext.group_stage import JudgeFailedError
from support.straying_judge import StrayingJudge

pytestmark = pytest.mark.ray

ROW = {
    "data_source": "fgvc_aircraft",
    "prompt": [{"role": "user", "content": "<image>Classify the image."}],
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


def judge_overrides(url, tmp_path, policy="raise"):
    return [
        "reward.reward_kwargs.judge.kind=auto",
        f"reward.reward_kwargs.judge.failure_policy={policy}",
        f"reward.reward_kwargs.judge.llm.endpoints=[{url}]",
        "reward.reward_kwargs.judge.llm.model=fake-judge",
        "reward.reward_kwargs.judge.llm.max_retries=1",
        "reward.reward_kwargs.judge.llm.backoff_initial_s=0.01",
        "reward.reward_kwargs.judge.cache.backend=sqlite",
        f"reward.reward_kwargs.judge.cache.path={tmp_path / 'verdicts.sqlite'}",
    ]


def score_group(manager, tokenizer, uid, answers, partition="train"):
    prompt = tokenizer.encode("<|im_start|>user\nClassify.<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rollouts = []
    for session, answer in enumerate(answers):
        ids = [*tokenizer.encode(f"<think>wings</think><answer>{answer}</answer>"), eos]
        rollout = Rollout(uid, session, ROW, prompt, ids)
        result = manager.loop.run_until_complete(manager.run_single(trajectory_dataproto(rollout)))
        rollout.score, rollout.reward_extra_info = result["reward_score"], result["reward_extra_info"]
        rollouts.append(rollout)
    put_prompts([uid], partition)
    put_rollouts(rollouts, partition)
    finish_prompt(uid, partition)
    return rollouts


def test_failed_judge_stops_training_by_default(config_factory, tokenizer, fake_judge, tmp_path, transfer_queue):
    server = fake_judge(fault="status:503")
    config = config_factory("data.train_batch_size=1", *judge_overrides(server.url, tmp_path))
    manager = load_reward_manager(config, tokenizer)
    rollouts = score_group(manager, tokenizer, "a1b2", ["737-800", "A320", "A330", "Boeing 737"])
    infos = [r.reward_extra_info for r in rollouts]
    assert [i["status"] for i in infos] == ["judged", "judge_error", "judge_error", "judged"]
    assert server.url in infos[1]["judge_error"] and "HTTP 503" in infos[1]["judge_error"]
    assert [i["judge_attempts"] for i in infos] == [None, 2, 2, None]  # max_retries=1: each failure tried twice
    with pytest.raises(JudgeFailedError, match=r"failed on 2 rollout\(s\) in 1 group\(s\).*HTTP 503") as excinfo:
        build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=1)
    assert server.url in str(excinfo.value)


def test_mask_policy_zeroes_the_group_and_counts_it(config_factory, tokenizer, fake_judge, tmp_path, transfer_queue):
    server = fake_judge(fault="status:503")
    config = config_factory("data.train_batch_size=2", *judge_overrides(server.url, tmp_path, policy="mask"))
    manager = load_reward_manager(config, tokenizer)
    failed = score_group(manager, tokenizer, "c3d4", ["737-800", "A320", "Boeing 737", "airplane"])
    healthy = score_group(manager, tokenizer, "e5f6", ["737-800", "Boeing 737", "airplane", "None"])
    _batch, metrics = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=2)
    data = transfer_queue.kv_batch_get(
        keys=[r.key for r in failed + healthy], partition_id="train", select_fields=["rm_scores", "extra_fields"]
    )
    scores = [float(s[-1]) for s in data["rm_scores"].unbind(0)]
    assert scores[:4] == [0.0, 0.0, 0.0, 0.0]  # one reward for the whole group: zero advantage
    assert scores[4:] == [1.0, 0.0, 0.0, 0.0]
    assert [e["reward_extra_info"]["masked"] for e in data["extra_fields"]] == [1.0] * 4 + [0.0] * 4
    assert metrics["speciarl/masked_groups_total"] == 1
    assert metrics["speciarl/judge/failures_total"] == 1
    assert metrics["speciarl/judge/retries_total"] == 1  # the failed call's second attempt


def test_judge_traffic_reaches_the_step_metrics(config_factory, tokenizer, fake_judge, tmp_path, transfer_queue):
    server = fake_judge(latency_s=0.01)
    config = config_factory("data.train_batch_size=2", *judge_overrides(server.url, tmp_path))
    manager = load_reward_manager(config, tokenizer)
    score_group(manager, tokenizer, "a0a0", ["737-800", "A320", "A320", "A330"])
    score_group(manager, tokenizer, "b0b0", ["A320", "Boeing 737", "A340", "None"])
    _, metrics = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=2)
    assert server.calls == 3  # A320, A330, A340: each deferred pair judged once
    assert metrics["speciarl/judge/calls_total"] == 3
    assert metrics["speciarl/judge/cache_hits_total"] == 2  # the repeated A320s, found in the cache
    assert metrics["speciarl/judge/offline_share"] == pytest.approx(3 / 8)
    assert metrics["speciarl/judge/latency_p95_s"] >= 0.01
    assert metrics["speciarl/judge/failures_total"] == 0
    assert metrics["speciarl/judge/retries_total"] == 0


def test_a_judge_that_strays_outside_its_labels_costs_a_retry_not_a_failure(
    config_factory, tokenizer, tmp_path, transfer_queue
):
    with StrayingJudge(strays=1) as server:
        config = config_factory("data.train_batch_size=1", *judge_overrides(server.url, tmp_path))
        manager = load_reward_manager(config, tokenizer)
        rollouts = score_group(manager, tokenizer, "s1s1", ["A320", "A330", "737-800", "None"])
        _, metrics = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=1)
    infos = [r.reward_extra_info for r in rollouts]
    assert [i["status"] for i in infos] == ["judged"] * 4 and server.calls == 3
    assert [i["judge_attempts"] for i in infos] == [2, 1, None, None]  # the first answer was asked twice
    assert metrics["speciarl/judge/calls_total"] == 2 and metrics["speciarl/judge/failures_total"] == 0
    assert metrics["speciarl/judge/retries_total"] == 1


# ---------------------------------------------------------------- failures outside the judge itself


def unused_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_cache_config(config_factory, judge_url, batch_size, policy="raise"):
    """(config, port): the judge is up, its Redis verdict cache on ``port`` is not (nothing listens there);
    the cache URL carries a password."""
    port = unused_port()
    config = config_factory(
        f"data.train_batch_size={batch_size}",
        f"reward.reward_kwargs.judge.llm.endpoints=[{judge_url}]",
        *redis_cache_overrides(port, policy),
    )
    return config, port


def redis_cache_overrides(port, policy="raise"):
    return [
        "reward.reward_kwargs.judge.kind=auto",
        f"reward.reward_kwargs.judge.failure_policy={policy}",
        "reward.reward_kwargs.judge.llm.model=fake-judge",
        "reward.reward_kwargs.judge.llm.max_retries=0",
        "reward.reward_kwargs.judge.cache.backend=redis",
        "reward.reward_kwargs.judge.cache.reconnect_s=0",  # nothing will ever listen there
        f"reward.reward_kwargs.judge.cache.redis_url='redis://:s3cret@127.0.0.1:{port}/0'",
    ]


def test_an_unreachable_cache_stops_the_run_naming_it_never_a_short_group(
    config_factory, tokenizer, fake_judge, transfer_queue
):
    server = fake_judge()
    config, port = unreachable_cache_config(config_factory, server.url, batch_size=1)
    manager = load_reward_manager(config, tokenizer)
    # "airplane" the rule tier decides; the two others need the LLM, whose verdicts go through the cache
    rollouts = score_group(manager, tokenizer, "f0f0", ["airplane", "Boeing 737-800 (Next Gen)", "A320"])
    infos = [r.reward_extra_info for r in rollouts]
    assert [i["status"] for i in infos] == ["judged", "judge_error", "judge_error"]
    assert f"127.0.0.1:{port}" in infos[1]["judge_error"] and "s3cret" not in infos[1]["judge_error"]
    with pytest.raises(JudgeFailedError, match=rf"failed on 2 rollout\(s\).*Redis.*127\.0\.0\.1:{port}") as stopped:
        build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=1)
    assert "s3cret" not in str(stopped.value)
    assert server.calls == 0


def test_an_unreachable_cache_under_mask_trains_only_whole_groups(
    config_factory, tokenizer, fake_judge, transfer_queue
):
    config, _ = unreachable_cache_config(config_factory, fake_judge().url, batch_size=2, policy="mask")
    manager = load_reward_manager(config, tokenizer)
    failed = score_group(manager, tokenizer, "a0f1", ["airplane", "Boeing 737-800 (Next Gen)", "A320"])
    healthy = score_group(manager, tokenizer, "b0f1", ["737-800", "airplane", "None"])
    _batch, metrics = build_replay_buffer(config).sample(global_steps=1, partition_id="train", batch_size=2)
    data = transfer_queue.kv_batch_get(
        keys=[r.key for r in failed + healthy], partition_id="train", select_fields=["rm_scores"]
    )
    assert [float(s[-1]) for s in data["rm_scores"].unbind(0)] == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert metrics["speciarl/short_groups_total"] == 0  # every group complete: none scored on a part
    assert (metrics["speciarl/masked_groups_total"], metrics["speciarl/judge/failures_total"]) == (1, 2)


def test_an_unset_key_variable_stops_the_reward_worker_at_start(config_factory, tokenizer, monkeypatch, tmp_path):
    monkeypatch.delenv("SPECIARL_TEST_JUDGE_KEY", raising=False)
    config = config_factory(
        *judge_overrides("http://127.0.0.1:9/v1", tmp_path),
        "+reward.reward_kwargs.judge.llm.api_key_env=SPECIARL_TEST_JUDGE_KEY",
    )
    with pytest.raises(ValueError, match=r"judge\.llm\.api_key_env names 'SPECIARL_TEST_JUDGE_KEY', which is not set"):
        load_reward_manager(config, tokenizer)


# ---------------------------------------------------------------- mask under DAPO's filter


def dapo_overrides(url, tmp_path, batch_size):
    return [
        "algorithm.filter_groups.enable=true",
        "algorithm.filter_groups.metric=acc",
        f"data.train_batch_size={batch_size}",
        "actor_rollout_ref.rollout.n=4",
        *judge_overrides(url, tmp_path, policy="mask"),
    ]


def test_masked_groups_are_counted_before_dapos_filter_evicts_them(
    config_factory, tokenizer, fake_judge, tmp_path, transfer_queue
):
    server = fake_judge(fault="status:503")
    config = config_factory(*dapo_overrides(server.url, tmp_path, batch_size=2))
    manager = load_reward_manager(config, tokenizer)
    masked = score_group(manager, tokenizer, "c1c1", ["737-800", "A320", "Boeing 737", "airplane"])
    score_group(manager, tokenizer, "d1d1", ["737-800", "Boeing 737", "airplane", "None"])

    def refill(count):
        for i in range(count):  # groups the rule tier decides alone
            score_group(manager, tokenizer, f"e{i}e1", ["737-800", "airplane", "None", "Boeing 737"])
        return count

    batch, metrics = build_replay_buffer(config, refill_fn=refill).sample(
        global_steps=1, partition_id="train", batch_size=2
    )
    assert masked[0].uid not in {key.rsplit("_", 2)[0] for key in batch.keys}  # all 0: the filter evicted it
    assert metrics["training/filter_groups/evicted_samples"] == 1
    assert (metrics["speciarl/masked_groups_total"], metrics["speciarl/judge/failures_total"]) == (1, 1)
    assert metrics["speciarl/judge/retries_total"] == 1  # counted though its group was evicted


def test_a_judge_outage_under_mask_and_dapo_stops_instead_of_refilling_forever(
    config_factory, tokenizer, fake_judge, tmp_path, transfer_queue
):
    server = fake_judge(fault="status:503")
    config = config_factory(*dapo_overrides(server.url, tmp_path, batch_size=2))
    manager = load_reward_manager(config, tokenizer)
    score_group(manager, tokenizer, "f2f2", ["A320", "A330", "737-800", "airplane"])
    refilled = []

    def refill(count):
        if len(refilled) > 20:  # without a bound verl's sync DAPO would refill without end
            raise AssertionError(f"refilled {len(refilled)} groups during a judge outage")
        for _ in range(count):
            refilled.append(score_group(manager, tokenizer, f"g{len(refilled)}g2", ["A340", "737-800", "None", "A380"]))
        return count

    stop = r"[23] group\(s\) of partition 'train' were masked while one batch of 2"
    with pytest.raises(JudgeFailedError, match=stop):
        build_replay_buffer(config, refill_fn=refill).sample(global_steps=1, partition_id="train", batch_size=2)
    assert len(refilled) <= 2


# ---------------------------------------------------------------- validation under mask


def test_validation_under_mask_keeps_each_answers_score_and_one_denominator(
    config_factory, tokenizer, fake_judge, tmp_path, transfer_queue
):
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    server = fake_judge(fault="status:503")
    config = config_factory(*judge_overrides(server.url, tmp_path, policy="mask"))
    manager = load_reward_manager(config, tokenizer)
    rollouts = score_group(manager, tokenizer, "v1v1", ["737-800", "A320", "airplane"], partition="val")
    build_replay_buffer(config).sample(global_steps=1, partition_id="val", batch_size=1)
    data = transfer_queue.kv_batch_get(
        keys=[r.key for r in rollouts], partition_id="val", select_fields=["rm_scores", "extra_fields"]
    )
    scores = [float(s[-1]) for s in data["rm_scores"].unbind(0)]
    infos = [e["reward_extra_info"] for e in data["extra_fields"]]
    assert scores == [1.0, 0.0, 0.0]  # the failed answer costs only itself
    # verl's own validation metrics: acc (which counts a session without acc as 0) and correct agree
    infos_dict = {"reward": scores, **{key: [i[key] for i in infos] for key in infos[0]}}
    metrics = process_validation_metrics(
        ["fgvc_aircraft"] * 3, ["v1v1"] * 3, infos_dict, expected_acc_counts={("fgvc_aircraft", "v1v1"): 3}
    )["fgvc_aircraft"]
    # acc is reward3 (specific or finer), correct any right answer; both over the same three answers
    assert (metrics["acc"]["mean@3"], metrics["correct"]["mean@3"]) == pytest.approx((1 / 3, 2 / 3))
    rates = sum(metrics[f"cat_{c}"]["mean@3"] for c in ("specific", "generic", "wrong", "abstain", "less_specific"))
    rates += (
        metrics["cat_more_specific"]["mean@3"] + metrics["parse_failed"]["mean@3"] + metrics["judge_failed"]["mean@3"]
    )
    assert rates == pytest.approx(1.0)


# ---------------------------------------------------------------- judge latency over a parameter-sync cycle


def test_latency_quantiles_cover_the_whole_parameter_sync_cycle(
    config_factory, tokenizer, fake_judge, tmp_path, transfer_queue
):
    from verl.trainer.ppo.v1.utils import MetricsAggregator

    fast, slow = fake_judge(), fake_judge(latency_s=0.3)
    overrides = ["data.train_batch_size=2", "+trainer.v1.sync.parameter_sync_step=2"]
    config = config_factory(*overrides, *judge_overrides(fast.url, tmp_path))
    slow_config = config_factory(*overrides, *judge_overrides(slow.url, tmp_path / "slow"))
    score_group(load_reward_manager(config, tokenizer), tokenizer, "a3a3", ["A320", "A330", "A340", "737-800"])
    buffer = build_replay_buffer(config)
    aggregator = MetricsAggregator()
    first_batch = buffer.sample(global_steps=1, partition_id="train", batch_size=1)
    score_group(load_reward_manager(slow_config, tokenizer), tokenizer, "b3b3", ["A380", "737-800", "airplane", "None"])
    second_batch = buffer.sample(global_steps=1, partition_id="train", batch_size=1)
    for batch, metrics in (first_batch, second_batch):
        aggregator.add_step_metrics(metrics, sample_count=len(batch.keys))  # as verl's trainer does
    step = aggregator.get_aggregated_metrics()
    assert "speciarl/judge/latency_p95_s" not in first_batch[1]  # reported once, at the end of the cycle
    # four LLM round trips in the step: three fast, one of at least 0.3 s; nearest-rank p95 is the slow one
    assert step["speciarl/judge/calls_total"] == 4
    assert step["speciarl/judge/latency_p95_s"] >= 0.3 > step["speciarl/judge/latency_p50_s"]


def test_the_async_buffer_is_refused_for_the_sync_trainer(config_factory, transfer_queue):
    config = config_factory("trainer.v1.sampler.custom_sampler.name=GroupRewardReplayBufferAsync")
    with pytest.raises(ValueError, match="GroupRewardReplayBufferAsync serves the async trainer modes"):
        build_replay_buffer(config, trainer_mode="sync")
