"""The per-rollout record the reward manager writes into verl's ``reward_extra_info``.

verl carries ``reward_extra_info`` from the reward loop to the trainer (and
into validation metrics and generation dumps). Every rollout carries the same
keys; the group stage reads the record back and fills in the group fields.
Numeric fields are what verl turns into per-data-source validation metrics
(``val-aux/<data_source>/<key>/mean@1``; ``None`` values are left out there);
string fields are kept for dumps only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

from speciarl_verl.core.categories import CORRECT_CATEGORIES, TRAINING_LEVEL, UNPARSEABLE_LEVEL, Category

__all__ = [
    "RECORD_KEYS",
    "STATUSES",
    "MissingRecordError",
    "RolloutRecord",
    "RolloutStatus",
    "read_record_fields",
    "record_info",
]

#: judged: the verifier gave a verdict; unparseable: no single <answer> block;
#: judge_error: the verifier failed for this rollout (see judge.failure_policy).
RolloutStatus = Literal["judged", "unparseable", "judge_error"]
STATUSES: tuple[RolloutStatus, ...] = get_args(RolloutStatus)

_REQUIRED = ("acc", "status", "answer", "verdict", "verdict_source", "category", "noised", "overlong_penalty")


def _template(status: RolloutStatus, verdict: Category | None) -> dict[str, Any]:
    """Every key of a record, in order, filled with what ``status`` and ``verdict`` alone decide.

    The one place that lists the record's keys: :data:`RECORD_KEYS` is read off it.
    """
    failed = status == "judge_error"
    return {
        "acc": None,
        "status": status,
        "answer": None,
        "verdict": None if verdict is None else verdict.value,
        "verdict_source": None,
        "category": None,
        "level": None,
        "noised": None,
        "parse_failed": float(status == "unparseable"),
        "judge_failed": float(failed),
        # Every rate has every answer in its denominator: verl's validation counts a session without
        # an ``acc`` as 0 in ``acc``, so an answer the judge failed on counts 0 in ``correct`` and in
        # each ``cat_*`` too (``judge_failed`` says how many); the rates then add up with
        # ``parse_failed`` and ``judge_failed`` to 1.
        "correct": float(verdict in CORRECT_CATEGORIES),
        **{f"cat_{member.slug}": float(verdict is member) for member in Category},
        "judge_latency_s": None,
        # attempts of the LLM call behind the verdict (1 = no retry), or of the call that failed
        "judge_attempts": None,
        "judge_error": None,
        "overlong_penalty": None,
        "group_best": None,
        "group_size": None,
        "masked": None,
        # the parquet row's extra_info.image_id: a dumped answer (verl's validation_data_dir /
        # rollout_data_dir) names the image it answers, whatever order verl wrote the dump in
        "image_id": None,
    }


# Computed once: a step renders thousands of records, and a (status, verdict) pair not in
# here is a record that cannot exist (a verdict exactly when the rollout was judged). The
# templates are plain dicts because a dict copies itself faster than a read-only view does;
# nothing but record_info touches them, and it only copies them.
_TEMPLATES: Mapping[tuple[str, Category | None], dict[str, Any]] = MappingProxyType(
    {
        ("unparseable", None): _template("unparseable", None),
        ("judge_error", None): _template("judge_error", None),
        **{("judged", verdict): _template("judged", verdict) for verdict in Category},
    }
)

#: Keys present in every rollout's reward_extra_info, in the order records carry them.
RECORD_KEYS: tuple[str, ...] = tuple(_TEMPLATES["unparseable", None])

# wire label (or member: it hashes and compares like its label) -> member; others go through coerce
_CATEGORY_OF: Mapping[str, Category] = MappingProxyType({member: member for member in Category})
# (an enum's .value is a Python-level property: a table lookup is several times cheaper)
_LABEL: Mapping[Category | None, str | None] = MappingProxyType({None: None, **{c: c.value for c in Category}})
_LEVEL: Mapping[Category | None, int] = MappingProxyType({None: UNPARSEABLE_LEVEL, **TRAINING_LEVEL})


def record_info(
    status: RolloutStatus,
    answer: str | None,
    verdict: Category | None,
    verdict_source: str | None,
    category: Category | None,
    noised: bool,
    overlong_penalty: float,
    acc: float,
    judge_latency_s: float | None = None,
    judge_error: str | None = None,
    group_best: Category | None = None,
    group_size: int | None = None,
    masked: bool = False,
    image_id: str | None = None,
    judge_attempts: int | None = None,
) -> dict[str, Any]:
    """``RolloutRecord(...).to_extra_info()`` without building the record (the reward's hot path).

    Raises ``ValueError`` for a record that cannot exist, as :class:`RolloutRecord` does.

    >>> info = record_info("judged", "gull", Category.GENERIC, "cache", Category.GENERIC, False, 0.0, 1.0)
    >>> info["verdict"], info["level"], info["correct"], info["cat_generic"], info["cat_wrong"]
    ('generic', 2, 1.0, 1.0, 0.0)
    """
    try:
        template = _TEMPLATES[status, verdict]
    except (KeyError, TypeError):
        _check_status(status, verdict)
        raise ValueError(f"not a verdict category: {verdict!r} (status={status!r})") from None
    info = template.copy()
    info["acc"] = float(acc)
    info["answer"] = answer
    info["verdict_source"] = verdict_source
    info["category"] = _LABEL[category]
    info["level"] = _LEVEL[category]
    info["noised"] = 1.0 if noised else 0.0
    info["judge_latency_s"] = judge_latency_s
    info["judge_attempts"] = judge_attempts
    info["judge_error"] = judge_error
    info["overlong_penalty"] = float(overlong_penalty)
    info["group_best"] = _LABEL[group_best]
    info["group_size"] = group_size
    info["masked"] = 1.0 if masked else 0.0
    info["image_id"] = image_id
    return info


def _category(label: Any) -> Category:
    try:
        return _CATEGORY_OF[label]
    except (KeyError, TypeError):  # not an exact wire label: coerce folds case and spacing, or says what is wrong
        return Category.coerce(label)


def _check_status(status: str, verdict: Category | None) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown rollout status {status!r} (expected one of {STATUSES})")
    if (status == "judged") != (verdict is not None):
        raise ValueError(f"a rollout has a verdict exactly when it was judged (status={status!r})")


class MissingRecordError(RuntimeError):
    """A trajectory reached the group stage without SpeciaRL's reward record."""


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """What the reward manager learnt about one rollout.

    ``verdict`` is the judge's category; ``category`` is the one the training
    reward uses (it differs only when verdict noise flipped it). Both are
    ``None`` unless ``status`` is ``judged``.
    """

    status: RolloutStatus
    answer: str | None
    verdict: Category | None
    verdict_source: str | None
    category: Category | None
    noised: bool
    overlong_penalty: float
    acc: float
    judge_latency_s: float | None = None
    judge_error: str | None = None
    group_best: Category | None = None
    group_size: int | None = None
    masked: bool = False
    image_id: str | None = None
    judge_attempts: int | None = None

    def __post_init__(self) -> None:
        _check_status(self.status, self.verdict)

    def to_extra_info(self) -> dict[str, Any]:
        """The record as ``reward_extra_info`` (keys in :data:`RECORD_KEYS` order, categories as wire labels)."""
        return record_info(
            self.status,
            self.answer,
            self.verdict,
            self.verdict_source,
            self.category,
            self.noised,
            self.overlong_penalty,
            self.acc,
            self.judge_latency_s,
            self.judge_error,
            self.group_best,
            self.group_size,
            self.masked,
            self.image_id,
            self.judge_attempts,
        )

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any], where: str = "") -> RolloutRecord:
        """Read a record back; a missing key raises :class:`MissingRecordError` naming ``where``."""
        return cls(*read_record_fields(info, where))


