"""Evaluation: predictions -> verdicts -> correctness, specificity, HM, best-of-N, judge agreement.

Importing this package loads neither vLLM, matplotlib nor scikit-learn; each
step imports what it needs when it runs. Entry points: ``speciarl eval ...``
(:mod:`.cli`) and :func:`report_tour`.
"""

from speciarl_verl.evaluation.metrics import (
    CategorySets,
    aggregation_names,
    get_aggregation,
    get_item_metric,
    harmonic_mean,
    register_aggregation,
    register_item_metric,
)
from speciarl_verl.evaluation.pass_at_k import best_of_k_distribution, pass_at_k
from speciarl_verl.evaluation.records import PredictionRecord, VerdictRecord, load_predictions, load_verdicts
from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
from speciarl_verl.evaluation.report_tour import report_tour

__all__ = [
    "CategorySets",
    "PredictionRecord",
    "ReportSettings",
    "RunVerdicts",
    "VerdictRecord",
    "aggregation_names",
    "best_of_k_distribution",
    "build_report",
    "get_aggregation",
    "get_item_metric",
    "harmonic_mean",
    "load_predictions",
    "load_verdicts",
    "pass_at_k",
    "register_aggregation",
    "register_item_metric",
    "report_tour",
]
