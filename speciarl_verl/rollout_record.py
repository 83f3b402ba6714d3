"""The per-rollout record the reward manager writes into verl's ``reward_extra_info``.

verl carries ``reward_extra_info`` from the reward loop to the trainer (and
into validation metrics and generation dumps). Every rollout carries the same
keys; the group stage reads the record back and fills in the group fields.
Numeric fields are what verl turns into per-data-source validation metrics
(``val-aux/<data_source>/<key>/mean@1``); string fields are kept for dumps only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from speciarl_verl.core.categories import CORRECT_CATEGORIES, TRAINING_LEVEL, UNPARSEABLE_LEVEL, Category

__all__ = ["RolloutRecord", "RECORD_KEYS", "MissingRecordError"]

_CATEGORY_KEYS = tuple(f"cat_{c.slug}" for c in Category)

#: Keys present in every rollout's reward_extra_info.
RECORD_KEYS: tuple[str, ...] = (
    "acc",
    "answer",
    "verdict",
    "verdict_source",
    "category",
    "level",
    "noised",
    "parse_failed",
    "correct",
    *_CATEGORY_KEYS,
    "overlong_penalty",
    "group_best",
    "group_size",
)


class MissingRecordError(RuntimeError):
    """A trajectory reached the group stage without SpeciaRL's reward record."""


@dataclass(frozen=True)
class RolloutRecord:
    """What the reward manager learnt about one rollout.

    ``verdict`` is the judge's category; ``category`` is the one the training
    reward uses (it differs only when verdict noise flipped it). Both are
    ``None`` when the answer could not be parsed.
    """

    answer: str | None
    verdict: Category | None
    verdict_source: str | None
    category: Category | None
    noised: bool
    overlong_penalty: float
    acc: float
    group_best: Category | None = None
    group_size: int | None = None

    def to_extra_info(self) -> dict[str, Any]:
        verdict = self.verdict
        info: dict[str, Any] = {
            "acc": float(self.acc),
            "answer": self.answer,
            "verdict": None if verdict is None else verdict.value,
            "verdict_source": self.verdict_source,
            "category": None if self.category is None else self.category.value,
            "level": UNPARSEABLE_LEVEL if self.category is None else TRAINING_LEVEL[self.category],
            "noised": float(self.noised),
            "parse_failed": float(verdict is None),
            "correct": float(verdict in CORRECT_CATEGORIES),
        }
        for category, key in zip(Category, _CATEGORY_KEYS, strict=True):
            info[key] = float(verdict is category)
        info["overlong_penalty"] = float(self.overlong_penalty)
        info["group_best"] = None if self.group_best is None else self.group_best.value
        info["group_size"] = self.group_size
        return info

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any], where: str = "") -> RolloutRecord:
        """Read a record back; a missing key raises :class:`MissingRecordError` naming ``where``."""
        missing = [
            key
            for key in ("acc", "answer", "verdict", "verdict_source", "category", "noised", "overlong_penalty")
            if key not in info
        ]
        if missing:
            raise MissingRecordError(
                f"{where or 'trajectory'} has no SpeciaRL reward record (missing {missing} in reward_extra_info); "
                "is reward.reward_manager.name=speciarl?"
            )

        def category(value: Any) -> Category | None:
            return None if value is None else Category.coerce(value)

        group_best = info.get("group_best")
        return cls(
            answer=info["answer"],
            verdict=category(info["verdict"]),
            verdict_source=info["verdict_source"],
            category=category(info["category"]),
            noised=bool(info["noised"]),
            overlong_penalty=float(info["overlong_penalty"]),
            acc=float(info["acc"]),
            group_best=category(group_best),
            group_size=info.get("group_size"),
        )
