"""The two row types the evaluator passes between its stages, and their validating readers.

Predictions JSONL (``speciarl eval predict`` writes it; any other tool may too), one row per answer:

==================  ========================================================  ========
key                 value                                                     required
==================  ========================================================  ========
``sample_id``       id of the image, unique within the evaluation             yes
``data_source``     benchmark key, e.g. ``"fgvc_aircraft"``                   yes
``ground_truth``    the class label                                           yes
``prediction_index``  0-based index of this answer among the image's answers  yes
``response``        raw model output                                          one of
``answer``          parsed label, ``null`` when unparseable                   the two
``parents``         coarser names of the class, nearest first (strings)       no
``parent_levels``   ``"close"``/``"far"`` per parent (absent: all far)        no
``domain_nouns``    words for the class's whole domain (strings)              no
``synonyms``        other accepted names of the class (list of strings)       no
``parse_mode``      the parse mode that produced ``answer`` (``first``/``strict``)  no
``max_answer_words``  the word cap ``answer`` was parsed with (``null``: none)  no
==================  ========================================================  ========

The four class fields are the dataset row's ``extra_info`` fields of the same names; the
judge's rule tier reads them (see :class:`~speciarl_verl.judge.verifier.VerificationRequest`).

The reader is given a parse mode (``speciarl eval judge --parse-mode``, default ``first``). When
``answer`` is absent it is parsed from ``response`` with
:func:`~speciarl_verl.core.answer_parsing.parse_answer` in that mode; when the row says its
``answer`` was parsed in another mode (``speciarl eval predict`` writes ``parse_mode``), it is parsed
again from ``response`` in the asked mode, with the row's ``max_answer_words``; otherwise ``answer``
is used as given. With a ``response``, the record also knows whether it parses under each mode
(the report's unparseable rate under both).

Verdicts JSONL (``speciarl eval judge`` writes it), one row per answer: ``data_source``,
``sample_id``, ``prediction_index``, ``category`` (a wire label, or ``null``) are required;
``source``, ``ground_truth``, ``answer``, ``judge``, ``reason``, ``parse_mode`` (the mode that produced
``answer``; ``null`` when the predictions file gave it), ``parseable`` (whether the raw response
parses under each mode, e.g. ``{"first": true, "strict": false}``; absent without a response),
``class_digest`` (:attr:`PredictionRecord.class_digest` of the answer's class fields) and
``judge_fingerprint`` (which judge settings made the verdict, see
:func:`~speciarl_verl.judge.file_judging.settings_fingerprint`) are kept when present. The last two
let ``speciarl eval judge`` check a resumed file; readers do not need them (older files lack them).
A ``null`` category comes with a ``reason`` (``speciarl verify`` writes the same field and word
for the pairs its offline tier leaves undecided):

* ``"undecided"``: the offline rule tier has no rule for the pair (``source: "offline"``);
  nobody judged it, so the report counts it apart (see :mod:`.report`);
* ``"unparseable"``: the model's output had no answer to judge (``source: "unparseable"``).

A null category without a reason reads as unparseable (files written before ``reason``
existed); a row whose ``source`` is ``"deferred"`` (an older offline run that filed undecided
pairs under a placeholder category) reads as undecided whatever its category says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode, parse_answer
from speciarl_verl.core.categories import Category
from speciarl_verl.jsonl_io import read_jsonl
from speciarl_verl.judge.file_judging import DEFERRED_SOURCE, UNDECIDED
from speciarl_verl.judge.verifier import PARENT_LEVELS, ParentLevel

__all__ = [
    "DEFERRED_SOURCE",
    "UNDECIDED",
    "UNPARSEABLE",
    "UNPARSEABLE_SOURCE",
    "PredictionRecord",
    "VerdictRecord",
    "load_predictions",
    "load_verdicts",
    "parseable_under_each_mode",
]

#: ``source`` of a verdict row whose answer could not be parsed (no judge saw it).
UNPARSEABLE_SOURCE = "unparseable"
#: ``reason`` of a row whose answer could not be parsed.
UNPARSEABLE = "unparseable"
_REASONS = (UNDECIDED, UNPARSEABLE)


def parseable_under_each_mode(response: str, max_words: int | None = None) -> dict[str, bool]:
    """Whether ``response`` gives a label under each parse mode.

    >>> parseable_under_each_mode("<answer>gull</answer><answer>tern</answer>")
    {'first': True, 'strict': False}
    """
    return {mode: parse_answer(response, max_words=max_words, mode=mode) is not None for mode in PARSE_MODES}


@dataclass(frozen=True)
class PredictionRecord:
    """One answer of a model to one image."""

    sample_id: str
    data_source: str
    ground_truth: str
    prediction_index: int
    answer: str | None
    response: str | None = None
    parents: tuple[str, ...] = field(default=())
    synonyms: tuple[str, ...] = field(default=())
    parent_levels: tuple[ParentLevel, ...] = field(default=())
    domain_nouns: tuple[str, ...] = field(default=())
    parse_mode: ParseMode | None = None
    parseable: dict[str, bool] | None = field(default=None, hash=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.sample_id, self.prediction_index)

    @property
    def class_digest(self) -> str:
        """16 hex digits of SHA-256 over the class fields the judge's rule tier reads (``parents``,
        ``parent_levels``, ``synonyms``, ``domain_nouns``), so a verdict row can tell whether they changed
        without holding them all. ``ground_truth`` and ``data_source`` are stored as they are.

        >>> a = PredictionRecord("a", "cub200", "Laysan Albatross", 0, "albatross", parents=("albatross",))
        >>> b = PredictionRecord("b", "cub200", "x", 1, None, parents=("albatross",))
        >>> len(a.class_digest), a.class_digest == b.class_digest
        (16, True)
        >>> a.class_digest == PredictionRecord("a", "cub200", "Laysan Albatross", 0, "albatross").class_digest
        False
        """
        fields = {
            "parents": self.parents,
            "parent_levels": self.parent_levels,
            "synonyms": self.synonyms,
            "domain_nouns": self.domain_nouns,
        }
        canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_json(cls, row: Any, where: str, parse_mode: ParseMode = "first") -> PredictionRecord:
        """Validate one parsed JSON row; errors start with ``where`` (``file:line``).

        ``parse_mode`` is how a ``response`` becomes ``answer`` (see the module docstring);
        ``parse_mode`` of the record is the mode that produced ``answer`` (``None``: given by the row).

        >>> r = PredictionRecord.from_json({"sample_id": "a", "data_source": "cub200", "ground_truth": "Sayornis",
        ...     "prediction_index": 0, "response": "<answer>phoebe</answer>"}, "f.jsonl:1")
        >>> r.answer, r.parse_mode, r.parseable
        ('phoebe', 'first', {'first': True, 'strict': True})
        """
        if parse_mode not in PARSE_MODES:
            raise ValueError(f"unknown parse mode {parse_mode!r}; choose one of {', '.join(PARSE_MODES)}")
        row = _require_object(row, where)
        values = {
            "sample_id": _require_text(row, "sample_id", where),
            "data_source": _require_text(row, "data_source", where),
            "ground_truth": _require_text(row, "ground_truth", where),
            "prediction_index": _require_index(row, where),
        }
        if "response" not in row and "answer" not in row:
            raise ValueError(f"{where}: needs 'response' (raw model output) or 'answer' (parsed label or null)")
        response = row.get("response")
        if response is not None and not isinstance(response, str):
            raise ValueError(f"{where}: 'response' must be a string, got {type(response).__name__}")
        max_words = _max_answer_words(row, where)
        answered_in = _row_parse_mode(row, where)
        used_mode: ParseMode | None = parse_mode
        if "answer" in row and (answered_in is None or answered_in == parse_mode):
            answer = row["answer"]
            if answer is not None and not isinstance(answer, str):
                raise ValueError(f"{where}: 'answer' must be a string or null, got {type(answer).__name__}")
            if answer is not None and not answer.strip():
                answer = None
            used_mode = answered_in
        elif response is not None:
            answer = parse_answer(response, max_words=max_words, mode=parse_mode)
        elif "answer" in row:
            raise ValueError(
                f"{where}: 'answer' was parsed with parse_mode {answered_in!r} and the row has no 'response' to "
                f"parse again with {parse_mode!r}; ask for --parse-mode {answered_in}"
            )
        else:
            answer = None  # a null response: nothing to parse under any mode
        return cls(
            **values,
            answer=answer,
            response=response,
            parse_mode=used_mode,
            parseable=None if response is None else parseable_under_each_mode(response, max_words),
            parents=_optional_names(row, "parents", where),
            synonyms=_optional_names(row, "synonyms", where),
            parent_levels=_parent_levels(row, where),
            domain_nouns=_optional_names(row, "domain_nouns", where),
        )


@dataclass(frozen=True)
class VerdictRecord:
    """The judge's category for one answer; ``None`` with ``reason`` saying why there is none."""

    sample_id: str
    data_source: str
    prediction_index: int
    category: Category | None
    source: str | None = None
    ground_truth: str | None = None
    answer: str | None = None
    judge: str | None = None
    reason: str | None = None
    parse_mode: ParseMode | None = None
    parseable: dict[str, bool] | None = field(default=None, hash=False)
    class_digest: str | None = None
    judge_fingerprint: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.sample_id, self.prediction_index)

    @property
    def outcome(self) -> str:
        """What the report counts: the category's wire label, ``"undecided"`` or ``"unparseable"``.

        >>> VerdictRecord("a", "cub200", 0, Category.WRONG, source="deferred").outcome
        'undecided'
        """
        if self.reason == UNDECIDED or self.source == DEFERRED_SOURCE:
            return UNDECIDED
        return UNPARSEABLE if self.category is None else self.category.value

    def to_json(self) -> dict[str, Any]:
        row = {
            "sample_id": self.sample_id,
            "data_source": self.data_source,
            "prediction_index": self.prediction_index,
            "ground_truth": self.ground_truth,
            "answer": self.answer,
            "category": None if self.category is None else self.category.value,
            "source": self.source,
            "judge": self.judge,
        }
        if self.reason is not None:  # as ``speciarl verify``: only rows without a category have one
            row["reason"] = self.reason
        row["parse_mode"] = self.parse_mode
        if self.parseable is not None:
            row["parseable"] = dict(self.parseable)
        for key in ("class_digest", "judge_fingerprint"):  # written by newer runs only
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        return row

    @classmethod
    def from_json(cls, row: Any, where: str) -> VerdictRecord:
        """Validate one parsed JSON row; errors start with ``where`` (``file:line``).

        >>> VerdictRecord.from_json({"sample_id": "a", "data_source": "cub200", "prediction_index": 0,
        ...     "category": "less specific"}, "v.jsonl:3").category
        <Category.LESS_SPECIFIC: 'less specific'>
        """
        row = _require_object(row, where)
        if "category" not in row:
            raise ValueError(f"{where}: missing key 'category' (a wire label, or null with a 'reason')")
        raw = row["category"]
        try:
            category = None if raw is None else Category.coerce(raw)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        optional = {}
        for key in ("source", "ground_truth", "answer", "judge", "reason", "class_digest", "judge_fingerprint"):
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: {key!r} must be a string or null, got {type(value).__name__}")
            optional[key] = value
        reason = optional["reason"]
        if reason is not None and (category is not None or reason not in _REASONS):
            raise ValueError(
                f"{where}: 'reason' {reason!r} is only for a null category and must be one of {list(_REASONS)}"
            )
        return cls(
            sample_id=_require_text(row, "sample_id", where),
            data_source=_require_text(row, "data_source", where),
            prediction_index=_require_index(row, where),
            category=category,
            **optional,
            parse_mode=_row_parse_mode(row, where),
            parseable=_parseable(row, where),
        )


