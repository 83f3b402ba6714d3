"""Render a report dict (from :func:`~speciarl_verl.evaluation.report.build_report`) as Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES
from speciarl_verl.evaluation.metrics import HISTOGRAM_KEYS

__all__ = ["render_markdown"]

_TITLES = {"correctness": "Corr.", "specificity": "Spec.", "hm": "HM", "method_score": "Score"}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _with_interval(block: Mapping[str, Any], name: str, ci_key: str = "ci") -> str:
    text = _num(block.get(name))
    interval = block.get(ci_key, {}).get(name)
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> list[str]:
    marks = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _title(name: str) -> str:
    if name in _TITLES:
        return _TITLES[name]
    from speciarl_verl.evaluation.owc_metrics import get_answer_metric

    try:
        return get_answer_metric(name).title
    except ValueError:
        return name


def render_markdown(
    report: Mapping[str, Any], plots: Mapping[str, str] | None = None, plot_notes: Sequence[str] = ()
) -> str:
    """The report as Markdown: settings, definitions (each once, as ``report.json`` states them),
    comparison across runs, one section per run, plots (``plot_notes``: why a plot is missing)."""
    settings, definitions, runs = report["settings"], report["definitions"], report["runs"]
    answer_names: list[str] = list(report.get("answer_metrics", ()))
    names: list[str] = [*report["aggregations"], *answer_names]
    train = set(settings["train_domains"])
    lines = ["# Evaluation report", ""]
    lines += [
        f"- run `{name}`: {run.get('source_file') or '(in memory)'}; judged by {_judges(run)}; "
        f"undecided answers: {run.get('undecided', 0)}; parse mode {_modes_of(run)}"
        for name, run in runs.items()
    ]
    policy = settings.get("undecided", "exclude")
    lines += [
        f"- parse mode of the metrics (which `<answer>` block counts): {_parse_modes(runs)}; "
        "unparseable rates under every mode are in the section below",
        f"- undecided answers (`--undecided`): `{policy}`",
        *([_undecided_caveat(policy)] if any(run.get("undecided") for run in runs.values()) else []),
        f"- training domain(s): {', '.join(sorted(train)) or 'none'}",
        f"- intervals: {settings['confidence']:.0%}, {settings['bootstrap_replicates']} bootstrap replicates, "
        f"seed {settings['seed']}",
        "",
        "## Metric definitions",
        "",
        f"- correct set: {', '.join(definitions['correct'])}",
        f"- specific set: {', '.join(definitions['specific'])}",
    ]
    headline = ("correctness", "specificity", "hm", "method_score")
    lines += [f"- **{key}** ({_title(key)}): {definitions[key]}" for key in headline if key in definitions]
    keys = ("undecided", "best_of_n", "ood_mean", "interval", "parse_mode", "unparseable_rate")
    lines += [f"- {key}: {definitions[key]}" for key in keys if key in definitions]
    if answer_names:
        lines += ["", "Open-world metrics (columns " + ", ".join(map(_title, answer_names)) + "):", ""]
        lines += [f"- **{name}** ({_title(name)}): {definitions[name]}" for name in answer_names]
        lines += [f"- scope: {definitions['answer_metrics']}"]
        lines += [f"- ran with: {_ran_with(settings.get('answer_metrics', {}))}"]
    lines += [""]

    lines += ["## Out-of-domain mean", ""]
    rows = []
    for name, run in runs.items():
        ood = run["ood_mean"]
        if ood is None:
            rows.append([f"`{name}`", "(no out-of-domain source)", *["-"] * len(names)])
            continue
        rows.append([f"`{name}`", ", ".join(ood["sources"]), *(_with_interval(ood, n) for n in names)])
    lines += _table(["run", "sources", *map(_title, names)], rows, align_right_from=2)

    sources = sorted({s for run in runs.values() for s in run["per_source"]})
    if len(runs) > 1:
        lines += ["## Side by side (correctness / specificity / HM)", ""]
        rows = []
        for source in sources:
            cells = []
            for run in runs.values():
                block = run["per_source"].get(source)
                cells.append("-" if block is None else " / ".join(_num(block[n]) for n in _CSH))
            label = f"{source} (training domain)" if source in train else source
            rows.append([label, *cells])
        rows.append(
            [
                "**out-of-domain mean**",
                *(
                    " / ".join(_num(run["ood_mean"][n]) for n in _CSH) if run["ood_mean"] else "-"
                    for run in runs.values()
                ),
            ]
        )
        lines += _table(["data source", *(f"`{n}`" for n in runs)], rows)

    lines += _unparseable_section(runs, train)

    for name, run in runs.items():
        lines += _run_section(name, run, names, train)

    if plots or plot_notes:
        lines += ["## Plots", ""]
        lines += [f"![{title}]({path})" for title, path in (plots or {}).items()]
        lines += [f"- {note}" for note in plot_notes]
        lines += [""]
    return "\n".join(lines)


_CSH = ("correctness", "specificity", "hm")


def _ran_with(described: Mapping[str, Any]) -> str:
    parts = [f"{key} `{value}`" for key, value in described.items() if key not in ("metrics", "inclusion_judge")]
    judge = described.get("inclusion_judge")
    if judge:
        parts.append(
            f"inclusion judge `{judge['model']}` at {', '.join(judge['endpoints'])}, prompt `{judge['prompt']}`, "
            f"failure policy `{judge['failure_policy']}`"
        )
    return "; ".join(parts) or "(nothing to configure)"


def _modes_of(run: Mapping[str, Any]) -> str:
    modes = run.get("parse_modes") or {}
    return ", ".join(f"`{mode}` ({count})" for mode, count in modes.items()) or "(not recorded)"


def _parse_modes(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """The one mode when every answer of every run used it, else each run's modes with their answer counts."""
    used = {mode for run in runs.values() for mode in run.get("parse_modes") or {}}
    if len(used) == 1:
        return f"`{used.pop()}`" + (" in every run" if len(runs) > 1 else "")
    return "; ".join(f"run `{name}`: {_modes_of(run)}" for name, run in runs.items())


