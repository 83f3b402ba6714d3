"""The evaluator end to end on shipped, recorded predictions: judge (offline) -> report.

``make demo`` calls :func:`report_tour` at its end; ``python -m
speciarl_verl.evaluation OUT_DIR`` does the same by hand.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

__all__ = ["RECORDED_PREDICTIONS", "recorded_predictions_path", "report_tour"]

RECORDED_PREDICTIONS = "recorded_predictions.jsonl"


def recorded_predictions_path(out_dir: str | Path) -> Path:
    """Copy the shipped recorded predictions into ``out_dir``; returns the copy."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / RECORDED_PREDICTIONS
    with resources.as_file(resources.files("speciarl_verl.evaluation").joinpath(RECORDED_PREDICTIONS)) as source:
        shutil.copyfile(source, target)
    return target


def report_tour(out_dir: str | Path, bootstrap: int = 1000, progress: bool = False) -> Path:
    """Recorded predictions -> offline judge -> report in ``out_dir``; returns the ``report.md`` path.

    Writes ``recorded_predictions.jsonl``, ``verdicts.jsonl`` and ``report/``
    (``report.json``, ``report.md``, plots) under ``out_dir``. Training domain: cub200.
    """
    from speciarl_verl.evaluation.judging import judge_predictions
    from speciarl_verl.evaluation.records import load_verdicts
    from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
    from speciarl_verl.evaluation.report_files import write_report

    out_dir = Path(out_dir)
    predictions = recorded_predictions_path(out_dir)
    verdicts = out_dir / "verdicts.jsonl"
    verdicts.unlink(missing_ok=True)
    judge_predictions(predictions, verdicts, {"kind": "offline"}, progress=progress)
    run = RunVerdicts("recorded (offline judge)", load_verdicts(verdicts), str(verdicts))
    report = build_report([run], ReportSettings(train_domains=("cub200",), replicates=bootstrap))
    return write_report(report, out_dir / "report")["markdown"]
