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
==================  ========================================================  ========

The four class fields are the dataset row's ``extra_info`` fields of the same names; the
judge's rule tier reads them (see :class:`~speciarl_verl.judge.verifier.VerificationRequest`).

When ``answer`` is absent it is parsed from ``response`` with
:func:`~speciarl_verl.core.answer_parsing.parse_answer`; when present it is used as given.

Verdicts JSONL (``speciarl eval judge`` writes it), one row per answer: ``data_source``,
``sample_id``, ``prediction_index``, ``category`` (a wire label, or ``null``) are required;
``source``, ``ground_truth``, ``answer``, ``judge`` and ``reason`` are kept when present.
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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.core.categories import Category
from speciarl_verl.jsonl_io import read_jsonl
from speciarl_verl.judge.verifier import PARENT_LEVELS, ParentLevel

__all__ = [
    "PredictionRecord",
    "VerdictRecord",
    "load_predictions",
    "load_verdicts",
    "UNPARSEABLE_SOURCE",
    "UNDECIDED",
    "UNPARSEABLE",
    "DEFERRED_SOURCE",
]

#: ``source`` of a verdict row whose answer could not be parsed (no judge saw it).
UNPARSEABLE_SOURCE = "unparseable"
#: ``reason`` of a row the offline rule tier could not decide (``speciarl verify`` writes the same word).
UNDECIDED = "undecided"
#: ``reason`` of a row whose answer could not be parsed.
UNPARSEABLE = "unparseable"
#: ``source`` the judge gives a pair its rule tier deferred; its category is a placeholder, not a verdict.
DEFERRED_SOURCE = "deferred"
_REASONS = (UNDECIDED, UNPARSEABLE)


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

    @property
    def key(self) -> tuple[str, int]:
        return (self.sample_id, self.prediction_index)

    @classmethod
    def from_json(cls, row: Any, where: str) -> PredictionRecord:
        """Validate one parsed JSON row; errors start with ``where`` (``file:line``).

        >>> r = PredictionRecord.from_json({"sample_id": "a", "data_source": "cub200", "ground_truth": "Sayornis",
        ...     "prediction_index": 0, "response": "<answer>phoebe</answer>"}, "f.jsonl:1")
        >>> r.answer
        'phoebe'
        """
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
        if "answer" in row:
            answer = row["answer"]
            if answer is not None and not isinstance(answer, str):
                raise ValueError(f"{where}: 'answer' must be a string or null, got {type(answer).__name__}")
            if answer is not None and not answer.strip():
                answer = None
        else:
            answer = parse_answer(response) if response is not None else None
        return cls(
            **values,
            answer=answer,
            response=response,
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
        for key in ("source", "ground_truth", "answer", "judge", "reason"):
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
        )


def load_predictions(path: str | Path) -> list[PredictionRecord]:
    """Read and validate a predictions JSONL file.

    Also refuses a repeated ``(sample_id, prediction_index)`` and a sample whose
    rows disagree on ``data_source`` or ``ground_truth``; errors name ``file:line``.
    """
    records: list[PredictionRecord] = []
    seen: dict[tuple[str, int], int] = {}
    sample_facts: dict[str, tuple[str, str, int]] = {}
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        record = PredictionRecord.from_json(row, where)
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
