import random
from collections import Counter

import pytest

from speciarl_verl.core import Category, apply_verdict_noise, noise_rng, perturb_category

C = Category


def test_perturbation_moves_exactly_one_step_along_the_chain():
    rng = random.Random(0)
    chain = [C.WRONG, C.ABSTAIN, C.GENERIC, C.LESS_SPECIFIC, C.SPECIFIC]
    for _ in range(200):
        for category in Category:
            moved = perturb_category(category, rng)
            start = C.SPECIFIC if category is C.MORE_SPECIFIC else category
            assert moved is not C.MORE_SPECIFIC
            assert abs(chain.index(moved) - chain.index(start)) == 1


def test_ends_move_inward_and_interior_levels_move_both_ways_evenly():
    rng = random.Random(1)
    assert {perturb_category(C.WRONG, rng) for _ in range(50)} == {C.ABSTAIN}
    assert {perturb_category(C.SPECIFIC, rng) for _ in range(50)} == {C.LESS_SPECIFIC}
    assert {perturb_category(C.MORE_SPECIFIC, rng) for _ in range(50)} == {C.LESS_SPECIFIC}
    moves = Counter(perturb_category(C.GENERIC, rng) for _ in range(4000))
    assert set(moves) == {C.ABSTAIN, C.LESS_SPECIFIC}
    assert abs(moves[C.ABSTAIN] / 4000 - 0.5) < 0.04


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.25, 1.0])
def test_realised_flip_rate_is_close_to_the_rate(rate):
    flips = sum(apply_verdict_noise(C.GENERIC, rate, noise_rng(7, step))[1] for step in range(4000))
    assert abs(flips / 4000 - rate) < 0.025


def test_generator_is_determined_by_seed_and_key_only():
    a = [apply_verdict_noise(C.LESS_SPECIFIC, 0.5, noise_rng(3, 10, "img", s)) for s in range(50)]
    b = [apply_verdict_noise(C.LESS_SPECIFIC, 0.5, noise_rng(3, 10, "img", s)) for s in range(50)]
    c = [apply_verdict_noise(C.LESS_SPECIFIC, 0.5, noise_rng(4, 10, "img", s)) for s in range(50)]
    assert a == b
    assert a != c


def test_global_random_state_is_untouched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    apply_verdict_noise(C.GENERIC, 0.5, noise_rng(0, 1))
    assert random.random() == expected


def test_rate_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="within"):
        apply_verdict_noise(C.GENERIC, 1.5, random.Random(0))
