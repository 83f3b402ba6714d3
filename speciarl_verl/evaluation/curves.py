"""``speciarl eval curves``: a training run's per-step figures from verl's file-logger output.

verl's ``FileLogger`` (``trainer.logger=[...,file]``; ``VERL_FILE_LOGGER_PATH`` or the recipes'
``OUT/metrics.jsonl``) writes one ``{"step": N, "data": {...}}`` line per step, sometimes more than
one (a validation pass is its own line: lines of one step are merged). A training step is a step
with ``critic/score/mean``; the validation-only step 0 is left out. The same keys come from a CPU
run and a GPU run, so one reader serves both:

* ``reward_mean``: ``critic/score/mean``, the rewards verl trained on (after our group stage);
* the verdict shares ``speciarl/category/<c>`` and ``unparseable`` (``speciarl/parse_failure_rate``);
* ``zero_variance_share``: ``speciarl/groups_zero_variance`` over ``speciarl/groups_total``, the
  groups with no learning signal;
* the judge: ``speciarl/judge/calls_total``, ``cache_hits_total``, ``failures_total``,
  ``retries_total`` (runs logged before it existed leave it empty), ``offline_share`` and, with
  an LLM judge, ``latency_p50_s`` / ``latency_p95_s``;
* ``step_s``: ``timing_s/step``.

:func:`write_curves` draws them (matplotlib, ``curves.png``) and writes ``curves.csv`` and
``curves.md``; :func:`plot_runs` draws several runs on shared axes (the miniature experiment uses it).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from speciarl_verl.jsonl_io import read_jsonl, write_atomically

__all__ = ["CATEGORY_KEYS", "COLUMNS", "RunCurve", "plot_runs", "step_curves", "write_curves"]

CATEGORY_KEYS = ("more_specific", "specific", "less_specific", "generic", "abstain", "wrong")
_JUDGE_KEYS = (
    "calls_total",
    "cache_hits_total",
    "failures_total",
    "retries_total",
    "offline_share",
    "latency_p50_s",
    "latency_p95_s",
)
#: Columns of ``curves.csv`` / ``curves.md``, in order (``step`` first).
COLUMNS = (
    "reward_mean",
    *CATEGORY_KEYS,
    "unparseable",
    "zero_variance_share",
    *(f"judge_{key}" for key in _JUDGE_KEYS),
    "step_s",
)


def _number(value, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def step_curves(metrics_file: Path) -> dict[int, dict[str, float]]:
    """Training steps of verl's file-logger output: ``{step: {column: value}}`` (``nan`` where a run
    logged nothing, e.g. latencies with the offline judge). Raises ``ValueError`` naming ``file:line``
    for a line that is not verl's ``{"step": N, "data": {...}}``."""
    merged: dict[int, dict] = defaultdict(dict)
    for number, record in read_jsonl(metrics_file):
        where = f"{metrics_file}:{number}"
        if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
            raise ValueError(f"{where}: not a verl file-logger line ({{'step': N, 'data': {{...}}}})")
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"{where}: step must be an integer, got {step!r}")
        merged[step].update(record["data"])
    curves = {}
    for step, data in sorted(merged.items()):
        if "critic/score/mean" not in data:
            continue  # a validation-only step
        where = f"{metrics_file}: step {step}"

        def get(key: str, default: float = math.nan, where: str = where, data: dict = data) -> float:
            return _number(data[key], where, key) if key in data else default

        row = {"reward_mean": get("critic/score/mean")}
        row.update({key: get(f"speciarl/category/{key}", 0.0) for key in CATEGORY_KEYS})
        row["unparseable"] = get("speciarl/parse_failure_rate", 0.0)
        groups = get("speciarl/groups_total")
        zero = get("speciarl/groups_zero_variance")
        row["zero_variance_share"] = zero / groups if groups and groups > 0 else math.nan
        row.update({f"judge_{key}": get(f"speciarl/judge/{key}") for key in _JUDGE_KEYS})
        row["step_s"] = get("timing_s/step")
        curves[step] = row
    return curves


def _cell(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}"


def _tables(curves: Mapping[int, Mapping[str, float]]) -> tuple[str, str]:
    shown = [c for c in COLUMNS if any(not math.isnan(row[c]) for row in curves.values())]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", *COLUMNS])
    for step, row in curves.items():
        writer.writerow([step, *(_cell(row[c]) for c in COLUMNS)])
    lines = ["| step | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    lines += [f"| {step} | " + " | ".join(_cell(row[c]) or "-" for c in shown) + " |" for step, row in curves.items()]
    return buffer.getvalue(), "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RunCurve:
    """One run on a shared figure: its curves, line colour and legend label (``None``: no legend entry)."""

    curves: Mapping[int, Mapping[str, float]]
    colour: str | None = None
    label: str | None = None


#: (column or sum of columns, title) of each panel.
_PANELS = (
    (("reward_mean",), "reward mean (the run's own scale)"),
    (("specific", "more_specific"), "share specific or finer"),
    (("less_specific", "generic", "abstain"), "share less specific + generic + abstain"),
    (("wrong",), "share wrong"),
    (("unparseable",), "share unparseable"),
    (("zero_variance_share",), "groups with zero reward variance"),
)


def plot_runs(runs: Sequence[RunCurve], path: Path, title: str, judge: bool = False) -> None:
    """Reward mean, verdict shares and zero-variance groups per step, one line per run; ``judge`` adds
    the judge's calls, cache hits and failures per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = list(_PANELS)
    if judge:
        panels += [(("judge_calls_total",), "judge calls"), (("judge_cache_hits_total",), "judge cache hits")]
        panels += [(("judge_failures_total",), "judge failures")]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.2 * rows), squeeze=False)
    flat = list(axes.flat)
    for run in runs:
        steps = sorted(run.curves)
        for ax, (keys, panel_title) in zip(flat, panels, strict=False):
            values = [sum(run.curves[s][k] for k in keys) for s in steps]
            ax.plot(steps, values, color=run.colour, alpha=0.8, marker="o" if len(steps) < 12 else None,
                    markersize=3, label=run.label)  # fmt: skip
            ax.set_title(panel_title, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if "share" in panel_title or "variance" in panel_title:
                ax.set_ylim(-0.03, 1.03)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    if any(run.label for run in runs):
        flat[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_curves(metrics_file: Path, out: Path) -> dict[str, Path]:
    """``curves.png``, ``curves.csv`` and ``curves.md`` of one run's ``metrics.jsonl`` in folder ``out``."""
    curves = step_curves(metrics_file)
    if not curves:
        raise ValueError(f"{metrics_file}: no training step (no line with critic/score/mean)")
    out.mkdir(parents=True, exist_ok=True)
    csv_text, markdown = _tables(curves)
    written = {"csv": out / "curves.csv", "markdown": out / "curves.md", "png": out / "curves.png"}
    write_atomically(written["csv"], csv_text)
    write_atomically(written["markdown"], f"# Training curves of {metrics_file}\n\n{markdown}")
    judged = any(not math.isnan(row["judge_calls_total"]) for row in curves.values())
    title = f"{metrics_file} ({len(curves)} training steps, verl file logger)"
    plot_runs([RunCurve(curves)], written["png"], title, judge=judged)
    return written
