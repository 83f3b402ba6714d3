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

Failures are counted where groups are scored, before any filter can evict them: a masked
group is all 0, so DAPO's filter drops it before ``sample`` sees it, and a judge outage under
``failure_policy=mask`` would otherwise refill without end and show nothing.
``speciarl/masked_groups_total``, ``short_groups_total``, ``judge/failures_total`` and
``judge/retries_total`` count every training group scored since the previous ``sample``, evicted
ones included; once the groups masked while one batch is gathered reach that batch's size, the
judge is taken for down and the run stops as under ``raise``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.utils import tensordict_utils as tu

from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.group_scoring import score_group
from speciarl_verl.core.step_metrics import METRIC_PREFIX, judge_retries, latency_metrics, step_metrics
from speciarl_verl.reward_settings import RewardSettings
from speciarl_verl.verl_ext.sampler_options import resolve_buffer_options, root_config

__all__ = [
    "GroupRewardReplayBuffer",
    "GroupRewardReplayBufferAsync",
    "GroupRewardStage",
    "JudgeFailedError",
    "split_trajectory_key",
]

logger = logging.getLogger(__name__)

VALIDATION_PARTITION = "val"
TRAINING_PARTITION = "train"


@dataclass
class _ScoredSinceSample:
    """What the groups scored in one partition since its last ``sample`` held, evicted groups included."""

    groups: int = 0
    masked: int = 0
    short: int = 0
    judge_failures: int = 0  # rollouts
    judge_retries: int = 0  # attempts beyond the first, of LLM verdicts and judge failures
    last_error: str | None = None


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
        self._since_sample: dict[str, _ScoredSinceSample] = defaultdict(_ScoredSinceSample)
        # the groups one training batch holds; sample() sets it from its batch_size
        self._batch_groups: int | None = getattr(self, "train_batch_size", None)
        # verl merges the metrics of the parameter_sync_step samples of one step (quantiles would be
        # averaged), so judge latency quantiles are reported once per cycle, over the whole cycle
        trainer_config = getattr(self, "trainer_config", None) or {}
        self._cycle = max(1, int(trainer_config.get("parameter_sync_step", 1) or 1))
        self._cycle_samples = 0
        self._cycle_latencies: list[float] = []

    # -- verl hooks ---------------------------------------------------------------------------

    def _sync_metadata_from_transfer_queue(self):
        super()._sync_metadata_from_transfer_queue()
        for partition_id in list(self.partitions.keys() | self.finished_keys.keys() | self.failure_keys.keys()):
            self._score_terminal_groups(partition_id)

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[KVBatchMeta, dict]:
        if partition_id != VALIDATION_PARTITION:
            self._batch_groups = batch_size
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        selected = sorted({split_trajectory_key(key)[0] for key in batch.keys})
        outcomes = self._outcomes[partition_id]
        unscored = [uid for uid in selected if uid not in outcomes]
        if unscored:
            raise RuntimeError(f"group stage: sampled groups were never scored: {unscored[:5]}")
        batch_outcomes = [outcomes.pop(uid) for uid in selected]
        scored = self._since_sample.pop(partition_id, _ScoredSinceSample())
        if partition_id != VALIDATION_PARTITION:
            metrics = dict(metrics)
            metrics.update(step_metrics(batch_outcomes, latencies=False))  # the cycle's instead, below
            # counted where the groups were scored: no filter can hide them
            metrics[f"{METRIC_PREFIX}/scored_groups_total"] = float(scored.groups)
            metrics[f"{METRIC_PREFIX}/masked_groups_total"] = float(scored.masked)
            metrics[f"{METRIC_PREFIX}/short_groups_total"] = float(scored.short)
            metrics[f"{METRIC_PREFIX}/judge/failures_total"] = float(scored.judge_failures)
            metrics[f"{METRIC_PREFIX}/judge/retries_total"] = float(scored.judge_retries)
            metrics.update(self._cycle_latency_metrics(batch_outcomes))
        return batch, metrics

    def _cycle_latency_metrics(self, batch_outcomes: list[GroupOutcome]) -> dict[str, float]:
        """Latency quantiles over the whole ``parameter_sync_step`` cycle, on its last sample only."""
        self._cycle_latencies += [
            float(latency)
            for outcome in batch_outcomes
            for source, latency in zip(outcome.sources, outcome.latencies, strict=False)
            if source == "llm" and latency is not None
        ]
        self._cycle_samples += 1
        if self._cycle_samples < self._cycle:
            return {}
        latencies, self._cycle_latencies, self._cycle_samples = self._cycle_latencies, [], 0
        return latency_metrics(latencies)

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

        failed_sessions = self.failure_keys[partition_id]
        scored = {
            uid: self._score_group(uid, partition_id, keys_by_uid.get(uid, []), stored, short=uid in failed_sessions)
            for uid in sorted(new_uids)
        }
        self._count_scored(partition_id, [(outcome, records) for outcome, records, _ in scored.values()])

        rewritten: dict[str, tuple[torch.Tensor, dict]] = {}
        for uid, (outcome, _, per_key) in scored.items():
            outcomes[uid] = outcome
            rewritten.update(per_key)
        if rewritten:
            fields = tu.get_tensordict(
                {
                    "rm_scores": torch.nested.as_nested_tensor([s for s, _ in rewritten.values()], layout=torch.jagged),
                    "extra_fields": [extra for _, extra in rewritten.values()],
                }
            )
            tq.kv_batch_put(keys=list(rewritten), partition_id=partition_id, fields=fields)

    def _count_scored(self, partition_id: str, groups: list[tuple[GroupOutcome, list[dict[str, Any]]]]) -> None:
        """Count the newly scored groups, then apply ``judge.failure_policy``: stop the run on a judge
        failure under ``raise``, and under ``mask`` once a batch's worth of groups has been masked."""
        tally = self._since_sample[partition_id]
        errors = [r["judge_error"] for _, records in groups for r in records if r["judge_error"]]
        tally.groups += len(groups)
        tally.masked += sum(outcome.masked for outcome, _ in groups)
        tally.short += sum(outcome.short for outcome, _ in groups)
        tally.judge_failures += len(errors)
        tally.judge_retries += sum(judge_retries(outcome) for outcome, _ in groups)
        tally.last_error = errors[-1] if errors else tally.last_error
        short = [outcome.uid for outcome, _ in groups if outcome.short]
        if short and partition_id != VALIDATION_PARTITION:
            logger.warning(
                "%d group(s) of partition %r lost sessions in verl's agent loop (its log has the errors) and were "
                "masked, not scored on the rollouts that finished: %s",
                len(short),
                partition_id,
                short[:5],
            )
        if not errors:
            return
        failed = [outcome for outcome, _ in groups if any(outcome.judge_failed)]
        if self.reward_settings.judge.failure_policy != "mask":
            raise JudgeFailedError(
                f"the judge failed on {len(errors)} rollout(s) in {len(failed)} group(s) of partition "
                f"{partition_id!r} (judge.failure_policy=raise). First error: {errors[0]}"
            )
        limit = self._batch_groups
        if partition_id != VALIDATION_PARTITION and limit and tally.masked >= limit:
            raise JudgeFailedError(
                f"{tally.masked} group(s) of partition {partition_id!r} were masked while one batch of {limit} was "
                f"gathered ({tally.judge_failures} judge failure(s)): the judge is taken for down and the run stops "
                f"(judge.failure_policy=mask tolerates fewer masked groups than one batch). Last error: "
                f"{tally.last_error}"
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

    def _check_trainer_mode(self, trainer_mode: str) -> None:
        if trainer_mode == "sync":
            # the async buffer neither refills failed groups nor gathers DAPO batches as the sync trainer expects
            raise ValueError(
                "GroupRewardReplayBufferAsync serves the async trainer modes (colocate_async, separate_async), "
                "not trainer.v1.trainer_mode=sync; use GroupRewardReplayBuffer"
            )
