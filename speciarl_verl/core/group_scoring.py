"""One group's rewards and rewritten records, decided from its rollouts' records alone.

This is where the value of ``rm_scores`` (the reward verl trains on, logs as
``critic/score`` and filters DAPO groups by) is decided: the group stage in
``verl_ext/group_stage.py`` only finds a group's records in TransferQueue, calls
:func:`score_group` and writes its ``scores`` back at each trajectory's last token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from speciarl_verl.core.categories import Category, best_category
from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.rollout_record import read_record_fields, record_info

__all__ = ["GroupScoringRules", "ScoredGroup", "score_group"]


class GroupScoringRules(Protocol):
    """How verdicts become rewards; :class:`speciarl_verl.reward_settings.RewardSettings` is one."""

    def training_rewards(self, categories: Sequence[Category | None]) -> list[float]:
        """Rewards of one group's rollouts, in the order given (``None``: no verdict)."""
        ...

    def validation_score(self, category: Category | None) -> float:
        """Score of one validation answer from the judge's verdict."""
        ...


class ScoredGroup(NamedTuple):
    """What the group stage writes back for one group, in session order."""

    outcome: GroupOutcome
    #: reward plus length penalty per rollout: the value of its last ``rm_scores`` token
    scores: list[float]
    #: each rollout's record with the group fields filled in (its new ``reward_extra_info`` keys)
    records: list[dict[str, Any]]


def score_group(
    records: Sequence[Mapping[str, Any] | None],
    settings: GroupScoringRules,
    *,
    validation: bool,
    uid: str = "?",
    short: bool = False,
    where: Sequence[str] | None = None,
) -> ScoredGroup:
    """Score one group from its rollouts' ``reward_extra_info`` records, in session order.

    * training (``validation=False``): ``settings.training_rewards`` of each rollout's
      (possibly noised) category, plus its recorded length penalty. A group is only compared
      within itself when it is whole: if the judge failed on any rollout, if some of its
      sessions failed (``short``) or if fewer than two rollouts remain, every rollout gets 0
      and the group is ``masked`` (zero advantage), never scored on the part that exists.
      Whether the run may go on at all is ``judge.failure_policy``'s call, made by the caller
      on ``outcome.judge_failed``;
    * validation: each answer on its own, ``settings.validation_score`` of the judge's
      verdict, no penalty, no masking (an answer the judge failed on scores 0, its siblings
      keep theirs). Validation records are rewritten without the training noise: their
      ``category`` is the verdict and ``noised`` 0.

    ``uid`` names the group. A missing record raises
    :class:`~speciarl_verl.core.rollout_record.MissingRecordError` naming ``where[i]``
    (default: "a rollout of group {uid}").

    >>> from speciarl_verl.reward_settings import RewardSettings
    >>> bird = record_info("judged", "bird", Category.GENERIC, "llm", Category.GENERIC, False, -0.25, 0.0)
    >>> unsure = record_info("judged", "unknown", Category.ABSTAIN, "llm", Category.ABSTAIN, False, 0.0, 0.0)
    >>> score_group([bird, unsure], RewardSettings(), validation=False).scores
    [0.75, 0.0]
    >>> score_group([bird, unsure], RewardSettings(), validation=False, short=True).scores
    [0.0, 0.0]
    """
    if where is None:
        name = f"a rollout of group {uid}"
        rows = [read_record_fields(info or {}, name) for info in records]
    else:
        rows = [read_record_fields(info or {}, name) for info, name in zip(records, where, strict=True)]
    n = len(rows)
    judge_failed = tuple(row[0] == "judge_error" for row in rows)
    verdicts = [row[2] for row in rows]
    if validation:
        # the judge's own verdict, never the noised one, in the score and in the record
        rows = [(*row[:4], row[2], False, 0.0, *row[7:]) for row in rows]
        rewards = [settings.validation_score(verdict) for verdict in verdicts]
        penalties = [0.0] * n
        masked = False
    else:
        rewards = settings.training_rewards([row[4] for row in rows])
        penalties = [row[6] for row in rows]
        masked = short or n < 2 or True in judge_failed
    if masked:  # one reward for the whole group: nothing is learnt from a group that is not whole
        rewards, penalties = [0.0] * n, [0.0] * n
    scores = [reward + penalty for reward, penalty in zip(rewards, penalties, strict=True)]
    outcome = GroupOutcome(
        uid=uid,
        categories=tuple(verdicts),
        rewards=tuple(rewards),
        short=short,
        sources=tuple(row[3] for row in rows),
        noised=tuple(row[5] for row in rows),
        judge_failed=judge_failed,
        latencies=tuple(row[8] for row in rows),
        attempts=tuple(row[14] for row in rows),
        masked=masked,
        scores=tuple(scores),
    )
    best = best_category(verdicts, "evaluation")
    rewritten = [
        record_info(*row[:7], reward, row[8], row[9], best, n, masked, row[13], row[14])
        for row, reward in zip(rows, rewards, strict=True)
    ]
    return ScoredGroup(outcome, scores, rewritten)
