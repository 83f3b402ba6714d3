"""``speciarl eval judge``: verdicts for a predictions file, resumable.

The judge is the shipped evaluation judge (:data:`EVAL_JUDGE_CONFIG`: every pair to the method's
Meta-Llama-3-70B-Instruct served by vLLM) unless the caller passes other settings. Answers that
could not be parsed get ``category: null, reason: "unparseable"`` without a judge call. With
``kind: offline`` a pair the rule tier has no rule for is written as it is, undecided
(``category: null, source: "offline", reason: "undecided"``, as ``speciarl verify`` writes it),
never as a guessed category; the report counts such answers apart.

Responses are parsed in ``parse_mode`` (``first``, the method's reading, or ``strict``; see
:mod:`speciarl_verl.core.answer_parsing`). Each verdict row records the mode that produced its
answer and whether the raw response parses under each mode, so the report can give the
unparseable rate under both.

The work is the file-judging pipeline of :mod:`speciarl_verl.judge.file_judging` (the one
``speciarl verify`` runs) on this row format (:class:`PredictionRows`): the parsed answers go to
the verifier in batches; each finished batch is appended to the verdicts file and flushed, so an
interrupted run loses at most the batch in flight. When the judge fails, the verdicts it reached are
written before the run stops.

Running again skips every ``(sample_id, prediction_index)`` already in the verdicts file, once its
row is checked against the predictions file and this run's judge: the same ``data_source``, parse
mode, ``ground_truth`` and answer, the same class fields (the row keeps a digest of ``parents``,
``parent_levels``, ``synonyms`` and ``domain_nouns``, ``class_digest``, not the fields), the same
judge name and the same ``judge_fingerprint``. A row that differs (say, the predictions of a new
checkpoint under the old file name), or that has no fingerprint (a file of an older version), is
refused with one line naming ``verdicts file:line`` and what differs; judge into a new ``--out``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode
from speciarl_verl.evaluation.records import (
    UNDECIDED,
    UNPARSEABLE,
    UNPARSEABLE_SOURCE,
    PredictionRecord,
    VerdictRecord,
    load_predictions,
)
from speciarl_verl.judge.file_judging import Outcome, RowFormat, difference, file_judge_settings, judge_file
from speciarl_verl.judge.settings import JudgeSettings
from speciarl_verl.judge.verifier import VerificationRequest, Verifier

__all__ = [
    "EVAL_JUDGE_CONFIG",
    "JudgeRunSummary",
    "PredictionRows",
    "default_judge_settings",
    "judge_name",
    "judge_predictions",
    "verification_request",
]

#: The shipped evaluation-judge settings (package data of :mod:`speciarl_verl.evaluation`).
EVAL_JUDGE_CONFIG = "eval_judge_llama3_70b.yaml"


@dataclass(frozen=True)
class JudgeRunSummary:
    """What one ``judge`` call did: ``undecided`` counts the answers of this call left undecided."""

    predictions: int
    already_judged: int
    judged: int
    unparseable: int
    undecided: int = 0
    judge: str | None = None
    verdict_sources: Mapping[str, int] = field(default_factory=dict)
    parse_mode: ParseMode = "first"


def default_judge_settings() -> dict[str, Any]:
    """The shipped evaluation judge as a ``JudgeSettings`` mapping.

    >>> default_judge_settings()["llm"]["model"]
    'meta-llama/Meta-Llama-3-70B-Instruct'
    """
    from importlib import resources

    import yaml

    text = resources.files("speciarl_verl.evaluation").joinpath(EVAL_JUDGE_CONFIG).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def verification_request(prediction: PredictionRecord) -> VerificationRequest:
    """The judge request for a parsed answer (the class's parents, their levels, domain nouns and synonyms
    carried through)."""
    if prediction.answer is None:
        raise ValueError(f"sample {prediction.sample_id!r} answer {prediction.prediction_index} was not parsed")
    return VerificationRequest(
        ground_truth=prediction.ground_truth,
        prediction=prediction.answer,
        data_source=prediction.data_source,
        parents=prediction.parents,
        synonyms=prediction.synonyms,
        parent_levels=prediction.parent_levels,
        domain_nouns=prediction.domain_nouns,
    )


def judge_name(settings: JudgeSettings) -> str:
    """A short name for the judge configuration, stored in each verdict row: ``kind``, plus the
    LLM model when one judges (``llm.model``).

    >>> judge_name(JudgeSettings.from_mapping({"kind": "llm", "llm": {"model": "Llama-3.3-70B-Instruct"}}))
    'llm:Llama-3.3-70B-Instruct'
    >>> judge_name(JudgeSettings.from_mapping({"kind": "offline", "llm": {"model": "Llama-3.3-70B-Instruct"}}))
    'offline'
    """
    model = settings.llm.model
    return f"{settings.kind}:{model}" if model and settings.kind != "offline" else settings.kind


class PredictionRows(RowFormat[PredictionRecord]):
    """``speciarl eval judge``'s rows: predictions in, :class:`VerdictRecord` rows out, each known by
    ``(sample_id, prediction_index)``; an unparseable answer gets its row without a judge call."""

    def __init__(
        self, predictions_path: Path, predictions: list[PredictionRecord], judge: str, parse_mode: ParseMode
    ) -> None:
        self.input_path = predictions_path
        self.items = predictions
        self.judge = judge
        self.parse_mode = parse_mode

    def key(self, item: PredictionRecord) -> Hashable:
        return item.key

    def describe(self, key: Hashable) -> str:
        sample_id, index = key  # type: ignore[misc]  # keys are (sample_id, prediction_index)
        return f"sample {sample_id!r} answer {index}"

    def request(self, item: PredictionRecord) -> VerificationRequest | Outcome:
        if item.answer is None:
            return Outcome(None, UNPARSEABLE_SOURCE, UNPARSEABLE)
        return verification_request(item)

    def output_row(self, item: PredictionRecord, outcome: Outcome) -> dict[str, Any]:
        return VerdictRecord(
            sample_id=item.sample_id,
            data_source=item.data_source,
            prediction_index=item.prediction_index,
            category=outcome.category,
            source=outcome.source,
            ground_truth=item.ground_truth,
            answer=item.answer,
            judge=self.judge,
            reason=outcome.reason,
            parse_mode=item.parse_mode,
            parseable=item.parseable,
            class_digest=item.class_digest,
        ).to_json()

    def out_key(self, row: Any, where: str, position: int) -> Hashable:
        return VerdictRecord.from_json(row, where).key

    def mismatch(self, item: PredictionRecord, row: Any, out_name: str) -> str | None:
        described = self.describe(item.key)
        if row["data_source"] != item.data_source:
            return (
                f"{described} is from {row['data_source']!r} here and from {item.data_source!r} in "
                f"{self.input_path}: these are the verdicts of another predictions file"
            )
        mode = row.get("parse_mode")
        if mode not in (None, self.parse_mode):  # first: another mode also changes the answer
            return (
                f"{described} was parsed with parse mode {mode!r}, this run asks for {self.parse_mode!r} (one "
                f"verdicts file holds one mode: pass --parse-mode {mode} to resume it)"
            )
        ours = self.input_path.name
        for name, value in (("ground truth", item.ground_truth), ("answer", item.answer)):
            judged = row.get(name.replace(" ", "_"))
            if judged != value:
                return f"{described}: {difference(name, value, judged, ours, out_name)}"
        if row.get("class_digest") != item.class_digest:
            return (
                f"{described}: the class fields (parents, parent levels, synonyms, domain nouns) in {ours} differ "
                f"from those its verdict in {out_name} was judged with"
            )
        if row.get("judge") not in (None, self.judge):
            return f"{described} was judged by {row['judge']!r}, this run's judge is {self.judge!r}"
        return None


def judge_predictions(
    predictions_path: str | Path,
    out_path: str | Path,
    judge_settings: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 256,
    verifier: Verifier | None = None,
    progress: bool = True,
    parse_mode: ParseMode = "first",
) -> JudgeRunSummary:
    """Judge every answer of ``predictions_path`` not yet in ``out_path``; append the verdicts.

    ``judge_settings`` is handed to ``JudgeSettings.from_mapping`` (``None``: the shipped
    evaluation judge, :func:`default_judge_settings`; a mapping without ``kind`` means ``llm``);
    ``verifier`` replaces the verifier it would build (and is left open); ``parse_mode`` is how
    responses become answers (see :func:`~speciarl_verl.evaluation.records.load_predictions`).
    Refuses (``ValueError``) ``deferred_outcome`` (the evaluation never files an undecided pair under
    a category; the report decides how to count it), a verdicts file that holds answers the
    predictions do not, and one whose verdicts do not match this run (another answer, ground truth,
    class fields, parse mode or judge; no judge fingerprint: see the module). A judge that fails raises
    :class:`~speciarl_verl.judge.file_judging.JudgingStopped` once the verdicts it reached are written.

    Example: ``judge_predictions("preds.jsonl", "verdicts.jsonl", {"kind": "offline"})``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if parse_mode not in PARSE_MODES:
        raise ValueError(f"unknown parse mode {parse_mode!r}; choose one of {', '.join(PARSE_MODES)}")
    mapping = default_judge_settings() if judge_settings is None else dict(judge_settings)
    mapping.setdefault("kind", "llm")
    settings = file_judge_settings(mapping)
    name = judge_name(settings)
    rows = PredictionRows(Path(predictions_path), load_predictions(predictions_path, parse_mode), name, parse_mode)
    run = judge_file(
        rows, Path(out_path), settings=settings, verifier=verifier, chunk_size=batch_size, progress=progress
    )
    summary = asyncio.run(run)  # one event loop for every batch: an LLM judge keeps a client bound to it
    by_outcome = dict(summary.by_outcome)
    return JudgeRunSummary(
        predictions=summary.rows,
        already_judged=summary.resumed,
        judged=summary.written,
        unparseable=by_outcome.pop(UNPARSEABLE, 0),
        undecided=by_outcome.pop(UNDECIDED, 0),
        judge=name if summary.written else None,
        verdict_sources=by_outcome,
        parse_mode=parse_mode,
    )
