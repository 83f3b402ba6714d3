import itertools
import math
import random

import numpy as np
import pytest

from speciarl_verl.evaluation.metrics import SCORED_KEYS
from speciarl_verl.evaluation.pass_at_k import (
    HISTOGRAM_LEVEL,
    best_of_k_distribution,
    best_of_k_matrix,
    best_prediction_index,
    k_values,
    pass_at_k,
    pooled_best_of_k,
)


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    successes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(successes[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration_over_all_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n():
    # The binomial form overflows floats here; the product form must still agree with exact integers.
    n, c, k = 2000, 7, 64
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)
    assert pass_at_k(64, 1, 64) == 1.0
    assert pass_at_k(64, 0, 64) == 0.0


def test_pass_at_k_refuses_impossible_arguments():
    for n, c, k in ((4, 5, 1), (4, 1, 5), (4, 1, 0), (4, -1, 1)):
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)


def brute_force_best_of_k(values: list[str], k: int) -> np.ndarray:
    out = np.zeros(len(SCORED_KEYS))
    subsets = list(itertools.combinations(range(len(values)), k))
    for subset in subsets:
        best = max((values[i] for i in subset), key=HISTOGRAM_LEVEL.__getitem__)
        out[SCORED_KEYS.index(best)] += 1
    return out / len(subsets)


def test_best_of_k_distribution_matches_enumeration():
    rng = random.Random(7)
    for _ in range(40):
        n = rng.randint(1, 7)
        values = [rng.choice(SCORED_KEYS) for _ in range(n)]
        for k in range(1, n + 1):
            got = best_of_k_distribution(values, k)
            assert got == pytest.approx(brute_force_best_of_k(values, k), abs=1e-12), (values, k)
            assert got.sum() == pytest.approx(1.0)


def test_best_of_all_answers_is_the_single_best_answer():
    rng = random.Random(3)
    for _ in range(30):
        values = [rng.choice(SCORED_KEYS) for _ in range(rng.randint(1, 9))]
        best = values[best_prediction_index(values)]
        expected = np.zeros(len(SCORED_KEYS))
        expected[SCORED_KEYS.index(best)] = 1
        assert best_of_k_distribution(values, len(values)) == pytest.approx(expected)


def test_selection_prefers_more_specific_and_breaks_ties_by_lowest_index():
    assert best_prediction_index(["specific", "more specific", "more specific"]) == 1
    assert best_prediction_index(["wrong", "unparseable", "abstain"]) == 2
    assert best_prediction_index(["unparseable", "unparseable"]) == 0


def test_best_of_one_is_the_plain_share_of_each_category():
    rows = best_of_k_matrix([["specific", "wrong"], ["generic", "generic"]], 1)
    assert rows.shape == (2, len(SCORED_KEYS))
    assert rows[0][SCORED_KEYS.index("specific")] == 0.5
    assert rows[1][SCORED_KEYS.index("generic")] == 1.0


def test_unknown_item_values_are_refused():
    with pytest.raises(ValueError, match="no evaluation level"):
        best_of_k_distribution(["specific", "maybe"], 1)


def test_k_values_end_at_n():
    assert k_values(64) == [1, 2, 4, 8, 16, 32, 64]
    assert k_values(10) == [1, 2, 4, 8, 10]


def test_an_undecided_answer_has_no_rank():
    with pytest.raises(ValueError, match="no evaluation level for \\['undecided'\\]"):
        best_of_k_distribution(["specific", "undecided"], 1)


def test_pooled_best_of_k_is_one_random_answer_of_the_source_and_k_minus_1_more_from_its_image():
    """Each image with k answers weighs n / k: k = 1 pools the answers (each counts once, whatever its
    image holds), k = n is the best answer of each image; images with fewer than k answers are left out."""
    rng = random.Random(5)
    images = [[rng.choice(SCORED_KEYS) for _ in range(rng.randint(1, 5))] for _ in range(12)]
    answers = sum(len(values) for values in images)
    plain = np.zeros(len(SCORED_KEYS))
    for values in images:
        for value in values:
            plain[SCORED_KEYS.index(value)] += 1
    assert pooled_best_of_k(images, 1).sum(axis=0) == pytest.approx(plain)
    for k in range(1, 6):
        kept = [values for values in images if len(values) >= k]
        assert pooled_best_of_k(images, k).shape == (len(kept), len(SCORED_KEYS))
        if not kept:
            continue
        # Enumerate: every answer of a kept image, then every (k - 1)-subset of the rest of its image.
        expected = np.zeros(len(SCORED_KEYS))
        for values in kept:
            for first in range(len(values)):
                rest = [i for i in range(len(values)) if i != first]
                subsets = list(itertools.combinations(rest, k - 1))
                for subset in subsets:
                    best = max((values[i] for i in (first, *subset)), key=HISTOGRAM_LEVEL.__getitem__)
                    expected[SCORED_KEYS.index(best)] += 1 / len(subsets)
        got = pooled_best_of_k(images, k).sum(axis=0)
        assert got / got.sum() == pytest.approx(expected / expected.sum(), abs=1e-12), k
    assert answers == plain.sum()