def load_predictions(path: str | Path, parse_mode: ParseMode = "first") -> list[PredictionRecord]:
    """Read and validate a predictions JSONL file, parsing responses in ``parse_mode``.

    Also refuses a repeated ``(sample_id, prediction_index)`` and a sample whose
    rows disagree on ``data_source`` or ``ground_truth``; errors name ``file:line``.
    """
    records: list[PredictionRecord] = []
    seen: dict[tuple[str, int], int] = {}
    sample_facts: dict[str, tuple[str, str, int]] = {}
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        record = PredictionRecord.from_json(row, where, parse_mode)
        _refuse_duplicate(record.key, number, seen, where)
        facts = (record.data_source, record.ground_truth)
        first = sample_facts.setdefault(record.sample_id, (*facts, number))
        if first[:2] != facts:
            raise ValueError(
                f"{where}: sample {record.sample_id!r} has data_source/ground_truth {facts}, "
                f"but line {first[2]} says {first[:2]}"
            )
        records.append(record)
    return records


def load_verdicts(path: str | Path) -> list[VerdictRecord]:
    """Read and validate a verdicts JSONL file; a repeated ``(sample_id, prediction_index)`` is an error."""
    records: list[VerdictRecord] = []
    seen: dict[tuple[str, int], int] = {}
    sample_sources: dict[str, tuple[str, int]] = {}
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        record = VerdictRecord.from_json(row, where)
        _refuse_duplicate(record.key, number, seen, where)
        first = sample_sources.setdefault(record.sample_id, (record.data_source, number))
        if first[0] != record.data_source:
            raise ValueError(
                f"{where}: sample {record.sample_id!r} has data_source {record.data_source!r}, "
                f"but line {first[1]} says {first[0]!r}"
            )
        records.append(record)
    return records


