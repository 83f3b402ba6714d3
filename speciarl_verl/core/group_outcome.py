"""What the group stage decided for one group: a plain record, built and read by pure code."""

from __future__ import annotations

from dataclasses import dataclass, field

from speciarl_verl.core.categories import Category, RankOrder, best_category

__all__ = ["GroupOutcome"]


@dataclass(frozen=True)
class GroupOutcome:
    """The verdicts and rewards of the rollouts of one prompt, in session order.

    ``categories[i]`` is the judge's verdict on rollout ``i`` (before any synthetic verdict
    noise: ``noised[i]`` says whether the reward used another category), ``None`` when it has
    none: it could not be parsed, or (``judge_failed[i]``) the judge failed on it.
    ``rewards[i]`` is the reward it was given and ``scores[i]`` what verl trains on (the reward
    plus the length penalty; the rewards when not given). ``short`` marks a group that finished
    with fewer rollouts than were asked for (some sessions failed); ``masked`` one whose rewards
    were all zeroed (a judge failure, or too few rollouts to compare). ``sources[i]`` says who
    gave the verdict (``offline``, ``deferred``, ``cache``, ``llm``, ``dedup``);
    ``latencies[i]`` is the LLM round trip and ``attempts[i]`` how many attempts the LLM call
    behind the verdict took (1 = no retry), or the call that failed on it (``None``: no such call,
    or not known).
    """

    uid: str
    categories: tuple[Category | None, ...]
    rewards: tuple[float, ...]
    short: bool = False
    sources: tuple[str | None, ...] = field(default=())
    noised: tuple[bool, ...] = field(default=())
    judge_failed: tuple[bool, ...] = field(default=())
    latencies: tuple[float | None, ...] = field(default=())
    masked: bool = False
    scores: tuple[float, ...] = field(default=())
    attempts: tuple[int | None, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.categories)
        if len(self.rewards) != n:
            raise ValueError(f"group {self.uid}: {n} categories but {len(self.rewards)} rewards")
        for name in ("sources", "noised", "judge_failed", "latencies", "scores", "attempts"):
            value = getattr(self, name)
            if value and len(value) != n:
                raise ValueError(f"group {self.uid}: {n} categories but {len(value)} {name}")

    @property
    def size(self) -> int:
        return len(self.categories)

    def best(self, order: RankOrder) -> Category | None:
        """The group's best verdict in ``order`` (see :func:`~speciarl_verl.core.categories.best_category`).

        >>> g = GroupOutcome("u", (Category.SPECIFIC, None, Category.MORE_SPECIFIC), (1.0, -1.0, 1.0))
        >>> g.best("training"), g.best("evaluation")
        (<Category.SPECIFIC: 'specific'>, <Category.MORE_SPECIFIC: 'more specific'>)
        """
        return best_category(self.categories, order)

    @property
    def zero_variance(self) -> bool:
        """All rollouts got the same score (reward plus length penalty), so GRPO draws no signal from this group.

        >>> GroupOutcome("u", (Category.WRONG, Category.WRONG), (0.0, 0.0), scores=(0.0, -0.5)).zero_variance
        False
        """
        return len(set(self.scores or self.rewards)) <= 1
