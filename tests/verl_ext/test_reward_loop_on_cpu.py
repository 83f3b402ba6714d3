"""verl's RewardLoopManager with real RewardLoopWorker Ray actors running our reward manager."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import ray
import torch
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop import RewardLoopManager

from speciarl_verl.offline_fixtures.recorded_rollouts import load_recorded_groups
from speciarl_verl.offline_fixtures.verl_rollouts import Rollout, score_rollouts

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def reward_loop(local_cluster, tokenizer_dir):
    from speciarl_verl.config.compose import compose_config

    config = compose_config(
        overrides=[
            f"actor_rollout_ref.model.path={tokenizer_dir}",
            "reward.num_workers=2",
            "reward.reward_kwargs.judge.kind=offline",
        ]
    )
    manager = RewardLoopManager(config)
    yield manager
    for worker in manager.reward_loop_workers:
        ray.kill(worker)


@pytest.fixture(scope="module")
def demo_rollouts(tokenizer):
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rollouts = []
    for index, group in enumerate(load_recorded_groups()):
        uid = str(uuid.uuid4())
        prompt = tokenizer.encode(tokenizer.apply_chat_template(group.row(index)["prompt"], tokenize=False))
        for session, text in enumerate(group.responses):
            rollouts.append(Rollout(uid, session, group.row(index), prompt, [*tokenizer.encode(text), eos]))
    return rollouts


def padded_batch(rollouts, pad_id):
    """Rollouts as one verl batch: prompts left-padded, responses right-padded."""
    width_p = max(len(r.prompt_ids) for r in rollouts)
    width_r = max(len(r.response_ids) for r in rollouts)
    prompts = torch.full((len(rollouts), width_p), pad_id)
    responses = torch.full((len(rollouts), width_r), pad_id)
    mask = torch.zeros((len(rollouts), width_p + width_r), dtype=torch.int64)
    for i, r in enumerate(rollouts):
        prompts[i, width_p - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
        responses[i, : len(r.response_ids)] = torch.tensor(r.response_ids)
        mask[i, width_p - len(r.prompt_ids) : width_p + len(r.response_ids)] = 1
    non_tensor = {}
    for key in rollouts[0].row:
        column = np.empty(len(rollouts), dtype=object)
        column[:] = [r.row[key] for r in rollouts]
        non_tensor[key] = column
    non_tensor["uid"] = np.array([r.uid for r in rollouts], dtype=object)
    batch = TensorDict({"prompts": prompts, "responses": responses, "attention_mask": mask}, batch_size=len(rollouts))
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def test_workers_resolve_our_manager_through_the_entry_point(reward_loop, demo_rollouts):
    # The actors never import speciarl_verl themselves: "speciarl" resolves there only because
    # verl loads our verl.plugins entry point at `import verl` in every process.
    score_rollouts(reward_loop.reward_loop_worker_handles, demo_rollouts[:8])
    assert all(r.reward_extra_info["verdict_source"] in ("offline", "deferred", None) for r in demo_rollouts[:8])


def test_streaming_path_scores_every_recorded_rollout(reward_loop, demo_rollouts):
    score_rollouts(reward_loop.reward_loop_worker_handles, demo_rollouts, seed=3)
    verdicts = [r.reward_extra_info["verdict"] for r in demo_rollouts[:8]]
    # "airliner" is no domain noun of FGVC (a Cessna is none), so the offline judge leaves it: wrong here.
    # The last two: no answer block at all, and two blocks (parse_mode=first, the default, reads the first one)
    assert verdicts == ["specific", "specific", "less specific", "wrong", "wrong", "abstain", None, "wrong"]
    for r in demo_rollouts:
        info = r.reward_extra_info
        assert r.score == (-1.0 if info["verdict"] is None else float(info["verdict"] != "wrong"))


def test_batch_path_puts_each_score_on_the_last_response_token(reward_loop, demo_rollouts, tokenizer):
    batch = padded_batch(demo_rollouts[:16], tokenizer.pad_token_id)
    out = reward_loop.compute_rm_score(batch)
    rm_scores = out.batch["rm_scores"]
    lengths = [len(r.response_ids) for r in demo_rollouts[:16]]
    for i, length in enumerate(lengths):
        assert rm_scores[i, length - 1] == demo_rollouts[i].score
        assert float(rm_scores[i].abs().sum()) == abs(demo_rollouts[i].score)
    assert list(out.non_tensor_batch["verdict"]) == [r.reward_extra_info["verdict"] for r in demo_rollouts[:16]]
