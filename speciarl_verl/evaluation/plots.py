"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function returns PNG bytes of a fixed pixel size (``PLOT_SIZES``), so a
caller can write them atomically and a test can check them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from speciarl_verl.evaluation.metrics import HISTOGRAM_KEYS

__all__ = [
    "DPI",
    "PLOT_SIZES",
    "best_of_n_curve",
    "best_of_n_png",
    "category_bars_png",
    "heatmap_png",
    "hm_vs_semantic_similarity_png",
    "specificity_vs_correctness_png",
]

DPI = 100
#: (width, height) in pixels of each figure.
PLOT_SIZES: Mapping[str, tuple[int, int]] = {
    "category_bars": (1200, 600),
    "specificity_vs_correctness": (800, 700),
    "best_of_n": (1000, 450),
    "agreement_heatmap": (800, 700),
    "hm_vs_semantic_similarity": (800, 700),
}

CATEGORY_COLORS: Mapping[str, str] = {
    "more specific": "#00441b",
    "specific": "#238b45",
    "less specific": "#74c476",
    "generic": "#c7e9c0",
    "abstain": "#bdbdbd",
    "wrong": "#de2d26",
    "undecided": "#fdae6b",
    "unparseable": "#252525",
}


def _figure(name: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = PLOT_SIZES[name]
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def category_bars_png(report: Mapping[str, Any]) -> bytes:
    """Stacked bars of the category shares: one group per data source, one bar per run."""
    runs = report["runs"]
    sources = sorted({s for run in runs.values() for s in run["per_source"]})
    figure = _figure("category_bars")
    axes = figure.add_subplot()
    width = 0.8 / max(len(runs), 1)
    for r, (run_name, run) in enumerate(runs.items()):
        positions, bottoms = [], []
        shares: dict[str, list[float]] = {key: [] for key in HISTOGRAM_KEYS}
        for s, source in enumerate(sources):
            block = run["per_source"].get(source)
            if block is None:
                continue
            positions.append(s - 0.4 + width * (r + 0.5))
            bottoms.append(0.0)
            for key in HISTOGRAM_KEYS:
                shares[key].append(block["counts"].get(key, 0) / max(block["n"], 1))
        for key in HISTOGRAM_KEYS:
            axes.bar(
                positions,
                shares[key],
                width=width * 0.92,
                bottom=bottoms,
                color=CATEGORY_COLORS[key],
                edgecolor="white",
                linewidth=0.5,
                label=key if r == 0 else None,
            )
            bottoms = [b + v for b, v in zip(bottoms, shares[key], strict=True)]
        if len(runs) > 1:
            for x in positions:
                axes.text(x, 1.01, run_name, rotation=90, ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(sources)), sources, rotation=20, ha="right")
    axes.set_ylim(0, 1.25 if len(runs) > 1 else 1.0)
    axes.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("share of answers")
    axes.set_title("Verdict categories per data source")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return _png(figure)


def specificity_vs_correctness_png(report: Mapping[str, Any]) -> bytes:
    """One colour per run: small markers per data source, a large one for the out-of-domain mean."""
    import numpy as np

    figure = _figure("specificity_vs_correctness")
    axes = figure.add_subplot()
    grid = np.linspace(0.01, 1.0, 200)
    for level in (0.5, 0.6, 0.7, 0.8, 0.9):
        # HM = h  <=>  specificity = h * c / (2c - h), for c > h / 2.
        c = grid[grid > level / 2 + 1e-3]
        s = level * c / (2 * c - level)
        keep = s <= 1.0
        axes.plot(c[keep], s[keep], color="#cccccc", linestyle="--", linewidth=0.8, zorder=0)
        axes.text(1.0, level * 1.0 / (2 - level), f"HM {level}", fontsize=7, color="#888888", va="bottom", ha="right")
    colors = [f"C{i}" for i in range(10)]
    for r, (run_name, run) in enumerate(report["runs"].items()):
        color = colors[r % len(colors)]
        for source, block in run["per_source"].items():
            axes.scatter(block["correctness"], block["specificity"], s=25, color=color, alpha=0.6)
            axes.annotate(source, (block["correctness"], block["specificity"]), fontsize=6, alpha=0.7)
        ood = run["ood_mean"]
        if ood is not None:
            axes.scatter(
                ood["correctness"],
                ood["specificity"],
                s=140,
                marker="*",
                color=color,
                edgecolor="black",
                label=f"{run_name} (OOD HM {ood['hm']:.3f})",
            )
        else:
            axes.scatter([], [], color=color, label=run_name)
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("correctness")
    axes.set_ylabel("specificity")
    axes.set_title("Specificity vs correctness (star: out-of-domain mean)")
    axes.legend(loc="lower left", fontsize=8)
    return _png(figure)


