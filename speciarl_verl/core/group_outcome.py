"""What the group stage decided for one group: a plain record, built and read by pure code."""

from __future__ import annotations

from dataclasses import dataclass, field

from speciarl_verl.core.categories import Category, RankOrder, best_category

__all__ = ["GroupOutcome"]


@dataclass(frozen=True)
class GroupOutcome:
    """The verdicts and rewards of the rollouts of one prompt, in session order.

    ``categories[i]`` is ``None`` when rollout ``i`` has no verdict: it could
    not be parsed, or (``judge_failed[i]``) the judge failed on it. ``short``
    marks a group that finished with fewer rollouts than were asked for (some
    sessions failed); ``masked`` one whose rewards were zeroed because the judge
    failed. ``sources[i]`` says who gave the verdict (``offline``, ``deferred``,
    ``cache``, ``llm``, ``dedup``); ``latencies[i]`` is the LLM round trip.
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

    def __post_init__(self) -> None:
        n = len(self.categories)
        if len(self.rewards) != n:
            raise ValueError(f"group {self.uid}: {n} categories but {len(self.rewards)} rewards")
        for name in ("sources", "noised", "judge_failed", "latencies"):
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
        """All rollouts got the same reward, so GRPO draws no signal from this group."""
        return len(set(self.rewards)) <= 1
