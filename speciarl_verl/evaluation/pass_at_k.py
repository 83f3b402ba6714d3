"""Best-of-N under the evaluation order, with the unbiased pass@k estimator.

With n answers for one image of which c reach a given level, the chance that
the best of k answers drawn without replacement reaches that level is
(Chen et al., 2021)::

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

The product form avoids huge binomials. Applied at every level of the
evaluation order (more specific > specific > less specific > generic > abstain >
wrong > unparseable), it gives the expected category histogram of the best of k
answers; at k = n this is exactly the histogram of the single best answer per
image. So correctness@k is the pass@k of "correct", and specificity@k the
expected share of specific answers among the correct best-of-k picks.

Pooled over a data source (:func:`pooled_best_of_k`), an image needs at least k answers
(one with 2 has no best of 4; the report says how many images each k is over) and weighs
n / k, n its answers: as many draws of k as its answers fill. So at k = 1 the histogram is
the source's pooled answer counts (each answer once, as the plain metrics count them), and
at k = N, where every image counted has N answers, one best answer per image.
Equivalently: draw one answer of the source at random, k - 1 more from its image, and
take the best of the k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from speciarl_verl.core import best_category
from speciarl_verl.core.categories import EVALUATION_LEVEL, UNPARSEABLE_LEVEL
from speciarl_verl.evaluation.metrics import SCORED_KEYS, UNPARSEABLE

__all__ = [
    "HISTOGRAM_LEVEL",
    "best_of_k_distribution",
    "best_of_k_matrix",
    "best_prediction_index",
    "k_values",
    "pass_at_k",
    "pooled_best_of_k",
]

#: Evaluation level of each scored key (higher is better; unparseable lowest). ``undecided`` has none:
#: an answer nobody judged cannot be ranked, so the report removes or files it before best-of-k.
HISTOGRAM_LEVEL: Mapping[str, int] = {
    **{category.value: level for category, level in EVALUATION_LEVEL.items()},
    UNPARSEABLE: UNPARSEABLE_LEVEL,
}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k draws from n succeeds) given c successes.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2), round(pass_at_k(4, 1, 2), 4)
    (0.25, 1.0, 0.0, 0.5)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=float)))


def best_of_k_distribution(
    values: Sequence[str], k: int, keys: Sequence[str] = SCORED_KEYS, level: Mapping[str, int] = HISTOGRAM_LEVEL
) -> np.ndarray:
    """Expected share of each key in ``keys`` for the best of ``k`` of ``values`` (sums to 1).

    Keys that share a level split that level's chance in proportion to their counts.

    >>> best_of_k_distribution(["generic", "specific", "wrong", "wrong"], 2).round(4).tolist()
    [0.0, 0.5, 0.0, 0.3333, 0.0, 0.1667, 0.0]
    """
    n = len(values)
    if n == 0:
        raise ValueError("best-of-k needs at least one answer")
    unknown = sorted({v for v in values if v not in level})
    if unknown:
        raise ValueError(f"no evaluation level for {unknown} (known: {sorted(level)})")
    counts = {key: 0 for key in keys}
    for value in values:
        if value not in counts:
            raise ValueError(f"{value!r} is not one of the histogram keys {list(keys)}")
        counts[value] += 1
    levels = sorted({level[key] for key in keys}, reverse=True)
    out = np.zeros(len(keys))
    reached_above = 0.0  # P(best is above the current level)
    at_or_above = 0
    for current in levels:
        members = [i for i, key in enumerate(keys) if level[key] == current]
        here = sum(counts[keys[i]] for i in members)
        at_or_above += here
        reached = pass_at_k(n, at_or_above, k) if at_or_above else 0.0
        chance = reached - reached_above
        for i in members:
            if here:
                out[i] = chance * counts[keys[i]] / here
        reached_above = reached
    return out


def best_of_k_matrix(samples: Sequence[Sequence[str]], k: int, keys: Sequence[str] = SCORED_KEYS) -> np.ndarray:
    """One row per image: :func:`best_of_k_distribution` of its answers (k = 1: plain shares).
    Every image needs at least ``k`` answers (:func:`pooled_best_of_k` picks those that have them)."""
    return np.array([best_of_k_distribution(values, k, keys) for values in samples]).reshape(len(samples), len(keys))


def pooled_best_of_k(samples: Sequence[Sequence[str]], k: int, keys: Sequence[str] = SCORED_KEYS) -> np.ndarray:
    """One row per image with at least ``k`` answers (none when no image has them): its
    :func:`best_of_k_distribution` times n / k, n its answers. The column sums are the source's
    best-of-k histogram; at k = 1 they are its answer counts.

    >>> pooled_best_of_k([["specific", "wrong", "wrong", "wrong"], ["generic"]], 1).sum(axis=0).tolist()
    [0.0, 1.0, 0.0, 1.0, 0.0, 3.0, 0.0]
    >>> pooled_best_of_k([["specific", "wrong", "wrong", "wrong"], ["generic"]], 4).tolist()
    [[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    >>> pooled_best_of_k([["generic"]], 2).shape
    (0, 7)
    """
    kept = [values for values in samples if len(values) >= k]
    weights = np.array([len(values) / k for values in kept]).reshape(-1, 1)
    return best_of_k_matrix(kept, k, keys) * weights


def best_prediction_index(values: Sequence[str]) -> int:
    """Position of the best answer in the evaluation order (``core.best_category``), an unparseable
    answer below every category; ties go to the lowest position.

    >>> best_prediction_index(["generic", "specific", "more specific", "more specific"])
    2
    """
    if not values:
        raise ValueError("no answers to choose from")
    best = best_category((None if value == UNPARSEABLE else value for value in values), "evaluation")
    return 0 if best is None else values.index(best.value)


def k_values(n: int) -> list[int]:
    """The k reported for best-of-n: 1, 2, 4, ... below n, and n itself.

    >>> k_values(64), k_values(5), k_values(1)
    ([1, 2, 4, 8, 16, 32, 64], [1, 2, 4, 5], [1])
    """
    ks = [1]
    while ks[-1] * 2 < n:
        ks.append(ks[-1] * 2)
    if n > 1:
        ks.append(n)
    return ks
