"""Percentile bootstrap over images.

Images are the unit that is resampled (with replacement), so the several
answers of one image in a best-of-N run move together. Every draw comes from the
seeded ``numpy.random.Generator`` the caller passes, never the global one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_interval", "percentile_interval", "resampled_histograms"]

_MAX_COUNTS_IN_MEMORY = 4_000_000


def resampled_histograms(per_image: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``replicates`` histograms, each the column sum of ``per_image`` over a resample of its rows.

    ``per_image`` has one row per image (its expected histogram). Returns an
    array of shape ``(replicates, columns)``.

    >>> rng = np.random.default_rng(0)
    >>> resampled_histograms(np.array([[1.0, 0.0], [0.0, 1.0]]), 3, rng).sum(axis=1).tolist()
    [2.0, 2.0, 2.0]
    """
    rows = per_image.shape[0]
    if rows == 0:
        return np.zeros((replicates, per_image.shape[1]))
    # Each replicate's resample is a vector of counts (how often each image is drawn); work in
    # chunks so a test split of 30k images never needs more than a few million counts at once.
    chunk = max(1, _MAX_COUNTS_IN_MEMORY // rows)
    probabilities = np.full(rows, 1.0 / rows)
    parts = []
    for start in range(0, replicates, chunk):
        weights = rng.multinomial(rows, probabilities, size=min(chunk, replicates - start))
        parts.append(weights @ per_image)
    return np.concatenate(parts) if parts else np.zeros((0, per_image.shape[1]))


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of ``values`` by percentiles.

    >>> [round(x, 9) for x in percentile_interval(np.arange(101), 0.9)]
    [5.0, 95.0]
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(np.asarray(values, dtype=float), [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    per_image: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    replicates: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(histogram)`` over resampled histograms."""
    draws = resampled_histograms(per_image, replicates, rng)
    return percentile_interval([statistic(row) for row in draws], confidence)
