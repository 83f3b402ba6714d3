"""Judge configuration (``reward.reward_kwargs.judge`` in verl's config tree)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from speciarl_verl.core.categories import Category

__all__ = ["JudgeSettings", "JUDGE_KINDS"]

JUDGE_KINDS = ("offline",)


@dataclass(frozen=True)
class JudgeSettings:
    """Which verifier the reward asks.

    ``kind="offline"``: the rule tier alone; pairs it cannot decide get
    ``deferred_outcome`` and are counted as ``deferred``.
    """

    kind: str = "offline"
    deferred_outcome: Category = Category.WRONG

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"judge.kind={self.kind!r} is not supported (expected one of {JUDGE_KINDS})")
        object.__setattr__(self, "deferred_outcome", Category.coerce(self.deferred_outcome))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> JudgeSettings:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown judge setting(s) {unknown} (known: {sorted(known)})")
        return cls(**values)

    def build_verifier(self):
        """A fresh verifier for this process (clients are never shared across processes)."""
        from speciarl_verl.judge.offline import OfflineVerifier

        return OfflineVerifier(deferred_outcome=self.deferred_outcome)