def _refuse_duplicate(key: tuple[str, int], number: int, seen: dict[tuple[str, int], int], where: str) -> None:
    if key in seen:
        raise ValueError(
            f"{where}: sample_id {key[0]!r} prediction_index {key[1]} repeats line {seen[key]} "
            "(each answer may appear once)"
        )
    seen[key] = number


def _require_object(row: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _require_text(row: Mapping[str, Any], key: str, where: str) -> str:
    if key not in row:
        raise ValueError(f"{where}: missing key {key!r}")
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _require_index(row: Mapping[str, Any], where: str) -> int:
    if "prediction_index" not in row:
        raise ValueError(f"{where}: missing key 'prediction_index'")
    value = row["prediction_index"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: 'prediction_index' must be an integer >= 0, got {value!r}")
    return value


def _row_parse_mode(row: Mapping[str, Any], where: str) -> ParseMode | None:
    value = row.get("parse_mode")
    if value is not None and value not in PARSE_MODES:
        raise ValueError(f"{where}: 'parse_mode' must be one of {list(PARSE_MODES)} or null, got {value!r}")
    return value


def _max_answer_words(row: Mapping[str, Any], where: str) -> int | None:
    value = row.get("max_answer_words")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{where}: 'max_answer_words' must be an integer >= 1 or null, got {value!r}")
    return value


def _parseable(row: Mapping[str, Any], where: str) -> dict[str, bool] | None:
    value = row.get("parseable")
    if value is None:
        return None
    if (
        not isinstance(value, Mapping)
        or not set(value) <= set(PARSE_MODES)
        or not all(isinstance(flag, bool) for flag in value.values())
    ):
        raise ValueError(f"{where}: 'parseable' must map parse modes {list(PARSE_MODES)} to true/false, got {value!r}")
    return dict(value)


def _parent_levels(row: Mapping[str, Any], where: str) -> tuple[ParentLevel, ...]:
    levels = _optional_names(row, "parent_levels", where)
    if levels and (len(levels) != len(_optional_names(row, "parents", where)) or not set(levels) <= set(PARENT_LEVELS)):
        raise ValueError(
            f"{where}: 'parent_levels' {list(levels)} must give one of {PARENT_LEVELS} for each of the "
            f"'parents' {row.get('parents')!r}; drop it to leave every parent to the LLM judge"
        )
    return levels  # type: ignore[return-value]  # checked above


def _optional_names(row: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = row.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where}: {key!r} must be a list of strings, got {value!r}")
    return tuple(value)
