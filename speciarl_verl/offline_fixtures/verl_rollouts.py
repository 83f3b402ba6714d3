"""Feeding rollouts through verl 0.9.1's real reward loop and TransferQueue, without a GPU.

On a GPU node verl's ``AgentLoopWorkerTQ`` generates a rollout, scores it by
calling ``compute_score`` on a random ``RewardLoopWorker`` actor, writes it to
TransferQueue under ``{uid}_{session}_{index}`` and finally marks the prompt
``{uid}`` ``finished`` (or ``failure``). These helpers do the same steps, in the
same data layout, for rollouts whose text is already known, so the reward
manager, the reward-loop actors, TransferQueue and the replay buffer under test
are all verl's real ones. Only generation is replaced.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import torch
import transfer_queue as tq
from tensordict import TensorDict
from verl import DataProto
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

__all__ = ["Rollout", "finish_prompt", "put_prompts", "put_rollouts", "score_rollouts", "trajectory_dataproto"]


@dataclass
class Rollout:
    """One generated trajectory and the prompt row it answers."""

    uid: str
    session_id: int
    row: dict[str, Any]
    prompt_ids: list[int]
    response_ids: list[int]
    global_steps: int = 1
    score: float | None = None
    reward_extra_info: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}_{self.session_id}_0"


def trajectory_dataproto(rollout: Rollout) -> DataProto:
    """The one-trajectory DataProto verl's agent loop passes to ``run_single``."""
    prompts = torch.tensor(rollout.prompt_ids, dtype=torch.int64)
    responses = torch.tensor(rollout.response_ids, dtype=torch.int64)
    input_ids = torch.cat([prompts, responses])
    batch = TensorDict(
        {
            "prompts": prompts.unsqueeze(0),
            "responses": responses.unsqueeze(0),
            "attention_mask": torch.ones_like(input_ids).unsqueeze(0),
            "input_ids": input_ids.unsqueeze(0),
            "position_ids": torch.arange(input_ids.numel()).unsqueeze(0),
        },
        batch_size=1,
    )
    kwargs = {
        **rollout.row,
        "uid": rollout.uid,
        "session_id": rollout.session_id,
        "global_steps": rollout.global_steps,
    }
    non_tensor = {key: _object_array([value]) for key, value in kwargs.items()}
    non_tensor.update(
        {
            "__num_turns__": np.array([2]),
            "tool_extra_fields": _object_array([{}]),
            "prompt_len": np.array([prompts.numel()]),
            "response_len": np.array([responses.numel()]),
        }
    )
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def _object_array(values: Sequence[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def score_rollouts(worker_handles: Sequence[Any], rollouts: Sequence[Rollout], seed: int = 0) -> None:
    """Score each rollout on a randomly chosen ``RewardLoopWorker``, as verl's agent loop does."""
    rng = random.Random(seed)
    futures = [rng.choice(list(worker_handles)).compute_score.remote(trajectory_dataproto(r)) for r in rollouts]
    for rollout, result in zip(rollouts, ray.get(futures), strict=True):
        rollout.score = float(result["reward_score"])
        rollout.reward_extra_info = dict(result.get("reward_extra_info", {}))


def put_prompts(uids: Sequence[str], partition_id: str = "train", global_steps: int = 1) -> None:
    """Register prompts as ``pending`` groups, as the trainer does before generation.

    verl's replay buffer recovers a uid as ``key.split("_")[0]``, so a uid must not contain ``_``.
    """
    bad = [uid for uid in uids if "_" in uid]
    if bad:
        raise ValueError(f"verl uids must not contain '_': {bad[:3]}")
    tags = [{"is_prompt": True, "status": "pending", "global_steps": global_steps} for _ in uids]
    tq.kv_batch_put(keys=list(uids), partition_id=partition_id, tags=tags)


def put_rollouts(rollouts: Sequence[Rollout], partition_id: str = "train") -> None:
    """Write scored rollouts to TransferQueue in ``AgentLoopWorkerTQ``'s layout (one put per session)."""
    for rollout in rollouts:
        if rollout.score is None:
            raise ValueError(f"rollout {rollout.key} has not been scored")
        responses = torch.tensor(rollout.response_ids, dtype=torch.int64)
        rm_scores = torch.zeros(responses.numel(), dtype=torch.float32)
        rm_scores[-1] = rollout.score
        field = {
            "prompts": torch.tensor(rollout.prompt_ids, dtype=torch.int64),
            "responses": responses,
            "response_mask": torch.ones_like(responses),
            "rm_scores": rm_scores,
            "extra_fields": {"reward_extra_info": rollout.reward_extra_info or {}},
            **rollout.row,
            "uid": rollout.uid,
            "session_id": rollout.session_id,
            "global_steps": rollout.global_steps,
        }
        tags = [
            {
                "status": "success",
                "prompt_len": len(rollout.prompt_ids),
                "response_len": len(rollout.response_ids),
                "seq_len": len(rollout.prompt_ids) + len(rollout.response_ids),
                "global_steps": rollout.global_steps,
                "min_global_steps": rollout.global_steps,
                "max_global_steps": rollout.global_steps,
            }
        ]
        tq.kv_batch_put(
            keys=[rollout.key], partition_id=partition_id, fields=list_of_dict_to_tensordict([field]), tags=tags
        )


def finish_prompt(uid: str, partition_id: str = "train", failed: bool = False) -> None:
    """Publish the group's terminal status, as ``AgentLoopWorkerTQ._run_prompt`` does."""
    tq.kv_put(key=uid, partition_id=partition_id, tag={"status": "failure" if failed else "finished"})
