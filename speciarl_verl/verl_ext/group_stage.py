"""The group half of the SpeciaRL reward, as a verl v1 replay buffer.

verl 0.9.1 writes each rollout into TransferQueue (key ``{uid}_{session}_{index}``,
reward at the last token of ``rm_scores``, the reward manager's record in
``extra_fields.reward_extra_info``) and marks the prompt ``{uid}`` ``finished``
(or ``failure`` when a session raised) once every rollout of the group has
settled. The replay buffer's metadata sync is the first place that sees whole
groups, and everything downstream (DAPO's group filter, advantage estimation,
``critic/score`` metrics, validation metrics, dumps) reads ``rm_scores`` after it.

So this stage hooks ``_sync_metadata_from_transfer_queue``: every newly terminal
group is scored once from the records (never from the current ``rm_scores``,
so re-scoring after a checkpoint restore is idempotent) and its ``rm_scores``
and records are rewritten in TransferQueue. ``sample`` then adds the step's
``speciarl/*`` metrics for the groups it hands to the trainer.

What a group scores is decided by the pure :func:`speciarl_verl.core.group_scoring.score_group`;
this module finds each group's trajectories, applies ``judge.failure_policy`` and does the
TransferQueue I/O. The DAPO options verl gives only its own buffer come from
:mod:`speciarl_verl.verl_ext.sampler_options`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.utils import tensordict_utils as tu

from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.group_scoring import score_group
from speciarl_verl.core.step_metrics import METRIC_PREFIX, step_metrics
from speciarl_verl.reward_settings import RewardSettings
from speciarl_verl.verl_ext.sampler_options import resolve_buffer_options, root_config

__all__ = [
    "GroupRewardReplayBuffer",
    "GroupRewardReplayBufferAsync",
    "GroupRewardStage",
    "JudgeFailedError",
    "split_trajectory_key",
]

VALIDATION_PARTITION = "val"


class JudgeFailedError(RuntimeError):
    """The judge could not score some rollouts and ``judge.failure_policy`` is ``raise``."""


def split_trajectory_key(key: str) -> tuple[str, int, int]:
    """``"{uid}_{session}_{index}"`` -> ``(uid, session, index)``; the uid itself may contain ``_``."""
    uid, session, index = key.rsplit("_", 2)
    return uid, int(session), int(index)


class GroupRewardStage:
    """Mixin over verl's replay buffers: rewrites each terminal group's rewards once.

    Takes the constructor arguments verl passes any custom sampler, completes them
    with the DAPO options verl only gives its own buffer, and reads the reward settings.
    """

    reward_settings: RewardSettings
    _synchronous = True

    def __init__(
        self,
        trainer_mode: str,
        trainer_config: Any,
        max_off_policy_threshold: int | None,
        max_off_policy_strategy: str,
        sampler_kwargs: Any,
        poll_interval: float = 2.0,
        refill_fn=None,
        **kwargs: Any,
    ) -> None:
        self._check_trainer_mode(trainer_mode)
        root = root_config(sampler_kwargs, trainer_config)
        options, settings = resolve_buffer_options(root, sampler_kwargs or {}, self._synchronous)
        options.update(kwargs)
        super().__init__(
            trainer_mode=trainer_mode,
            trainer_config=trainer_config,
            max_off_policy_threshold=max_off_policy_threshold,
            max_off_policy_strategy=max_off_policy_strategy,
            sampler_kwargs=sampler_kwargs,
            poll_interval=poll_interval,
            refill_fn=refill_fn,
            **options,
        )
        self._init_group_stage(settings)

    def _check_trainer_mode(self, trainer_mode: str) -> None:
        pass

    def _init_group_stage(self, settings: RewardSettings) -> None:
        self.reward_settings = settings
        # partition -> uid -> outcome of every terminal group already rewritten
        self._outcomes: dict[str, dict[str, GroupOutcome]] = defaultdict(dict)
        # groups scored since the last training sample (evicted ones included)
        self._scored_since_sample: dict[str, int] = defaultdict(int)

    # -- verl hooks ---------------------------------------------------------------------------

    def _sync_metadata_from_transfer_queue(self):
        super()._sync_metadata_from_transfer_queue()
        for partition_id in list(self.partitions.keys() | self.finished_keys.keys() | self.failure_keys.keys()):
            self._score_terminal_groups(partition_id)

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[KVBatchMeta, dict]:
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        selected = sorted({split_trajectory_key(key)[0] for key in batch.keys})
        outcomes = self._outcomes[partition_id]
        unscored = [uid for uid in selected if uid not in outcomes]
        if unscored:
            raise RuntimeError(f"group stage: sampled groups were never scored: {unscored[:5]}")
        batch_outcomes = [outcomes.pop(uid) for uid in selected]
        if partition_id != VALIDATION_PARTITION:
            metrics = dict(metrics)
            metrics.update(step_metrics(batch_outcomes))
            metrics[f"{METRIC_PREFIX}/scored_groups_total"] = float(self._scored_since_sample[partition_id])
            self._scored_since_sample[partition_id] = 0
        return batch, metrics

    # -- scoring ------------------------------------------------------------------------------

    def _score_terminal_groups(self, partition_id: str) -> None:
        terminal = self.finished_keys[partition_id] | self.failure_keys[partition_id]
        outcomes = self._outcomes[partition_id]
        for uid in outcomes.keys() - terminal:  # consumed by the trainer or evicted
            del outcomes[uid]
        new_uids = terminal - outcomes.keys()
        if not new_uids:
            return

        keys_by_uid: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for key in self.partitions[partition_id]:
            uid, session, index = split_trajectory_key(key)
            if uid in new_uids:
                keys_by_uid[uid].append((session, index, key))
        keys = [key for uid in sorted(keys_by_uid) for _, _, key in sorted(keys_by_uid[uid])]

        stored: dict[str, tuple[torch.Tensor, dict]] = {}
        if keys:
            data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["rm_scores", "extra_fields"])
            for key, scores, extra in zip(keys, data["rm_scores"].unbind(0), data["extra_fields"], strict=True):
                stored[key] = (scores, getattr(extra, "data", extra))

        scored = {
            uid: self._score_group(
                uid, partition_id, keys_by_uid.get(uid, []), stored, short=uid in self.failure_keys[partition_id]
            )
            for uid in sorted(new_uids)
        }
        self._apply_failure_policy(partition_id, [(outcome, records) for outcome, records, _ in scored.values()])

        rewritten: dict[str, tuple[torch.Tensor, dict]] = {}
        for uid, (outcome, _, per_key) in scored.items():
            outcomes[uid] = outcome
            self._scored_since_sample[partition_id] += 1
            rewritten.update(per_key)
        if rewritten:
            fields = tu.get_tensordict(
                {
                    "rm_scores": torch.nested.as_nested_tensor([s for s, _ in rewritten.values()], layout=torch.jagged),
                    "extra_fields": [extra for _, extra in rewritten.values()],
                }
            )
            tq.kv_batch_put(keys=list(rewritten), partition_id=partition_id, fields=fields)

    def _apply_failure_policy(self, partition_id: str, groups: list[tuple[GroupOutcome, list[dict[str, Any]]]]) -> None:
        """Stop the run on judge failures unless ``judge.failure_policy=mask``."""
        failed = [(outcome, records) for outcome, records in groups if any(outcome.judge_failed)]
        if not failed or self.reward_settings.judge.failure_policy == "mask":
            return
        first_error = next(r["judge_error"] for r in failed[0][1] if r["judge_error"])
        raise JudgeFailedError(
            f"the judge failed on {sum(sum(o.judge_failed) for o, _ in failed)} rollout(s) in {len(failed)} "
            f"group(s) of partition {partition_id!r} (judge.failure_policy=raise). First error: {first_error}"
        )

    def _score_group(
        self,
        uid: str,
        partition_id: str,
        members: list[tuple[int, int, str]],
        stored: Mapping[str, tuple[torch.Tensor, dict]],
        short: bool,
    ) -> tuple[GroupOutcome, list[dict[str, Any]], dict[str, tuple[torch.Tensor, dict]]]:
        """The group's outcome, its rewritten records (session order) and trajectories (key order)."""
        sessions: dict[int, list[str]] = defaultdict(list)
        for session, _, key in sorted(members):
            sessions[session].append(key)
        session_ids = sorted(sessions)
        final_keys = [sessions[session][-1] for session in session_ids]  # a session's final output holds its reward
        records = []
        for key in final_keys:
            extra = stored[key][1]
            records.append(extra.get("reward_extra_info") if isinstance(extra, Mapping) else None)
        scored = score_group(
            records,
            self.reward_settings,
            validation=partition_id == VALIDATION_PARTITION,
            uid=uid,
            short=short,
            where=[f"trajectory {key}" for key in final_keys],
        )

        per_key: dict[str, tuple[torch.Tensor, dict]] = {}
        for session, score, updated in zip(session_ids, scored.scores, scored.records, strict=True):
            for key in sessions[session]:
                scores, extra = stored[key]
                if scores.numel() == 0:
                    raise RuntimeError(f"trajectory {key} has an empty response: no token can carry its reward")
                scores = scores.clone()
                scores[-1] = score
                reward_info = dict(extra.get("reward_extra_info") or {})
                reward_info.update(updated)
                per_key[key] = (scores, {**extra, "reward_extra_info": reward_info})
        return scored.outcome, scored.records, per_key


class GroupRewardReplayBuffer(GroupRewardStage, ReplayBuffer):
    """verl's sync replay buffer with SpeciaRL's group stage.

    ``trainer.v1.sampler.custom_sampler.path=pkg://speciarl_verl.verl_ext.group_stage``,
    ``trainer.v1.sampler.custom_sampler.name=GroupRewardReplayBuffer``.
    """

    def _check_trainer_mode(self, trainer_mode: str) -> None:
        if trainer_mode != "sync":
            raise ValueError(
                f"GroupRewardReplayBuffer serves trainer.v1.trainer_mode=sync, not {trainer_mode!r}; "
                "use GroupRewardReplayBufferAsync"
            )


class GroupRewardReplayBufferAsync(GroupRewardStage, ReplayBufferAsync):
    """verl's async replay buffer (``colocate_async`` / ``separate_async``) with the group stage."""

    _synchronous = False