def best_of_n_curve(run: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The best-of-N curve a run's line shows, as ``(curve, what it is)``, or ``(None, why there is none)``.

    The curve is the out-of-domain mean's best-of-N, or the one source's when the run has a single
    source with best-of-N; it keeps the k that have a value (some image with k scored answers), and in
    ``partial`` the k whose out-of-domain mean is over fewer sources than the run has out of domain.

    >>> best_of_n_curve({"per_source": {"food101": {}}, "ood_mean": None})
    (None, 'no image has several answers')
    """
    ood = run.get("ood_mean")
    if ood is not None and "best_of_n" in ood:
        bon, label, total = ood["best_of_n"], "out-of-domain mean", len(ood["sources"])
    else:
        blocks = {s: b["best_of_n"] for s, b in run["per_source"].items() if "best_of_n" in b}
        if not blocks:
            return None, "no image has several answers"
        if len(blocks) > 1:
            return None, "no out-of-domain source (each source's best-of-N is in report.md)"
        [(label, bon)] = blocks.items()
        total = None
    keep = [i for i, value in enumerate(bon["correctness"]) if value is not None]
    if not keep:
        return None, f"{label}: no image has k scored answers at any k"
    curve: dict[str, Any] = {name: [bon[name][i] for i in keep] for name in ("k", "correctness", "specificity", "hm")}
    sources = bon.get("sources")
    curve["partial"] = [bon["k"][i] for i in keep if total is not None and sources and len(sources[i]) < total]
    return curve, label


def best_of_n_png(report: Mapping[str, Any]) -> bytes:
    """Correctness, specificity and HM of the best of k answers against k, one line per run (its
    :func:`best_of_n_curve`); a hollow marker where the out-of-domain mean is over fewer sources, and a
    note naming the runs without a curve. Callers draw it only when some run has a curve."""
    figure = _figure("best_of_n")
    panels = figure.subplots(1, 3, sharex=True)
    ks: set[int] = set()
    missing, partial = [], False
    for r, (run_name, run) in enumerate(report["runs"].items()):
        curve, what = best_of_n_curve(run)
        if curve is None:
            missing.append(f"{run_name}: {what}")
            continue
        ks.update(curve["k"])
        partial = partial or bool(curve["partial"])
        color = f"C{r % 10}"
        for axes, metric in zip(panels, ("correctness", "specificity", "hm"), strict=True):
            axes.plot(curve["k"], curve[metric], marker="o", color=color, label=f"{run_name} ({what})")
            hollow = [(k, v) for k, v in zip(curve["k"], curve[metric], strict=True) if k in curve["partial"]]
            if hollow:
                axes.scatter(*zip(*hollow, strict=True), s=60, color="white", edgecolor=color, zorder=3)
    for axes, metric in zip(panels, ("correctness", "specificity", "HM"), strict=True):
        axes.set_xscale("log", base=2)
        axes.set_xticks(sorted(ks), [str(k) for k in sorted(ks)])
        axes.minorticks_off()
        axes.set_xlabel("k")
        axes.set_title(f"{metric} of best of k")
        axes.set_ylim(0, 1.02)
    if ks:
        panels[0].legend(fontsize=8)
    notes = [*(["hollow: out-of-domain mean over fewer sources (see report.md)"] if partial else []), *missing]
    if notes:
        figure.supxlabel("; ".join(notes), fontsize=8)
    return _png(figure)


def hm_vs_semantic_similarity_png(report: Mapping[str, Any]) -> bytes:
    """HM (category judge) against semantic similarity (embeddings), one point per data source and run,
    a star for each run's out-of-domain mean: where the two disagree, a judge or an embedding misleads."""
    figure = _figure("hm_vs_semantic_similarity")
    axes = figure.add_subplot()
    low = 0.0
    for r, (run_name, run) in enumerate(report["runs"].items()):
        color = f"C{r % 10}"
        for source, block in run["per_source"].items():
            similarity = block.get("semantic_similarity")
            if similarity is None:
                continue
            low = min(low, similarity)
            axes.scatter(similarity, block["hm"], s=30, color=color, alpha=0.7)
            axes.annotate(source, (similarity, block["hm"]), fontsize=7, alpha=0.8)
        ood = run.get("ood_mean")
        if ood is not None and ood.get("semantic_similarity") is not None:
            axes.scatter(
                ood["semantic_similarity"],
                ood["hm"],
                s=140,
                marker="*",
                color=color,
                edgecolor="black",
                label=f"{run_name} (OOD: SS {ood['semantic_similarity']:.3f}, HM {ood['hm']:.3f})",
            )
        else:
            axes.scatter([], [], color=color, label=run_name)
    axes.set_xlim(min(low, 0.0) - 0.02, 1.02)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("semantic similarity (mean cosine of answer and ground truth)")
    axes.set_ylabel("HM of correctness and specificity")
    axes.set_title("HM vs semantic similarity per data source (star: out-of-domain mean)")
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def heatmap_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], x_name: str, y_name: str) -> bytes:
    """Annotated heat map of a confusion matrix (rows: ``y_name``, columns: ``x_name``)."""
    import numpy as np

    values = np.asarray(matrix, dtype=float)
    figure = _figure("agreement_heatmap")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8, label="answers")
    axes.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel(x_name)
    axes.set_ylabel(y_name)
    high = values.max() if values.size else 0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if values[i, j]:
                color = "white" if values[i, j] > high / 2 else "black"
                axes.text(j, i, f"{int(values[i, j])}", ha="center", va="center", color=color, fontsize=8)
    axes.set_title(f"{y_name} (rows) vs {x_name} (columns)")
    return _png(figure)
