"""The six verdict categories and the two orders SpeciaRL ranks them by.

A judge compares a predicted label with the ground truth and answers with one
of six wire labels. Training and evaluation order them differently:

* training (the reward): ``more specific`` and ``specific`` tie at the top,
  because the reward must not push the model past the ground truth;
* evaluation (best-of-N selection): ``more specific`` beats ``specific``.

Levels are integers where higher is better. :func:`best_category` is the one
place that picks a group's best verdict; callers name the order they rank by.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CORRECT_CATEGORIES",
    "EVALUATION_LEVEL",
    "LEVELS",
    "NOISE_CHAIN",
    "TRAINING_LEVEL",
    "UNPARSEABLE_LEVEL",
    "Category",
    "RankOrder",
    "best_category",
]


class Category(str, Enum):
    """A judge verdict. The value is the exact label on the wire.

    >>> Category("less specific") is Category.LESS_SPECIFIC
    True
    >>> Category.coerce(" Specific ")
    <Category.SPECIFIC: 'specific'>
    >>> Category.coerce(Category.GENERIC) is Category.GENERIC
    True
    """

    WRONG = "wrong"
    ABSTAIN = "abstain"
    GENERIC = "generic"
    LESS_SPECIFIC = "less specific"
    SPECIFIC = "specific"
    MORE_SPECIFIC = "more specific"

    def __str__(self) -> str:
        return self.value

    @property
    def slug(self) -> str:
        """The label with spaces as underscores, for metric names (``less_specific``)."""
        return self.value.replace(" ", "_")

    @classmethod
    def coerce(cls, value: Category | str) -> Category:
        """Accept a :class:`Category` or a wire label (case and surrounding space ignored).

        Raises ``ValueError`` naming the bad value and the accepted labels.
        """
        if isinstance(value, Category):
            return value
        if isinstance(value, str):
            # the exact wire label first: the reward path coerces thousands of stored labels per step
            member = _BY_WIRE_LABEL.get(value)
            if member is None:
                member = _BY_WIRE_LABEL.get(" ".join(value.split()).lower())
            if member is not None:
                return member
        labels = ", ".join(repr(c.value) for c in cls)
        raise ValueError(f"not a verdict category: {value!r} (expected one of {labels})")


_BY_WIRE_LABEL: Mapping[str, Category] = MappingProxyType({member.value: member for member in Category})

#: Reward order: more specific == specific > less specific > generic > abstain > wrong.
TRAINING_LEVEL: Mapping[Category, int] = MappingProxyType(
    {
        Category.WRONG: 0,
        Category.ABSTAIN: 1,
        Category.GENERIC: 2,
        Category.LESS_SPECIFIC: 3,
        Category.SPECIFIC: 4,
        Category.MORE_SPECIFIC: 4,
    }
)

#: Best-of-N order: more specific > specific > less specific > generic > abstain > wrong.
EVALUATION_LEVEL: Mapping[Category, int] = MappingProxyType(
    {
        Category.WRONG: 0,
        Category.ABSTAIN: 1,
        Category.GENERIC: 2,
        Category.LESS_SPECIFIC: 3,
        Category.SPECIFIC: 4,
        Category.MORE_SPECIFIC: 5,
    }
)

#: Verdicts that name the object correctly at some granularity.
CORRECT_CATEGORIES: frozenset[Category] = frozenset(
    {Category.GENERIC, Category.LESS_SPECIFIC, Category.SPECIFIC, Category.MORE_SPECIFIC}
)

#: The chain verdict noise moves along, one step at a time (``more specific`` enters as ``specific``).
NOISE_CHAIN: tuple[Category, ...] = (
    Category.WRONG,
    Category.ABSTAIN,
    Category.GENERIC,
    Category.LESS_SPECIFIC,
    Category.SPECIFIC,
)

#: Level reported for an answer that could not be parsed (below every category).
UNPARSEABLE_LEVEL = -1

RankOrder = Literal["training", "evaluation"]

#: Each order's levels, by the name callers pass to :func:`best_category`.
LEVELS: Mapping[RankOrder, Mapping[Category, int]] = MappingProxyType(
    {"training": TRAINING_LEVEL, "evaluation": EVALUATION_LEVEL}
)


def best_category(categories: Iterable[Category | str | None], order: RankOrder) -> Category | None:
    """The first entry at the highest level of ``order``; ``None`` when no entry has a verdict.

    ``None`` entries (no verdict: unparseable, or the judge failed) take no part. Entries are
    :class:`Category` members or wire labels; anything else raises ``ValueError`` naming it.
    The evaluation order refines the training one, so its best is also at the top training level.

    >>> best_category(["specific", None, "more specific"], "training")
    <Category.SPECIFIC: 'specific'>
    >>> best_category(["specific", None, "more specific"], "evaluation")
    <Category.MORE_SPECIFIC: 'more specific'>
    """
    try:
        levels = LEVELS[order]
    except KeyError:
        raise ValueError(f"unknown rank order {order!r} (expected one of {tuple(LEVELS)})") from None
    best: Category | None = None
    best_level = -1
    for entry in categories:
        if entry is None:
            continue
        # a member hashes like its wire label, so one lookup answers both; other spellings go through coerce
        member = _BY_WIRE_LABEL.get(entry) if isinstance(entry, str) else None
        if member is None:
            member = Category.coerce(entry)
        level = levels[member]
        if level > best_level:
            best, best_level = member, level
    return best
