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


def score_group(manager, tokenizer, uid, answers):
    prompt = tokenizer.encode("<|im_start|>user\nClassify.<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rollouts = []
    for session, answer in enumerate(answers):
        ids = [*tokenizer.encode(f"<think>wings</think><answer>{answer}</answer>"), eos]
        rollout = Rollout(uid, session, ROW, prompt, ids)
        result = manager.loop.run_until_complete(manager.run_single(trajectory_dataproto(rollout)))
        rollout.score, rollout.reward_extra_info = result["reward_score"], result["reward_extra_info"]
        rollouts.append(rollout)
    put_prompts([uid])
    put_rollouts(rollouts)
    finish_prompt(uid)
    return rollouts


def test_failed_judge_stops_training_by_default(config_factory, tokenizer, fake_judge, tmp_path, transfer_queue):
    server = fake_judge(fault="status:503")
    config = config_factory("data.train_batch_size=1", *judge_overrides(server.url, tmp_path))
    manager = load_reward_manager(config, tokenizer)
    rollouts = score_group(manager, tokenizer, "a1b2", ["737-800", "A320", "A330", "Boeing 737"])
    infos = [r.reward_extra_info for r in rollouts]
    assert [i["status"] for i in infos] == ["judged", "judge_error", "judge_error", "judged"]
    assert server.url in infos[1]["judge_error"] and "HTTP 503" in infos[1]["judge_error"]
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
