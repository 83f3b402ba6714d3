"""The six verdict categories and the two orders SpeciaRL ranks them by.

A judge compares a predicted label with the ground truth and answers with one
of six wire labels. Training and evaluation order them differently:

* training (the reward): ``more specific`` and ``specific`` tie at the top,
  because the reward must not push the model past the ground truth;
* evaluation (best-of-N selection): ``more specific`` beats ``specific``.

Levels are integers where higher is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

__all__ = [
    "Category",
    "TRAINING_LEVEL",
    "EVALUATION_LEVEL",
    "CORRECT_CATEGORIES",
    "NOISE_CHAIN",
    "UNPARSEABLE_LEVEL",
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
