"""Per-step training metrics computed from the scored groups of a batch.

Names follow verl's conventions: a name containing ``total`` is summed when
verl aggregates several sub-steps, everything else is averaged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from speciarl_verl.core.categories import TRAINING_LEVEL, Category
from speciarl_verl.core.group_outcome import GroupOutcome

__all__ = ["METRIC_PREFIX", "judge_retries", "latency_metrics", "step_metrics"]

METRIC_PREFIX = "speciarl"


def _quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_metrics(latencies: Sequence[float], prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """``{prefix}/judge/latency_p50_s`` and ``latency_p95_s`` (nearest rank) of LLM round trips; empty for none.

    >>> latency_metrics([0.1, 0.2, 0.3, 0.4])
    {'speciarl/judge/latency_p50_s': 0.2, 'speciarl/judge/latency_p95_s': 0.4}
    """
    if not latencies:
        return {}
    return {
        f"{prefix}/judge/latency_p50_s": _quantile(latencies, 0.50),
        f"{prefix}/judge/latency_p95_s": _quantile(latencies, 0.95),
    }


def judge_retries(group: GroupOutcome) -> int:
    """Retries the judge needed for a group: ``attempts - 1`` summed over its rollouts whose verdict
    came from an LLM call (source ``llm``) or whose judge failed (when the failure says how many
    attempts it made). Cache hits, ``dedup`` and rule-tier verdicts made no call of their own.

    >>> from speciarl_verl.core.categories import Category as C
    >>> g = GroupOutcome("u", (C.SPECIFIC, C.SPECIFIC, C.WRONG, None), (1.0, 1.0, 0.0, 0.0),
    ...                  sources=("llm", "dedup", "llm", None), judge_failed=(False, False, False, True),
    ...                  attempts=(3, None, 1, 4))
    >>> judge_retries(g)
    5
    """
    if not group.attempts:
        return 0
    retries = 0
    for i, attempts in enumerate(group.attempts):
        if not attempts:
            continue
        failed = bool(group.judge_failed) and group.judge_failed[i]
        if failed or (group.sources and group.sources[i] == "llm"):
            retries += attempts - 1
    return retries


def step_metrics(
    groups: Iterable[GroupOutcome], prefix: str = METRIC_PREFIX, *, latencies: bool = True
) -> dict[str, float]:
    """Rates over the rollouts and groups of one training batch.

    Categories are the judge's verdicts, never the synthetic noise of the robustness
    ablation (``noise_flip_rate`` says how often the reward used another category).

    * ``{prefix}/category/<name>``: share of rollouts with that verdict (every rollout
      counts in the denominator, so the shares, ``parse_failure_rate`` and the judge
      failures add up to 1);
    * ``{prefix}/parse_failure_rate``: share of rollouts that could not be parsed;
    * ``{prefix}/group_best/<name>``: share of groups whose best verdict in the evaluation
      order is that one (*more specific* counts apart from *specific*; ``none``: nothing in
      the group has a verdict);
    * ``{prefix}/group_best_level/mean``: mean training level of that best verdict;
    * ``{prefix}/groups_zero_variance``: share of groups in which every rollout got the
      same score, length penalty included (no GRPO signal);
    * ``{prefix}/verdict_source/<source>``: share of judged rollouts by verdict source;
    * ``{prefix}/noise_flip_rate``: share of judged rollouts whose verdict noise changed;
    * judge traffic: ``{prefix}/judge/calls_total`` (LLM calls), ``cache_hits_total``,
      ``dedup_total`` (identical pairs that waited for one call), ``failures_total``,
      ``retries_total`` (attempts beyond the first of the LLM calls behind the verdicts and the
      judge failures, see :func:`judge_retries`: a timeout, a 5xx or a reply outside the labels
      that was asked again),
      ``offline_share`` (share of judged rollouts the rule tier decided),
      ``latency_p50_s`` / ``latency_p95_s`` (LLM round trips; left out with ``latencies=False``,
      for a caller that reports them over several batches, see :func:`latency_metrics`);
    * counts: ``{prefix}/groups_total``, ``rollouts_total``, ``short_groups_total``,
      ``masked_groups_total``.

    >>> from speciarl_verl.core.categories import Category as C
    >>> g = GroupOutcome("u", (C.SPECIFIC, C.GENERIC, None, C.WRONG), (1.0, 0.0, -1.0, 0.0))
    >>> m = step_metrics([g])
    >>> m["speciarl/category/specific"], m["speciarl/parse_failure_rate"], m["speciarl/group_best/specific"]
    (0.25, 0.25, 1.0)
    """
    tally = _Tally()
    for group in groups:
        tally.add(group)
    metrics = tally.metrics(prefix)
    if latencies:
        metrics.update(latency_metrics(tally.latencies, prefix))
    return metrics


@dataclass
class _Tally:
    """Counts over the groups of one batch, turned into :func:`step_metrics`' rates."""

    groups: int = 0
    rollouts: int = 0
    judged: int = 0
    unparsed: int = 0
    failed: int = 0
    flips: int = 0
    zero_variance: int = 0
    short: int = 0
    masked: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    best: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    best_levels: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    retries: int = 0

    def add(self, group: GroupOutcome) -> None:
        self.groups += 1
        self.retries += judge_retries(group)
        self.rollouts += group.size
        self.zero_variance += group.zero_variance
        self.short += group.short
        self.masked += group.masked
        group_best = group.best("evaluation")
        if group_best is None:
            self.best["none"] += 1
        else:
            self.best[group_best.slug] += 1
            self.best_levels.append(TRAINING_LEVEL[group_best])
        for i, category in enumerate(group.categories):
            self._add_rollout(group, i, category)

    def _add_rollout(self, group: GroupOutcome, i: int, category: Category | None) -> None:
        if group.judge_failed and group.judge_failed[i]:
            self.failed += 1
            return
        if category is None:
            self.unparsed += 1
            return
        self.judged += 1
        self.categories[category.slug] += 1
        source = (group.sources[i] or "unknown") if group.sources else None
        if source is not None:
            self.sources[source] += 1
        if group.noised:
            self.flips += group.noised[i]
        if source == "llm" and group.latencies and group.latencies[i] is not None:
            self.latencies.append(float(group.latencies[i]))

    def metrics(self, prefix: str) -> dict[str, float]:
        metrics: dict[str, float] = {
            f"{prefix}/groups_total": float(self.groups),
            f"{prefix}/rollouts_total": float(self.rollouts),
            f"{prefix}/short_groups_total": float(self.short),
            f"{prefix}/masked_groups_total": float(self.masked),
            f"{prefix}/judge/calls_total": float(self.sources["llm"]),
            f"{prefix}/judge/cache_hits_total": float(self.sources["cache"]),
            f"{prefix}/judge/dedup_total": float(self.sources["dedup"]),
            f"{prefix}/judge/failures_total": float(self.failed),
            f"{prefix}/judge/retries_total": float(self.retries),
        }
        if self.rollouts:
            for category in Category:
                metrics[f"{prefix}/category/{category.slug}"] = self.categories[category.slug] / self.rollouts
            metrics[f"{prefix}/parse_failure_rate"] = self.unparsed / self.rollouts
        if self.groups:
            for name in [c.slug for c in Category] + ["none"]:
                metrics[f"{prefix}/group_best/{name}"] = self.best[name] / self.groups
            metrics[f"{prefix}/groups_zero_variance"] = self.zero_variance / self.groups
        if self.best_levels:
            metrics[f"{prefix}/group_best_level/mean"] = sum(self.best_levels) / len(self.best_levels)
        if self.judged:
            for source, count in sorted(self.sources.items()):
                metrics[f"{prefix}/verdict_source/{source}"] = count / self.judged
            metrics[f"{prefix}/noise_flip_rate"] = self.flips / self.judged
            metrics[f"{prefix}/judge/offline_share"] = self.sources["offline"] / self.judged
        return metrics
