"""The method's one reported scalar, its average score, as a report aggregation (``method_score``).

The method's evaluator scores each answer by a fixed table and averages over the answers:
*more specific* and *specific* 1, *less specific* 0.6, *generic* 0.2, *abstain* 0, *wrong* -1,
and an answer that cannot be parsed -1. (Its table also gives -0.5 to an answer over a word
limit no released config sets, and 0 to a judge-service error, which ``speciarl eval judge``
never writes: it stops instead.) Here the average is over a data source's scored answers,
pooled as for correctness: undecided answers are left out, or scored as the category
``--undecided`` names. Registered on import, so it is reported beside correctness, specificity
and HM wherever they are: per source, best-of-N, intervals and the out-of-domain mean (the plain
mean over those sources).
"""

from __future__ import annotations

from collections.abc import Mapping

from speciarl_verl.core.categories import Category
from speciarl_verl.evaluation.metrics import UNDECIDED, UNPARSEABLE, CategorySets, register_aggregation

__all__ = ["METHOD_SCORE", "METHOD_SCORES", "method_score", "method_score_definition"]

#: The aggregation's name in ``report.json``.
METHOD_SCORE = "method_score"
#: Score of each histogram key, from the method's evaluator.
METHOD_SCORES: Mapping[str, float] = {
    Category.MORE_SPECIFIC.value: 1.0,
    Category.SPECIFIC.value: 1.0,
    Category.LESS_SPECIFIC.value: 0.6,
    Category.GENERIC.value: 0.2,
    Category.ABSTAIN.value: 0.0,
    Category.WRONG.value: -1.0,
    UNPARSEABLE: -1.0,
}


@register_aggregation(METHOD_SCORE)
def method_score(counts: Mapping[str, float], sets: CategorySets) -> float:
    """Mean score of the decided answers of a histogram (undecided ones count nowhere; the category
    sets play no part; a key outside the table scores 0, as in the method's evaluator). 0 when
    nothing is decided.

    >>> counts = {"specific": 2, "less specific": 1, "generic": 1, "wrong": 1, "undecided": 3}
    >>> round(method_score(counts, CategorySets()), 4)
    0.36
    >>> method_score({"unparseable": 1, "abstain": 1}, CategorySets())
    -0.5
    """
    decided = {key: count for key, count in counts.items() if key != UNDECIDED}
    total = sum(decided.values())
    if total <= 0:
        return 0.0
    return sum(METHOD_SCORES.get(key, 0.0) * count for key, count in decided.items()) / total


def method_score_definition() -> str:
    """The definition printed in ``report.md`` and stored in ``report.json``."""
    table = ", ".join(f"{key} {score:g}" for key, score in METHOD_SCORES.items())
    return (
        f"the method's average score: each scored answer gets {table}; the mean over the data source's scored "
        "answers, pooled as for correctness (undecided answers only when counted as a category); ood_mean: the "
        "plain mean over the out-of-domain sources"
    )
