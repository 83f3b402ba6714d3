"""``speciarl eval agree``: how far two judges agree on the same answers.

Rows are matched on ``(sample_id, prediction_index)``; answers present in only
one file are counted and left out. Over the six categories plus
``undecided`` and ``unparseable``: the confusion matrix (rows: judge A, columns: judge B), the
share of identical verdicts, Cohen's kappa (chance-corrected agreement), the
same two figures per data source, and the (A, B) pairs they disagree on most,
with example answers.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speciarl_verl.evaluation.metrics import HISTOGRAM_KEYS
from speciarl_verl.evaluation.records import VerdictRecord
from speciarl_verl.jsonl_io import write_atomically

__all__ = ["AgreementInputs", "compare_verdicts", "write_agreement"]


@dataclass(frozen=True)
class AgreementInputs:
    """Two named sets of verdicts to compare."""

    name_a: str
    verdicts_a: Sequence[VerdictRecord]
    name_b: str
    verdicts_b: Sequence[VerdictRecord]


def _label(verdict: VerdictRecord) -> str:
    return verdict.outcome


def _kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa; ``None`` when it is undefined (both judges use one and the same label only)."""
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return None  # chance agreement is 1: kappa is 0 / 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns (and returns nan) on the same degenerate input
        value = float(cohen_kappa_score(a, b, labels=list(HISTOGRAM_KEYS)))
    return None if math.isnan(value) else value


def compare_verdicts(inputs: AgreementInputs, top: int = 10, examples: int = 3) -> dict[str, Any]:
    """The agreement report as a JSON-ready dict.

    Raises ``ValueError`` when the two files share no answer, or give one answer
    two different data sources.
    """
    from sklearn.metrics import confusion_matrix

    by_key_b = {v.key: v for v in inputs.verdicts_b}
    pairs: list[tuple[VerdictRecord, VerdictRecord]] = []
    for verdict in inputs.verdicts_a:
        other = by_key_b.get(verdict.key)
        if other is None:
            continue
        if other.data_source != verdict.data_source:
            raise ValueError(
                f"sample {verdict.sample_id!r} answer {verdict.prediction_index} is {verdict.data_source!r} "
                f"in {inputs.name_a} but {other.data_source!r} in {inputs.name_b}"
            )
        pairs.append((verdict, other))
    if not pairs:
        raise ValueError(f"{inputs.name_a} and {inputs.name_b} share no (sample_id, prediction_index)")
    labels_a = [_label(a) for a, _ in pairs]
    labels_b = [_label(b) for _, b in pairs]
    matrix = confusion_matrix(labels_a, labels_b, labels=list(HISTOGRAM_KEYS))

    disagreements: Counter[tuple[str, str]] = Counter()
    shown: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (a, b), la, lb in zip(pairs, labels_a, labels_b, strict=True):
        if la == lb:
            continue
        disagreements[(la, lb)] += 1
        if len(shown[(la, lb)]) < examples:
            shown[(la, lb)].append(
                {"sample_id": a.sample_id, "ground_truth": a.ground_truth or b.ground_truth, "answer": a.answer}
            )

    per_source: dict[str, dict[str, Any]] = {}
    grouped: dict[str, list[int]] = defaultdict(list)
    for i, (a, _) in enumerate(pairs):
        grouped[a.data_source].append(i)
    for source in sorted(grouped):
        idx = grouped[source]
        sa, sb = [labels_a[i] for i in idx], [labels_b[i] for i in idx]
        per_source[source] = {
            "n": len(idx),
            "agreement": sum(x == y for x, y in zip(sa, sb, strict=True)) / len(idx),
            "kappa": _kappa(sa, sb),
        }
    return {
        "a": inputs.name_a,
        "b": inputs.name_b,
        "matched": len(pairs),
        "only_in_a": len(inputs.verdicts_a) - len(pairs),
        "only_in_b": len(inputs.verdicts_b) - len(pairs),
        "labels": list(HISTOGRAM_KEYS),
        "confusion": matrix.tolist(),
        "agreement": sum(x == y for x, y in zip(labels_a, labels_b, strict=True)) / len(pairs),
        "kappa": _kappa(labels_a, labels_b),
        "per_source": per_source,
        "top_disagreements": [
            {"a": la, "b": lb, "count": count, "examples": shown[(la, lb)]}
            for (la, lb), count in sorted(disagreements.items(), key=lambda item: (-item[1], item[0]))[:top]
        ],
    }


def _markdown(result: dict[str, Any], heatmap: str | None) -> str:
    def kappa(value: float | None) -> str:
        return "undefined (one label only)" if value is None else f"{value:.3f}"

    a, b = result["a"], result["b"]
    lines = [
        f"# Judge agreement: `{a}` vs `{b}`",
        "",
        f"- matched answers: {result['matched']} (only in A: {result['only_in_a']}, only in B: {result['only_in_b']})",
        f"- identical verdicts: {result['agreement']:.3f}",
        f"- Cohen's kappa: {kappa(result['kappa'])}",
        "",
        "## Confusion matrix (rows: A, columns: B)",
        "",
        "| A \\ B | " + " | ".join(result["labels"]) + " |",
        "| --- | " + " | ".join("---:" for _ in result["labels"]) + " |",
    ]
    for label, row in zip(result["labels"], result["confusion"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(x) for x in row) + " |")
    lines += ["", "## Per data source", "", "| data source | n | identical | kappa |", "| --- | ---: | ---: | ---: |"]
    for source, block in result["per_source"].items():
        lines.append(f"| {source} | {block['n']} | {block['agreement']:.3f} | {kappa(block['kappa'])} |")
    lines += ["", "## Most frequent disagreements", ""]
    if not result["top_disagreements"]:
        lines += ["None: the two judges agree on every matched answer.", ""]
    else:
        lines += ["| A says | B says | count | examples (ground truth -> answer) |", "| --- | --- | ---: | --- |"]
        for item in result["top_disagreements"]:
            shown = "; ".join(f"{e['ground_truth']} -> {e['answer']}" for e in item["examples"])
            lines.append(f"| {item['a']} | {item['b']} | {item['count']} | {shown} |")
        lines.append("")
    if heatmap:
        lines += [f"![confusion heat map]({heatmap})", ""]
    return "\n".join(lines)


def write_agreement(result: dict[str, Any], out_dir: str | Path, plot: bool = True) -> dict[str, Path]:
    """Write ``agreement.json``, ``agreement.md`` and ``agreement_heatmap.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    if plot:
        from speciarl_verl.evaluation.plots import heatmap_png

        png = heatmap_png(result["confusion"], result["labels"], x_name=result["b"], y_name=result["a"])
        written["heatmap"] = write_atomically(out_dir / "agreement_heatmap.png", png)
    written["json"] = write_atomically(out_dir / "agreement.json", json.dumps(result, indent=2) + "\n")
    heatmap = written["heatmap"].name if plot else None
    written["markdown"] = write_atomically(out_dir / "agreement.md", _markdown(result, heatmap))
    return written
