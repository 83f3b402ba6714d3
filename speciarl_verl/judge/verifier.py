"""The contract between the reward and whatever decides a verdict.

A :class:`Verifier` takes a batch of (ground truth, prediction) requests and
returns one :class:`Verdict` per request, in order. It is async because real
verifiers wait on a network; an implementation bounds its own concurrency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from speciarl_verl.core.categories import Category

__all__ = ["VerificationRequest", "Verdict", "Verifier", "VERDICT_SOURCES"]

#: Who produced a verdict: the rule tier, the rule tier's documented fallback
#: for pairs it could not decide, the verdict cache, or an LLM judge.
VERDICT_SOURCES = ("offline", "deferred", "cache", "llm")


@dataclass(frozen=True)
class VerificationRequest:
    """One pair to judge, with what the dataset knows about the ground-truth class.

    ``parents`` are coarser names of the ground-truth class taken from the
    dataset's own hierarchy (e.g. an aircraft's family and manufacturer);
    ``synonyms`` are other accepted names of the class.
    """

    ground_truth: str
    prediction: str
    data_source: str = ""
    parents: tuple[str, ...] = field(default=())
    synonyms: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Verdict:
    category: Category
    source: str

    def __post_init__(self) -> None:
        if self.source not in VERDICT_SOURCES:
            raise ValueError(f"unknown verdict source {self.source!r} (expected one of {VERDICT_SOURCES})")


@runtime_checkable
class Verifier(Protocol):
    """Judges requests; must return exactly one verdict per request, in order."""

    async def verify(self, requests: Sequence[VerificationRequest]) -> list[Verdict]: ...
