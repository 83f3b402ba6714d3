"""The contract between the reward and whatever decides a verdict.

A :class:`Verifier` takes a batch of (ground truth, prediction) requests and
returns one :class:`Verdict` per request, in order. It is async because real
verifiers wait on a network; an implementation bounds its own concurrency.
A verifier that cannot judge some requests raises :class:`JudgeError`, which
carries the verdicts it did reach; it never substitutes a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from speciarl_verl.core.categories import Category

__all__ = [
    "PARENT_LEVELS",
    "VERDICT_SOURCES",
    "JudgeError",
    "ParentLevel",
    "Verdict",
    "VerdictSource",
    "VerificationRequest",
    "Verifier",
    "names_of",
]

#: How near an ancestor is to its class. ``close``: a closely related coarser label (an aircraft
#: family, a car's make and model, a genus) that the rule tier may file as *less specific*;
#: ``far``: any farther ancestor (a manufacturer, a car make alone, a species such as "dog"),
#: which only the LLM judge decides.
ParentLevel = Literal["close", "far"]
PARENT_LEVELS: tuple[ParentLevel, ...] = get_args(ParentLevel)

#: Who produced a verdict: the rule tier; the rule tier's documented fallback for pairs
#: it could not decide; the verdict cache; an LLM call made for this pair; an LLM call
#: made for an identical pair in flight at the same time (single-flight).
VerdictSource = Literal["offline", "deferred", "cache", "llm", "dedup"]
VERDICT_SOURCES: tuple[VerdictSource, ...] = get_args(VerdictSource)


@dataclass(frozen=True)
class VerificationRequest:
    """One pair to judge, with what the dataset knows about the ground-truth class.

    ``parents`` are coarser names of the ground-truth class taken from the dataset's own
    hierarchy, nearest first (e.g. an aircraft's family and manufacturer); ``parent_levels``
    gives each one's :data:`ParentLevel`, in the same order. Empty ``parent_levels`` (rows
    written before levels existed) makes every parent ``far``: nothing is filed offline on
    a guess. ``domain_nouns`` are the words for the class's whole domain (``"bird"`` on CUB,
    ``"dog"`` for a dog breed), declared by the dataset adapter; ``synonyms`` are other
    accepted names of the class. A mismatched ``parent_levels`` raises ``ValueError``.

    >>> VerificationRequest("737-800", "Boeing 737", parents=("Boeing 737", "Boeing"),
    ...                     parent_levels=("close", "far")).close_parents
    ('Boeing 737',)
    """

    ground_truth: str
    prediction: str
    data_source: str = ""
    parents: tuple[str, ...] = field(default=())
    synonyms: tuple[str, ...] = field(default=())
    parent_levels: tuple[ParentLevel, ...] = field(default=())
    domain_nouns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        levels = self.parent_levels
        if levels and (len(levels) != len(self.parents) or not set(levels) <= set(PARENT_LEVELS)):
            raise ValueError(
                f"parent_levels {levels!r} must give one of {PARENT_LEVELS} for each of the parents "
                f"{self.parents!r} (ground truth {self.ground_truth!r}); leave it empty to treat every parent as far"
            )

    @property
    def close_parents(self) -> tuple[str, ...]:
        """The parents the rule tier may file as *less specific* (none when levels are unknown)."""
        # strict=False: empty levels (an old row) pair with nothing, so no parent is close
        return tuple(name for name, level in zip(self.parents, self.parent_levels, strict=False) if level == "close")

    @classmethod
    def for_row(
        cls, ground_truth: str, prediction: str, data_source: str, row: Mapping[str, Any] | None
    ) -> VerificationRequest:
        """The request for a pair of a dataset row: the class fields come from ``row`` (a parquet
        ``extra_info``, a JSONL record), whose lists may be numpy arrays; missing keys are empty.

        >>> VerificationRequest.for_row("Samoyed", "dog", "oxford_pets", {"domain_nouns": ["dog"]}).domain_nouns
        ('dog',)
        """
        row = row or {}
        return cls(
            ground_truth,
            prediction,
            data_source,
            names_of(row.get("parents")),
            names_of(row.get("synonyms")),
            names_of(row.get("parent_levels")),  # type: ignore[arg-type]  # checked in __post_init__
            names_of(row.get("domain_nouns")),
        )


def names_of(value: Any) -> tuple[str, ...]:
    """A row's list field as a tuple of strings: ``None`` is empty, a lone string is one name.

    >>> names_of(None), names_of("Boeing"), names_of(["Boeing 737", "Boeing"])
    ((), ('Boeing',), ('Boeing 737', 'Boeing'))
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class Verdict:
    """A category and where it came from; ``latency_s`` is the round trip of an LLM call and
    ``attempts`` how many attempts it took (1 = no retry); both ``None`` for other sources."""

    category: Category
    source: VerdictSource
    latency_s: float | None = None
    attempts: int | None = None

    def __post_init__(self) -> None:
        if self.source not in VERDICT_SOURCES:
            raise ValueError(f"unknown verdict source {self.source!r} (expected one of {VERDICT_SOURCES})")


class JudgeError(RuntimeError):
    """Some requests could not be judged (after the retries the transport allows).

    ``verdicts[i]`` is the verdict of request ``i`` or ``None`` where it failed;
    ``endpoint`` names the judge that failed last; ``attempts`` is how many attempts the failed
    LLM call of a single request made when it was this caller's own call (``None`` otherwise:
    a batch, a failure before or outside the LLM, or a call made for an identical pair).
    """

    def __init__(
        self,
        message: str,
        verdicts: Sequence[Verdict | None] = (),
        endpoint: str | None = None,
        attempts: int | None = None,
    ):
        super().__init__(message)
        self.verdicts = list(verdicts)
        self.endpoint = endpoint
        self.attempts = attempts

    @property
    def failed(self) -> int:
        return sum(v is None for v in self.verdicts)


@runtime_checkable
class Verifier(Protocol):
    """Judges requests; returns exactly one verdict per request, in order, or raises :class:`JudgeError`."""

    async def verify(self, requests: Sequence[VerificationRequest]) -> list[Verdict]: ...

    async def aclose(self) -> None: ...
