"""SpeciaRL's dynamic reward for one group of rollouts (the n answers to one image).

Within a group, the rollouts that reach the group's best training level get 1
and the others 0: the model is pushed to be as specific as it can be on that
image, and no further. The paper writes this with a reference level
``c* = specific if c_best = more specific, abstain if c_best = wrong, else
c_best`` and ``r = 1 if c >= c*``; with the training order (where specific and
more specific tie) that is exactly "reward the entries at the best level",
except that an all-wrong group earns nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from speciarl_verl.core.categories import TRAINING_LEVEL, Category, best_category

__all__ = ["GROUP_MODES", "GroupMode", "group_rewards"]

GroupMode = Literal["all", "single"]
GROUP_MODES: tuple[GroupMode, ...] = get_args(GroupMode)


def group_rewards(
    categories: Sequence[Category | str | None],
    mode: GroupMode = "all",
    format_penalty: float = -1.0,
) -> list[float]:
    """Rewards for ONE group, in the order given.

    ``categories`` holds one verdict per rollout (a :class:`Category` or its
    wire label); ``None`` marks an answer that could not be parsed.

    * ``None`` entries get ``format_penalty`` and take no part in the ranking;
    * if the best parsed entry is *wrong*, every parsed entry gets 0;
    * ``mode="all"`` (the paper): every parsed entry at the best level gets 1,
      the rest 0 (*specific* and *more specific* tie);
    * ``mode="single"`` (legacy ablation): only the first entry at the best
      level gets 1.

    >>> group_rewards(["specific", "more specific", "generic", "wrong", None])
    [1.0, 1.0, 0.0, 0.0, -1.0]
    >>> group_rewards(["wrong", "wrong", "abstain", "wrong"])
    [0.0, 0.0, 1.0, 0.0]
    >>> group_rewards(["generic", "generic", "less specific"], mode="single")
    [0.0, 0.0, 1.0]
    """
    if mode not in GROUP_MODES:
        raise ValueError(f"unknown group reward mode {mode!r} (expected one of {GROUP_MODES})")
    penalty = float(format_penalty)
    best = best_category(categories, "training")  # also refuses any entry that is not a category
    if best is None or best is Category.WRONG:  # nothing to reward
        return [penalty if entry is None else 0.0 for entry in categories]
    best_level = TRAINING_LEVEL[best]
    rewards: list[float] = []
    awarded = False
    for entry in categories:
        if entry is None:
            rewards.append(penalty)
            continue
        # a member hashes like its wire label, so the table answers both; other spellings go through coerce
        level = TRAINING_LEVEL.get(entry)
        if level is None:
            level = TRAINING_LEVEL[Category.coerce(entry)]
        if level != best_level or (mode == "single" and awarded):
            rewards.append(0.0)
        else:
            rewards.append(1.0)
            awarded = True
    return rewards
