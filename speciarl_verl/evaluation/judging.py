"""``speciarl eval judge``: verdicts for a predictions file, resumable.

The judge is the shipped evaluation judge (:data:`EVAL_JUDGE_CONFIG`: every pair to a
Llama-3.3-70B-Instruct served by vLLM) unless the caller passes other settings. Answers that
could not be parsed get ``category: null, reason: "unparseable"`` without a judge call. With
``kind: offline`` a pair the rule tier has no rule for is written as it is, undecided
(``category: null, source: "offline", reason: "undecided"``, as ``speciarl verify`` writes it),
never as a guessed category; the report counts such answers apart.

Responses are parsed in ``parse_mode`` (``first``, the method's reading, or ``strict``; see
:mod:`speciarl_verl.core.answer_parsing`). Each verdict row records the mode that produced its
answer and whether the raw response parses under each mode, so the report can give the
unparseable rate under both.

The parsed answers go to the verifier in batches; each finished batch is appended to the
verdicts file and flushed, so an interrupted run loses at most the batch in flight. Running
again skips every ``(sample_id, prediction_index)`` already in the verdicts file.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode
from speciarl_verl.evaluation.records import (
    DEFERRED_SOURCE,
    UNDECIDED,
    UNPARSEABLE,
    UNPARSEABLE_SOURCE,
    PredictionRecord,
    VerdictRecord,
    load_predictions,
    load_verdicts,
)
from speciarl_verl.jsonl_io import JsonlAppender, drop_torn_tail
from speciarl_verl.judge.verifier import VerificationRequest, Verifier

__all__ = [
    "EVAL_JUDGE_CONFIG",
    "JudgeRunSummary",
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
    'meta-llama/Llama-3.3-70B-Instruct'
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


def judge_name(settings: Mapping[str, Any]) -> str:
    """A short name for the judge configuration, stored in each verdict row: ``kind``, plus the
    LLM model when one is named (``llm.model``).

    >>> judge_name({"kind": "llm", "llm": {"model": "Llama-3.3-70B-Instruct"}}), judge_name({})
    ('llm:Llama-3.3-70B-Instruct', 'offline')
    """
    kind = str(settings.get("kind", "offline"))
    llm = settings.get("llm")
    model = llm.get("model") if isinstance(llm, Mapping) else None
    return f"{kind}:{model}" if model and kind != "offline" else kind


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
    ``verifier`` replaces the verifier it would build; ``parse_mode`` is how responses become
    answers (see :func:`~speciarl_verl.evaluation.records.load_predictions`). Refuses
    ``deferred_outcome`` (the evaluation never files an undecided pair under a category; the report
    decides how to count it), a verdicts file that holds answers the predictions do not, and one
    whose verdicts were parsed in another mode.

    Example: ``judge_predictions("preds.jsonl", "verdicts.jsonl", {"kind": "offline"})``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if parse_mode not in PARSE_MODES:
        raise ValueError(f"unknown parse mode {parse_mode!r}; choose one of {', '.join(PARSE_MODES)}")
    settings = default_judge_settings() if judge_settings is None else dict(judge_settings)
    settings.setdefault("kind", "llm")
    if "deferred_outcome" in settings:
        raise ValueError(
            f"judge setting deferred_outcome={settings['deferred_outcome']!r} does not apply to evaluation: "
            "undecided pairs are written as undecided; drop it, and choose how the report counts them with "
            "`speciarl eval report --undecided exclude|wrong|<category>`"
        )
    predictions = load_predictions(predictions_path, parse_mode)
    known = {p.key: p for p in predictions}
    out_path = Path(out_path)
    done: set[tuple[str, int]] = set()
    if out_path.exists():
        drop_torn_tail(out_path)
        for verdict in load_verdicts(out_path):
            prediction = known.get(verdict.key)
            if prediction is None or prediction.data_source != verdict.data_source:
                raise ValueError(
                    f"{out_path}: holds a verdict for sample {verdict.sample_id!r} answer "
                    f"{verdict.prediction_index} ({verdict.data_source}) that {predictions_path} does not have; "
                    "is it the verdicts file of another predictions file?"
                )
            if verdict.parse_mode not in (None, parse_mode):
                raise ValueError(
                    f"{out_path}: sample {verdict.sample_id!r} answer {verdict.prediction_index} was parsed with "
                    f"parse mode {verdict.parse_mode!r}, this run asks for {parse_mode!r}; one verdicts file holds "
                    "one mode: pass the same --parse-mode to resume, or write to another --out"
                )
            done.add(verdict.key)
    pending = [p for p in predictions if p.key not in done]
    sources: Counter[str] = Counter()
    name = judge_name(settings)
    if pending:
        owned = verifier is None
        if owned:
            from speciarl_verl.judge.settings import JudgeSettings

            built = JudgeSettings.from_mapping(settings)
            name = judge_name({"kind": built.kind, "llm": {"model": built.llm.model}})
            if built.kind != "offline":
                built.llm.api_key()  # an api_key_env naming an unset variable fails before any work
            verifier = built.build_verifier()
        run = _judge_all(pending, verifier, out_path, batch_size, name, sources, progress, owned)
        asyncio.run(run)
    return JudgeRunSummary(
        predictions=len(predictions),
        already_judged=len(done),
        judged=len(pending),
        unparseable=sources.pop(UNPARSEABLE, 0),
        undecided=sources.pop(UNDECIDED, 0),
        judge=name if pending else None,
        verdict_sources=dict(sources),
        parse_mode=parse_mode,
    )


async def _judge_all(
    pending: Sequence[PredictionRecord],
    verifier: Verifier,
    out_path: Path,
    batch_size: int,
    judge: str,
    sources: Counter[str],
    progress: bool,
    close_verifier: bool,
) -> None:
    from tqdm.auto import tqdm

    # One event loop for every batch: an LLM judge may keep a client bound to it.
    try:
        with (
            JsonlAppender(out_path) as sink,
            tqdm(total=len(pending), desc="judging", unit="answer", disable=not progress or None) as bar,
        ):
            for start in range(0, len(pending), batch_size):
                batch = pending[start : start + batch_size]
                verdicts, failure = await _judge_batch(batch, verifier, judge)
                sink.write_many(v.to_json() for v in verdicts)
                sink.flush()
                sources.update(v.reason or str(v.source) for v in verdicts)
                bar.update(len(verdicts))
                if failure is not None:
                    raise failure
    finally:
        if close_verifier:
            await _close(verifier)


async def _judge_batch(
    batch: Sequence[PredictionRecord], verifier: Verifier, judge: str
) -> tuple[list[VerdictRecord], Exception | None]:
    """Verdicts for ``batch``, and the judge's error if part of it failed.

    A judge error that carries per-request results (``error.verdicts``, ``None``
    where a request failed, as the LLM judge's ``JudgeError`` does) still yields
    the verdicts that were reached; the failed answers are left for the next run.
    A ``deferred`` verdict (the rule tier had no rule; its category is the training
    placeholder) becomes an undecided row.
    """
    parsed = [p for p in batch if p.answer is not None]
    failure: Exception | None = None
    try:
        answers = await verifier.verify([verification_request(p) for p in parsed]) if parsed else []
    except Exception as error:
        partial = getattr(error, "verdicts", None)
        if partial is None or len(partial) != len(parsed):
            raise
        answers, failure = list(partial), error
    if len(answers) != len(parsed):
        raise RuntimeError(f"the verifier returned {len(answers)} verdicts for {len(parsed)} requests")
    by_key = {p.key: v for p, v in zip(parsed, answers, strict=True) if v is not None}
    out = []
    for prediction in batch:
        verdict = by_key.get(prediction.key)
        if prediction.answer is not None and verdict is None:
            continue  # the judge failed on it; a later run picks it up
        if verdict is None:
            category, source, reason = None, UNPARSEABLE_SOURCE, UNPARSEABLE
        elif verdict.source == DEFERRED_SOURCE:
            category, source, reason = None, "offline", UNDECIDED
        else:
            category, source, reason = verdict.category, verdict.source, None
        out.append(
            VerdictRecord(
                sample_id=prediction.sample_id,
                data_source=prediction.data_source,
                prediction_index=prediction.prediction_index,
                category=category,
                source=source,
                ground_truth=prediction.ground_truth,
                answer=prediction.answer,
                judge=judge,
                reason=reason,
                parse_mode=prediction.parse_mode,
                parseable=prediction.parseable,
            )
        )
    return out, failure


async def _close(verifier: Verifier) -> None:
    """Close the verifier's clients if it has any (``aclose`` or ``close``, sync or async)."""
    for name in ("aclose", "close"):
        method = getattr(verifier, name, None)
        if callable(method):
            result = method()
            if inspect.isawaitable(result):
                await result
            return
