"""Write a report to a folder: ``report.json``, ``report.md`` and the PNG plots, each atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speciarl_verl.jsonl_io import write_atomically

__all__ = ["OWC_PLOT_FILES", "PLOT_FILES", "write_report"]

#: File name of each plot, by the key of :data:`~speciarl_verl.evaluation.plots.PLOT_SIZES`.
PLOT_FILES: Mapping[str, str] = {
    "category_bars": "category_bars.png",
    "specificity_vs_correctness": "specificity_vs_correctness.png",
    "best_of_n": "best_of_n.png",
}
#: File name of each plot that exists only with the open-world metrics (``--metrics owc``).
OWC_PLOT_FILES: Mapping[str, str] = {"hm_vs_semantic_similarity": "hm_vs_semantic_similarity.png"}


def _has_best_of_n(report: Mapping[str, Any]) -> bool:
    return any("best_of_n" in block for run in report["runs"].values() for block in run["per_source"].values())


def _best_of_n_plot_notes(report: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Whether the best-of-N plot has a line to draw, and a note for each run it has none for."""
    from speciarl_verl.evaluation.plots import best_of_n_curve

    curves = {name: best_of_n_curve(run) for name, run in report["runs"].items()}
    drawn = any(curve is not None for curve, _ in curves.values())
    missing = [f"`{name}`: {why}" for name, (curve, why) in curves.items() if curve is None]
    if not missing:
        return drawn, []
    if drawn:
        return drawn, ["best-of-N plot: no line for " + "; ".join(missing)]
    return drawn, ["best-of-N plot not drawn, no run has a curve (" + "; ".join(missing) + ")"]


def write_report(report: Mapping[str, Any], out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write the files; returns ``{"json": ..., "markdown": ..., <plot name>: ...}``.

    The best-of-N plot is drawn only when some run has a best-of-N curve (several answers per image;
    ``report.md`` notes the runs without one), the plot of HM against semantic similarity only when
    the report has that metric.
    """
    from speciarl_verl.evaluation import plots as figures
    from speciarl_verl.evaluation.report_markdown import render_markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    notes: list[str] = []
    if plots:
        drawers = {
            "category_bars": figures.category_bars_png,
            "specificity_vs_correctness": figures.specificity_vs_correctness_png,
        }
        if _has_best_of_n(report):
            drawn, notes = _best_of_n_plot_notes(report)
            if drawn:
                drawers["best_of_n"] = figures.best_of_n_png
        if "semantic_similarity" in report.get("answer_metrics", ()):
            drawers["hm_vs_semantic_similarity"] = figures.hm_vs_semantic_similarity_png
        for name, draw in drawers.items():
            written[name] = write_atomically(out_dir / {**PLOT_FILES, **OWC_PLOT_FILES}[name], draw(report))
    written["json"] = write_atomically(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    titles = {name.replace("_", " "): path.name for name, path in written.items() if path.suffix == ".png"}
    written["markdown"] = write_atomically(out_dir / "report.md", render_markdown(report, titles, notes))
    return written