def _rate(rates: Mapping[str, Any], mode: str) -> str:
    value = rates.get(mode)
    return "-" if value is None else f"{value:.1%} ({rates.get('counts', {}).get(mode, '?')})"


def _unparseable_section(runs: Mapping[str, Mapping[str, Any]], train: set[str]) -> list[str]:
    """Per run and source, the share of answers whose response gives no label under each parse mode."""
    lines = ["## Unparseable answers under each parse mode", ""]
    rows = []
    for name, run in runs.items():
        blocks = [(s, b.get("unparseable_rate") or {}) for s, b in run["per_source"].items()]
        overall = run.get("unparseable_rate") or {}
        for source, rates in [*blocks, ("**all sources**", overall)]:
            label = f"{source} (training domain)" if source in train else source
            rows.append([f"`{name}`", label, str(rates.get("answers", 0)), *(_rate(rates, m) for m in PARSE_MODES)])
    lines += _table(["run", "data source", "answers with a response", *(f"`{m}`" for m in PARSE_MODES)], rows, 2)
    if any(not (run.get("unparseable_rate") or {}).get("answers") for run in runs.values()):
        lines += [
            "A run without answers with a response has verdict rows that do not record the parse under each mode "
            "(judged before parse modes, or its predictions gave only the parsed `answer`); judge its predictions "
            "again with `speciarl eval judge` to get the rates.",
            "",
        ]
    return lines


def _judges(run: Mapping[str, Any]) -> str:
    """``offline (120), llm:model (8)``: the verdict rows' ``judge`` with their counts."""
    judges = run.get("judges") or {}
    return ", ".join(f"`{judge}` ({count})" for judge, count in judges.items()) or "(not recorded)"


def _undecided_caveat(policy: str) -> str:
    """Which way the metrics lean when some answers are undecided."""
    # The offline rule tier has rules for correct answers and abstentions, none for a wrong one,
    # so the answers it leaves undecided are mostly wrong ones.
    if policy == "exclude":
        lean = (
            "the offline rule tier has no rule for a wrong answer, so most undecided answers are wrong ones and "
            "correctness over the decided answers overstates the model (`--undecided wrong` gives the lower bound)"
        )
    else:
        lean = f"counted as `{policy}`, the ones that are right make the metrics understate the model"
    return f"- **some answers are undecided**: {lean}; judge them with `speciarl eval judge --judge llm` for the number"


def _run_section(name: str, run: Mapping[str, Any], names: Sequence[str], train: set[str]) -> list[str]:
    lines = [
        f"## Run `{name}`",
        "",
        f"Judged by {_judges(run)}. Category counts over all answers (`undecided`: no judge decided the answer), "
        "then the metrics (with intervals).",
        "",
    ]
    rows = []
    notes: list[str] = []
    for source, block in run["per_source"].items():
        label = f"{source} (training domain)" if source in train else source
        counts = [str(block["counts"].get(key, 0)) for key in HISTOGRAM_KEYS]
        rows.append([label, str(block["n"]), str(block["images"]), *counts, *(_with_interval(block, n) for n in names)])
        unscored = block.get("unscored")
        if unscored:
            notes.append(f"{source}: " + ", ".join(f"{n} {c}" for n, c in unscored.items()))
    ood = run["ood_mean"]
    if ood is not None:
        rows.append(
            ["**out-of-domain mean**", "", "", *[""] * len(HISTOGRAM_KEYS), *(_with_interval(ood, n) for n in names)]
        )
    lines += _table(["data source", "n", "images", *HISTOGRAM_KEYS, *map(_title, names)], rows)
    if notes:
        lines += ["Answers without a score (left out of that metric): " + "; ".join(notes) + ".", ""]

    bon_sources = {s: b["best_of_n"] for s, b in run["per_source"].items() if "best_of_n" in b}
    if bon_sources:
        ks = sorted({k for b in bon_sources.values() for k in b["k"]})
        lines += [
            f"### Best-of-N: correctness / specificity / HM of the best of k answers (`{name}`)",
            "",
            "In brackets: the images with k scored answers that a cell is over (out-of-domain mean: the sources "
            "with a value at k, and their images).",
            "",
        ]
        rows = []
        for source, bon in bon_sources.items():
            rows.append([source, *(_bon_cell(bon, k) for k in ks)])
        if ood is not None and "best_of_n" in ood:
            total = len(ood["sources"])
            rows.append(["**out-of-domain mean**", *(_bon_cell(ood["best_of_n"], k, total) for k in ks)])
        lines += _table(["data source", *(f"k={k}" for k in ks)], rows)
    return lines


def _bon_cell(bon: Mapping[str, Any], k: int, ood_sources: int | None = None) -> str:
    """``c / s / h (m images)``; ``n/a (0 images with k scored answers)`` where no image has k."""
    if k not in bon["k"]:
        return "-"
    i = bon["k"].index(k)
    images = bon.get("images", [None] * len(bon["k"]))[i]
    if bon["correctness"][i] is None:
        return f"n/a (0 images with {k} scored answers)"
    values = " / ".join(_num(bon[n][i]) for n in _CSH)
    if ood_sources is None:
        return values if images is None else f"{values} ({_images(images)})"
    return f"{values} ({len(bon['sources'][i])} of {ood_sources} sources, {_images(images)})"


def _images(count: int) -> str:
    return f"{count} image" + ("" if count == 1 else "s")
