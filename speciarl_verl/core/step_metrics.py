"""Per-step training metrics computed from the scored groups of a batch.

Names follow verl's conventions: a name containing ``total`` is summed when
verl aggregates several sub-steps, everything else is averaged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from speciarl_verl.core.categories import Category
from speciarl_verl.core.group_outcome import GroupOutcome

__all__ = ["step_metrics", "METRIC_PREFIX"]

METRIC_PREFIX = "speciarl"


def _quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def step_metrics(groups: Iterable[GroupOutcome], prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """Rates over the rollouts and groups of one training batch.

    * ``{prefix}/category/<name>``: share of rollouts with that verdict (every rollout
      counts in the denominator);
    * ``{prefix}/parse_failure_rate``: share of rollouts that could not be parsed;
    * ``{prefix}/group_best/<name>``: share of groups whose finest verdict is
      that one (``none``: nothing in the group has a verdict);
    * ``{prefix}/group_best_level/mean``: mean training level of the group best;
    * ``{prefix}/groups_zero_variance``: share of groups in which every rollout
      got the same reward (no GRPO signal);
    * ``{prefix}/verdict_source/<source>``: share of judged rollouts by verdict source;
    * ``{prefix}/noise_flip_rate``: share of judged rollouts whose verdict noise changed;
    * judge traffic: ``{prefix}/judge/calls_total`` (LLM calls), ``cache_hits_total``,
      ``dedup_total`` (identical pairs that waited for one call), ``failures_total``,
      ``offline_share`` (share of judged rollouts the rule tier decided),
      ``latency_p50_s`` / ``latency_p95_s`` (LLM round trips);
    * counts: ``{prefix}/groups_total``, ``rollouts_total``, ``short_groups_total``,
      ``masked_groups_total``.

    >>> from speciarl_verl.core.categories import Category as C
    >>> g = GroupOutcome("u", (C.SPECIFIC, C.GENERIC, None, C.WRONG), (1.0, 0.0, -1.0, 0.0))
    >>> m = step_metrics([g])
    >>> m["speciarl/category/specific"], m["speciarl/parse_failure_rate"], m["speciarl/group_best/specific"]
    (0.25, 0.25, 1.0)
    """
    groups = list(groups)
    categories: Counter[str] = Counter()
    best: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    latencies: list[float] = []
    rollouts = judged = unparsed = failed = flips = zero_variance = short = masked = 0
    best_levels: list[int] = []
    for group in groups:
        rollouts += group.size
        zero_variance += group.zero_variance
        short += group.short
        masked += group.masked
        group_best = group.best_for_evaluation
        best[group_best.slug if group_best is not None else "none"] += 1
        if group.best_training_level is not None:
            best_levels.append(group.best_training_level)
        for i, category in enumerate(group.categories):
            if group.judge_failed and group.judge_failed[i]:
                failed += 1
                continue
            if category is None:
                unparsed += 1
                continue
            judged += 1
            categories[category.slug] += 1
            if group.sources:
                sources[group.sources[i] or "unknown"] += 1
            if group.noised:
                flips += group.noised[i]
            if group.latencies and group.latencies[i] is not None and group.sources[i] == "llm":
                latencies.append(float(group.latencies[i]))

    metrics: dict[str, float] = {
        f"{prefix}/groups_total": float(len(groups)),
        f"{prefix}/rollouts_total": float(rollouts),
        f"{prefix}/short_groups_total": float(short),
        f"{prefix}/masked_groups_total": float(masked),
        f"{prefix}/judge/calls_total": float(sources["llm"]),
        f"{prefix}/judge/cache_hits_total": float(sources["cache"]),
        f"{prefix}/judge/dedup_total": float(sources["dedup"]),
        f"{prefix}/judge/failures_total": float(failed),
    }
    if rollouts:
        for category in Category:
            metrics[f"{prefix}/category/{category.slug}"] = categories[category.slug] / rollouts
        metrics[f"{prefix}/parse_failure_rate"] = unparsed / rollouts
    if groups:
        for name in [c.slug for c in Category] + ["none"]:
            metrics[f"{prefix}/group_best/{name}"] = best[name] / len(groups)
        metrics[f"{prefix}/groups_zero_variance"] = zero_variance / len(groups)
    if best_levels:
        metrics[f"{prefix}/group_best_level/mean"] = sum(best_levels) / len(best_levels)
    if judged:
        for source, count in sorted(sources.items()):
            metrics[f"{prefix}/verdict_source/{source}"] = count / judged
        metrics[f"{prefix}/noise_flip_rate"] = flips / judged
        metrics[f"{prefix}/judge/offline_share"] = sources["offline"] / judged
    if latencies:
        metrics[f"{prefix}/judge/latency_p50_s"] = _quantile(latencies, 0.50)
        metrics[f"{prefix}/judge/latency_p95_s"] = _quantile(latencies, 0.95)
    return metrics
