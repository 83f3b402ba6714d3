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
from typing import Any

from speciarl_verl.core.categories import CORRECT_CATEGORIES, TRAINING_LEVEL, UNPARSEABLE_LEVEL, Category

__all__ = ["RolloutRecord", "RECORD_KEYS", "MissingRecordError", "STATUSES"]

_CATEGORY_KEYS = tuple(f"cat_{c.slug}" for c in Category)

#: judged: the verifier gave a verdict; unparseable: no single <answer> block;
#: judge_error: the verifier failed for this rollout (see judge.failure_policy).
STATUSES = ("judged", "unparseable", "judge_error")

#: Keys present in every rollout's reward_extra_info.
RECORD_KEYS: tuple[str, ...] = (
    "acc",
    "status",
    "answer",
    "verdict",
    "verdict_source",
    "category",
    "level",
    "noised",
    "parse_failed",
    "judge_failed",
    "correct",
    *_CATEGORY_KEYS,
    "judge_latency_s",
    "judge_error",
    "overlong_penalty",
    "group_best",
    "group_size",
    "masked",
)

_REQUIRED = ("acc", "status", "answer", "verdict", "verdict_source", "category", "noised", "overlong_penalty")


class MissingRecordError(RuntimeError):
    """A trajectory reached the group stage without SpeciaRL's reward record."""


@dataclass(frozen=True)
class RolloutRecord:
    """What the reward manager learnt about one rollout.

    ``verdict`` is the judge's category; ``category`` is the one the training
    reward uses (it differs only when verdict noise flipped it). Both are
    ``None`` unless ``status`` is ``judged``.
    """

    status: str
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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown rollout status {self.status!r} (expected one of {STATUSES})")
        if (self.status == "judged") != (self.verdict is not None):
            raise ValueError(f"a rollout has a verdict exactly when it was judged (status={self.status!r})")

    def to_extra_info(self) -> dict[str, Any]:
        verdict = self.verdict
        judged = self.status == "judged"
        info: dict[str, Any] = {
            "acc": float(self.acc),
            "status": self.status,
            "answer": self.answer,
            "verdict": None if verdict is None else verdict.value,
            "verdict_source": self.verdict_source,
            "category": None if self.category is None else self.category.value,
            "level": UNPARSEABLE_LEVEL if self.category is None else TRAINING_LEVEL[self.category],
            "noised": float(self.noised),
            "parse_failed": float(self.status == "unparseable"),
            "judge_failed": float(self.status == "judge_error"),
            # a failed judge says nothing about the answer: left out of the rates (None), not counted as wrong
            "correct": None if self.status == "judge_error" else float(verdict in CORRECT_CATEGORIES),
        }
        for category, key in zip(Category, _CATEGORY_KEYS, strict=True):
            info[key] = float(verdict is category) if judged or self.status == "unparseable" else None
        info["judge_latency_s"] = self.judge_latency_s
        info["judge_error"] = self.judge_error
        info["overlong_penalty"] = float(self.overlong_penalty)
        info["group_best"] = None if self.group_best is None else self.group_best.value
        info["group_size"] = self.group_size
        info["masked"] = float(self.masked)
        return info

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any], where: str = "") -> RolloutRecord:
        """Read a record back; a missing key raises :class:`MissingRecordError` naming ``where``."""
        missing = [key for key in _REQUIRED if key not in info]
        if missing:
            raise MissingRecordError(
                f"{where or 'trajectory'} has no SpeciaRL reward record (missing {missing} in reward_extra_info); "
                "is reward.reward_manager.name=speciarl?"
            )

        def category(value: Any) -> Category | None:
            return None if value is None else Category.coerce(value)

        return cls(
            status=info["status"],
            answer=info["answer"],
            verdict=category(info["verdict"]),
            verdict_source=info["verdict_source"],
            category=category(info["category"]),
            noised=bool(info["noised"]),
            overlong_penalty=float(info["overlong_penalty"]),
            acc=float(info["acc"]),
            judge_latency_s=info.get("judge_latency_s"),
            judge_error=info.get("judge_error"),
            group_best=category(info.get("group_best")),
            group_size=info.get("group_size"),
            masked=bool(info.get("masked") or False),
        )
