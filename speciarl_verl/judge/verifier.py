"""The contract between the reward and whatever decides a verdict.

A :class:`Verifier` takes a batch of (ground truth, prediction) requests and
returns one :class:`Verdict` per request, in order. It is async because real
verifiers wait on a network; an implementation bounds its own concurrency.
A verifier that cannot judge some requests raises :class:`JudgeError`, which
carries the verdicts it did reach; it never substitutes a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from speciarl_verl.core.categories import Category

__all__ = ["VerificationRequest", "Verdict", "Verifier", "VERDICT_SOURCES", "JudgeError"]

#: Who produced a verdict: the rule tier; the rule tier's documented fallback for pairs
#: it could not decide; the verdict cache; an LLM call made for this pair; an LLM call
#: made for an identical pair in flight at the same time (single-flight).
VERDICT_SOURCES = ("offline", "deferred", "cache", "llm", "dedup")


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
    """A category and where it came from; ``latency_s`` is the round trip of an LLM call."""

    category: Category
    source: str
    latency_s: float | None = None

    def __post_init__(self) -> None:
        if self.source not in VERDICT_SOURCES:
            raise ValueError(f"unknown verdict source {self.source!r} (expected one of {VERDICT_SOURCES})")


class JudgeError(RuntimeError):
    """Some requests could not be judged (after the retries the transport allows).

    ``verdicts[i]`` is the verdict of request ``i`` or ``None`` where it failed;
    ``endpoint`` names the judge that failed last.
    """

    def __init__(self, message: str, verdicts: Sequence[Verdict | None] = (), endpoint: str | None = None):
        super().__init__(message)
        self.verdicts = list(verdicts)
        self.endpoint = endpoint

    @property
    def failed(self) -> int:
        return sum(v is None for v in self.verdicts)


@runtime_checkable
class Verifier(Protocol):
    """Judges requests; returns exactly one verdict per request, in order, or raises :class:`JudgeError`."""

    async def verify(self, requests: Sequence[VerificationRequest]) -> list[Verdict]: ...

    async def aclose(self) -> None: ...
