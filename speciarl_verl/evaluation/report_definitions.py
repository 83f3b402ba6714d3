"""The definitions a report states (``report.json`` -> ``definitions``; ``report.md`` prints each once).

Kept apart from the computation in :mod:`.report` so each file keeps one job; the method's
average score brings its own (:mod:`.method_score`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from speciarl_verl.evaluation.method_score import METHOD_SCORE, method_score_definition
from speciarl_verl.evaluation.metrics import EXCLUDE, CategorySets
from speciarl_verl.evaluation.owc_metrics import get_answer_metric

__all__ = ["GIVEN", "metric_definitions"]

#: ``parse_modes`` key of the answers not parsed by the evaluation (given by the predictions file).
GIVEN = "given"


def metric_definitions(
    sets: CategorySets, undecided: str = EXCLUDE, answer_metrics: Sequence[str] = ()
) -> dict[str, Any]:
    """The definitions in force, written into the report (``report.md`` prints each once)."""
    if undecided == EXCLUDE:
        scored = (
            "undecided answers (no judge decided them) are not scored: left out of every metric, numerators, "
            "denominators and best-of-N draws alike; their count is reported"
        )
    else:
        scored = (
            f"undecided answers (no judge decided them) are counted as `{undecided}` and scored as that category; "
            "their count is reported"
        )
    return {
        **sets.describe(),
        "undecided": scored,
        "correctness": "answers in the correct set / scored answers, over all scored answers of the data source "
        "pooled (each answer counts once, so an image weighs by its number of scored answers); scored answers: "
        "every decided one, unparseable included, and the undecided ones only when counted as a category; "
        "abstain, wrong and unparseable are not correct",
        "specificity": "answers in the specific set / answers in the correct set, pooled the same way "
        "(0 when none is correct)",
        "hm": "2 * correctness * specificity / (correctness + specificity), 0 when both are 0",
        METHOD_SCORE: method_score_definition(),
        "best_of_n": "for k = 1, 2, 4, ... and N (the most answers an image of the source has): the expected "
        "category of the best of k answers drawn without replacement from an image's scored answers, in the "
        "evaluation order (more specific > specific > less specific > generic > abstain > wrong > unparseable), "
        "by the unbiased pass@k estimator, pooled over the images with at least k scored answers (their number "
        "is given per k), an image with n of them weighing n / k; correctness, specificity and hm of that "
        "histogram as above. So k = 1 gives the plain metrics and k = N the best answer of each image with N "
        "scored answers; n/a at a k no image reaches",
        "ood_mean": "plain mean of each metric over the out-of-domain sources (every data source but the "
        "training domains), each source weighing the same; hm = harmonic mean of the mean correctness and the "
        "mean specificity; best-of-N at each k: the same means over the out-of-domain sources with a value at "
        "that k (how many sources and images are given)",
        "interval": "percentile bootstrap: resample a source's images with replacement, pool the scored answers "
        "of the resampled images and recompute each metric (best-of-N: at k = N, over the images with N "
        "scored answers); ood_mean resamples each source's images separately and averages",
        "parse_mode": "which <answer> block of a response gives the answer the metrics use: first (the first "
        "<answer>...</answer>, tags case-sensitive; the method's reading) or strict (exactly one block, tags in "
        f"any case); {GIVEN}: the predictions file gave the answer",
        "unparseable_rate": "share of answers whose raw response gives no label under each parse mode, over the "
        "answers whose verdict row records it, undecided answers included",
        **{name: get_answer_metric(name).definition for name in answer_metrics},
        **({"answer_metrics": _ANSWER_SCOPE} if answer_metrics else {}),
    }


_ANSWER_SCOPE = (
    "each answer metric scores every answer from its ground truth and parsed answer, without the category "
    "judge (undecided answers included; an unparseable answer scores 0); unlike the category metrics, each "
    "image weighs the same (the mean of its scored answers); ood_mean is the plain mean over the out-of-domain "
    "sources; no best-of-N"
)
