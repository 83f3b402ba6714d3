"""``speciarl eval agree``: how far two judges agree on the same answers.

The two verdict files must hold the same answers: rows are matched on
``(sample_id, prediction_index)``, and a key found in one file only, or a matched row whose
``answer`` text or ``data_source`` differs, is refused naming ``file:line``. Agreement is
measured over the answers both judges decided: a row that is unparseable, or that either judge
left undecided, is no verdict to agree on; those are counted and left out. Over the six
categories: the confusion matrix (rows: judge A, columns: judge B), the share of identical
verdicts, Cohen's kappa (chance-corrected agreement), the same two figures per data source,
and the (A, B) pairs they disagree on most, with example answers.
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

from speciarl_verl.evaluation.metrics import SCORED_KEYS
from speciarl_verl.evaluation.records import UNDECIDED, UNPARSEABLE, VerdictRecord, load_verdicts
from speciarl_verl.jsonl_io import read_jsonl, write_atomically

__all__ = ["LABELS", "AgreementInputs", "compare_verdicts", "write_agreement"]

#: The verdicts agreement is measured over: the six categories (no undecided, no unparseable).
LABELS: tuple[str, ...] = tuple(key for key in SCORED_KEYS if key != UNPARSEABLE)


@dataclass(frozen=True)
class AgreementInputs:
    """Two named sets of verdicts to compare.

    ``where_a`` / ``where_b`` say where each verdict was read (``file:line``, in the order of the
    verdicts) for error messages; without them a verdict is named by its position.
    """

    name_a: str
    verdicts_a: Sequence[VerdictRecord]
    name_b: str
    verdicts_b: Sequence[VerdictRecord]
    where_a: Sequence[str] = ()
    where_b: Sequence[str] = ()

    @classmethod
    def from_files(cls, path_a: str | Path, path_b: str | Path, name_a: str, name_b: str) -> AgreementInputs:
        """Load both verdict files (validated as :func:`~speciarl_verl.evaluation.records.load_verdicts`
        does), remembering the line of every verdict."""
        return cls(name_a, load_verdicts(path_a), name_b, load_verdicts(path_b), _lines(path_a), _lines(path_b))

    def where(self, side: str, index: int) -> str:
        """Where verdict ``index`` of side ``"a"`` or ``"b"`` was read."""
        lines, name = (self.where_a, self.name_a) if side == "a" else (self.where_b, self.name_b)
        return lines[index] if index < len(lines) else f"{name}: verdict {index + 1}"


def _lines(path: str | Path) -> list[str]:
    """``file:line`` of every row of a JSONL file (the rows ``load_verdicts`` returns, in order)."""
    return [f"{path}:{number}" for number, _ in read_jsonl(path)]


def _label(verdict: VerdictRecord) -> str:
    return verdict.outcome


def _answer_pairs(inputs: AgreementInputs) -> list[tuple[VerdictRecord, VerdictRecord]]:
    """The (A, B) verdicts of every answer, in A's order; refuses files that do not hold the same answers."""
    index_b = {v.key: i for i, v in enumerate(inputs.verdicts_b)}
    pairs: list[tuple[VerdictRecord, VerdictRecord]] = []
    for i, verdict in enumerate(inputs.verdicts_a):
        j = index_b.get(verdict.key)
        what = f"sample {verdict.sample_id!r} answer {verdict.prediction_index}"
        if j is None:
            raise ValueError(
                f"{inputs.where('a', i)}: {what} has no verdict in {inputs.name_b}; "
                "the two files must judge the same answers"
            )
        other = inputs.verdicts_b[j]
        if other.data_source != verdict.data_source:
            raise ValueError(
                f"{inputs.where('b', j)}: {what} is {other.data_source!r} in {inputs.name_b} "
                f"but {verdict.data_source!r} in {inputs.name_a} ({inputs.where('a', i)})"
            )
        if other.answer != verdict.answer:
            raise ValueError(
                f"{inputs.where('b', j)}: {what} reads {other.answer!r} in {inputs.name_b} "
                f"but {verdict.answer!r} in {inputs.name_a} ({inputs.where('a', i)}); "
                "the two judges must have judged the same answer text"
            )
        pairs.append((verdict, other))
    if len(pairs) != len(inputs.verdicts_b):
        keys_a = {v.key for v in inputs.verdicts_a}
        j, extra = next((j, v) for j, v in enumerate(inputs.verdicts_b) if v.key not in keys_a)
        raise ValueError(
            f"{inputs.where('b', j)}: sample {extra.sample_id!r} answer {extra.prediction_index} has no verdict "
            f"in {inputs.name_a}; the two files must judge the same answers"
        )
    return pairs


def _kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa; ``None`` when it is undefined (both judges use one and the same label only)."""
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return None  # chance agreement is 1: kappa is 0 / 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns (and returns nan) on the same degenerate input
        value = float(cohen_kappa_score(a, b, labels=list(LABELS)))
    return None if math.isnan(value) else value


def compare_verdicts(inputs: AgreementInputs, top: int = 10, examples: int = 3) -> dict[str, Any]:
    """The agreement report as a JSON-ready dict.

    ``matched`` answers are in both files; ``compared`` of them were decided by both judges and
    make every figure; ``unparseable`` (no answer to judge) and ``undecided`` (parseable, left
    undecided by A, by B or by both: ``undecided_a`` / ``undecided_b``) are the ones left out.

    Raises ``ValueError`` (naming ``file:line``) when the files do not hold the same answers: a
    ``(sample_id, prediction_index)`` in one file only, or one answer with two different answer
    texts or data sources; and when no answer was decided by both judges.
    """
    from sklearn.metrics import confusion_matrix

    matched = _answer_pairs(inputs)
    if not matched:
        raise ValueError(f"{inputs.name_a} and {inputs.name_b} hold no verdict")
    unparseable = sum(UNPARSEABLE in (_label(a), _label(b)) for a, b in matched)
    undecided_a = sum(_label(a) == UNDECIDED and _label(b) != UNPARSEABLE for a, b in matched)
    undecided_b = sum(_label(b) == UNDECIDED and _label(a) != UNPARSEABLE for a, b in matched)
    pairs = [(a, b) for a, b in matched if _label(a) in LABELS and _label(b) in LABELS]
    if not pairs:
        raise ValueError(
            f"{inputs.name_a} and {inputs.name_b} share no answer both judges decided "
            f"({len(matched)} answers: {unparseable} unparseable, {len(matched) - unparseable} left undecided)"
        )
    labels_a = [_label(a) for a, _ in pairs]
    labels_b = [_label(b) for _, b in pairs]
    matrix = confusion_matrix(labels_a, labels_b, labels=list(LABELS))

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
        "matched": len(matched),
        "compared": len(pairs),
        "unparseable": unparseable,
        "undecided": len(matched) - unparseable - len(pairs),
        "undecided_a": undecided_a,
        "undecided_b": undecided_b,
        "labels": list(LABELS),
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
        f"- answers in both files: {result['matched']}; compared (decided by both judges): {result['compared']}",
        f"- left out: {result['unparseable']} unparseable, {result['undecided']} undecided "
        f"(by A: {result['undecided_a']}, by B: {result['undecided_b']})",
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
        lines += ["None: the two judges agree on every compared answer.", ""]
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