#: :class:`RolloutRecord`'s fields as a plain tuple, in its order.
RecordFields = tuple[
    str,
    str | None,
    Category | None,
    str | None,
    Category | None,
    bool,
    float,
    float,
    float | None,
    str | None,
    Category | None,
    int | None,
    bool,
    str | None,
    int | None,
]


def read_record_fields(info: Mapping[str, Any], where: str = "") -> RecordFields:
    """The fields of :class:`RolloutRecord`, in its order, read from ``reward_extra_info``.

    Plain values for the group stage, which reads thousands of records per step (building the
    frozen record costs more than reading it). A missing key raises :class:`MissingRecordError`
    naming ``where``; an impossible record raises ``ValueError``, as the record itself would.

    >>> info = record_info("unparseable", None, None, None, None, False, 0.0, -1.0)
    >>> read_record_fields(info)[:3], RolloutRecord.from_extra_info(info).to_extra_info() == info
    (('unparseable', None, None), True)
    """
    try:
        status, answer, verdict, source, category = (
            info["status"],
            info["answer"],
            info["verdict"],
            info["verdict_source"],
            info["category"],
        )
        noised, penalty, acc = info["noised"], info["overlong_penalty"], info["acc"]
    except KeyError:
        missing = [key for key in _REQUIRED if key not in info]
        if not missing:
            raise
        raise MissingRecordError(
            f"{where or 'trajectory'} has no SpeciaRL reward record (missing {missing} in reward_extra_info); "
            "is reward.reward_manager.name=speciarl?"
        ) from None
    if verdict is not None:
        verdict = _category(verdict)
    try:
        possible = (status, verdict) in _TEMPLATES
    except TypeError:  # an unhashable status
        possible = False
    if not possible:
        _check_status(status, verdict)
    if category is not None:
        category = _category(category)
    group_best = info.get("group_best")
    return (
        status,
        answer,
        verdict,
        source,
        category,
        bool(noised),
        float(penalty),
        float(acc),
        info.get("judge_latency_s"),
        info.get("judge_error"),
        None if group_best is None else _category(group_best),
        info.get("group_size"),
        bool(info.get("masked") or False),
        info.get("image_id"),
        info.get("judge_attempts"),
    )
