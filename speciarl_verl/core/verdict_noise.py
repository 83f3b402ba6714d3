"""Synthetic judge errors for the robustness ablation.

With probability ``rate`` a verdict moves one step along
wrong - abstain - generic - less specific - specific: up or down with equal odds
from an interior level, inward from an end. *more specific* counts as
*specific* first, so noise never produces it. Randomness comes from a
:class:`random.Random` the caller seeds (per step and rollout), never from the
global generator, so a run can be replayed.
"""

from __future__ import annotations

import random

from speciarl_verl.core.categories import NOISE_CHAIN, Category

__all__ = ["apply_verdict_noise", "noise_rng", "perturb_category"]


def noise_rng(seed: int, *key: object) -> random.Random:
    """A generator determined by ``seed`` and ``key`` alone (stable across processes).

    >>> noise_rng(0, 3, "img-7", 2).random() == noise_rng(0, 3, "img-7", 2).random()
    True
    """
    # random.Random hashes a str seed with SHA-512, which does not depend on PYTHONHASHSEED.
    return random.Random("|".join(map(str, (seed, *key))))


def perturb_category(category: Category | str, rng: random.Random) -> Category:
    """Move ``category`` one step along the noise chain (always a change).

    >>> perturb_category("specific", random.Random(0)).value
    'less specific'
    >>> perturb_category("wrong", random.Random(0)).value
    'abstain'
    """
    start = Category.coerce(category)
    if start is Category.MORE_SPECIFIC:
        start = Category.SPECIFIC
    position = NOISE_CHAIN.index(start)
    if position == 0:
        return NOISE_CHAIN[1]
    if position == len(NOISE_CHAIN) - 1:
        return NOISE_CHAIN[-2]
    return NOISE_CHAIN[position + (1 if rng.random() < 0.5 else -1)]


def apply_verdict_noise(category: Category | str, rate: float, rng: random.Random) -> tuple[Category, bool]:
    """With probability ``rate`` perturb ``category``; returns the verdict used and whether it changed.

    >>> apply_verdict_noise("generic", 0.0, random.Random(1))
    (<Category.GENERIC: 'generic'>, False)
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"verdict noise rate must be within [0, 1], got {rate}")
    verdict = Category.coerce(category)
    # Draw unconditionally so the stream does not depend on the rate.
    draw = rng.random()
    if draw < rate:
        return perturb_category(verdict, rng), True
    return verdict, False
