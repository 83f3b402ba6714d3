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

Training groups get :meth:`RewardSettings.training_rewards` of their (possibly
noised) categories plus each rollout's length penalty; validation items get
:meth:`RewardSettings.validation_score` of the judge's verdict, so verl's
validation metrics are per-category rates, not a group reward of one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import transfer_queue as tq
from omegaconf import DictConfig, OmegaConf
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
from verl.utils import tensordict_utils as tu

from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.step_metrics import METRIC_PREFIX, step_metrics
from speciarl_verl.reward_settings import RewardSettings
from speciarl_verl.rollout_record import read_record_fields, record_info

__all__ = [
    "GroupRewardStage",
    "GroupRewardReplayBuffer",
    "GroupRewardReplayBufferAsync",
    "JudgeFailedError",
    "ScoredGroup",
    "score_group_records",
    "split_trajectory_key",
]

VALIDATION_PARTITION = "val"
_FORWARDED_KWARGS = (
    "filter_groups_metric",
    "train_batch_size",
    "gen_batch_size",
    "max_inflight_gen_batches",
    "sync_refill_failed_groups",
)


class JudgeFailedError(RuntimeError):
    """The judge could not score some rollouts and ``judge.failure_policy`` is ``raise``."""


def split_trajectory_key(key: str) -> tuple[str, int, int]:
    """``"{uid}_{session}_{index}"`` -> ``(uid, session, index)``; the uid itself may contain ``_``."""
    uid, session, index = key.rsplit("_", 2)
    return uid, int(session), int(index)


def _root_config(*nodes: Any) -> DictConfig | None:
    """The full trainer config the given sub-nodes hang from, if they are OmegaConf nodes."""
    for node in nodes:
        if isinstance(node, DictConfig):
            root = node._get_root()
            if isinstance(root, DictConfig) and "trainer" in root and "reward" in root:
                return root
    return None


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def resolve_buffer_options(
    root: DictConfig | None, sampler_kwargs: Mapping[str, Any], synchronous: bool
) -> tuple[dict[str, Any], RewardSettings]:
    """The kwargs verl's ``_build_replay_buffer`` gives its own buffer, and our reward settings.

    verl does not pass its DAPO options to a custom sampler, so they are
    derived here from the same config nodes verl reads (``algorithm.filter_groups``,
    ``data.train_batch_size``, ``data.gen_batch_size``,
    ``trainer.v1.sampler.sync_refill_failed_groups``). Keys of the same name in
    ``trainer.v1.sampler.sampler_kwargs`` take precedence, as does
    ``sampler_kwargs.reward_kwargs`` over ``reward.reward_kwargs``.
    """
    options: dict[str, Any] = {}
    settings = RewardSettings()
    if root is not None:
        settings = RewardSettings.from_verl_config(root)
        reward_model = root.reward.get("reward_model") or {}
        if reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
            raise ValueError(
                "SpeciaRL's group stage needs rewards at sampling time, but reward.reward_model.enable=True "
                "without reward.reward_model.enable_resource_pool scores after sampling"
            )
        filter_groups = root.algorithm.get("filter_groups") or {}
        metric = str(filter_groups.get("metric")) if filter_groups.get("enable", False) else None
        if filter_groups.get("enable", False) and not filter_groups.get("metric"):
            raise ValueError("algorithm.filter_groups.metric must be set when group filtering is enabled")
        refill_failed = bool(root.trainer.v1.sampler.get("sync_refill_failed_groups", False))
        options.update(filter_groups_metric=metric, sync_refill_failed_groups=refill_failed)
        if synchronous:
            train_batch_size = int(root.data.train_batch_size)
            exact_refill = metric is not None or refill_failed
            options.update(
                train_batch_size=train_batch_size,
                gen_batch_size=1 if exact_refill else (root.data.get("gen_batch_size") or train_batch_size),
                max_inflight_gen_batches=int(filter_groups.get("max_inflight_gen_batches", 1)) if metric else 1,
            )
    explicit = dict(_plain(sampler_kwargs) or {})
    for key in _FORWARDED_KWARGS:
        if key in explicit:
            options[key] = explicit[key]
    if "reward_kwargs" in explicit:
        settings = RewardSettings.from_mapping(explicit["reward_kwargs"])
    return options, settings


class ScoredGroup(NamedTuple):
    """What the stage writes back for one group, in session order."""

    outcome: GroupOutcome
    #: reward plus length penalty per rollout: the value of its last ``rm_scores`` token
    scores: list[float]
    #: each rollout's record with the group fields filled in (its new ``reward_extra_info`` keys)
    records: list[dict[str, Any]]


def score_group_records(
    records: Sequence[Mapping[str, Any] | None],
    settings: RewardSettings,
    uid: str,
    validation: bool = False,
    short: bool = False,
    where: Sequence[str] | None = None,
) -> ScoredGroup:
    """Score one group from its rollouts' records (``reward_extra_info``, session order).

    Training groups get ``settings.training_rewards`` of their (possibly noised) categories
    plus each rollout's length penalty; validation items ``settings.validation_score`` of the
    judge's verdict. A group with a judge failure gets one reward for all (zero advantage).
    ``where[i]`` names rollout ``i`` in errors (a missing record raises
    :class:`~speciarl_verl.rollout_record.MissingRecordError`).
    """
    if where is None:
        name = f"a rollout of group {uid}"
        rows = [read_record_fields(info or {}, name) for info in records]
    else:
        rows = [read_record_fields(info or {}, name) for info, name in zip(records, where, strict=True)]
    n = len(rows)
    judge_failed = tuple(row[0] == "judge_error" for row in rows)
    masked = True in judge_failed  # under failure_policy=raise the stage stops before anything is written
    if validation:
        categories = [row[2] for row in rows]  # the judge's own verdict, never the noised one
        rewards = [settings.validation_score(category) for category in categories]
        penalties = [0.0] * n
    else:
        categories = [row[4] for row in rows]
        rewards = settings.training_rewards(categories)
        penalties = [row[6] for row in rows]
    if masked:  # one reward for the whole group: zero advantage, nothing learnt from a failed judge
        rewards, penalties = [0.0] * n, [0.0] * n
    outcome = GroupOutcome(
        uid=uid,
        categories=tuple(categories),
        rewards=tuple(rewards),
        short=short,
        sources=tuple(row[3] for row in rows),
        noised=tuple(row[5] for row in rows),
        judge_failed=judge_failed,
        latencies=tuple(row[8] for row in rows),
        masked=masked,
    )
    best = outcome.best_for_evaluation
    rewritten = [
        record_info(*row[:7], reward, row[8], row[9], best, n, masked)
        for row, reward in zip(rows, rewards, strict=True)
    ]
    scores = [reward + penalty for reward, penalty in zip(rewards, penalties, strict=True)]
    return ScoredGroup(outcome, scores, rewritten)


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
        root = _root_config(sampler_kwargs, trainer_config)
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
        scored = score_group_records(
            records,
            self.reward_settings,
            uid,
            validation=partition_id == VALIDATION_PARTITION,
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
