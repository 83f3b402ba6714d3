"""Evaluation metrics: one per-item metric and aggregations over a category histogram.

Kept apart, and each registered by name, so a new metric needs no change to the report:

* an **item metric** turns one verdict row into a histogram key (built in:
  ``category``: the wire label, ``"undecided"`` or ``"unparseable"``, see
  :attr:`~speciarl_verl.evaluation.records.VerdictRecord.outcome`);
* an **aggregation** turns a histogram (key -> count, possibly fractional, as
  produced by best-of-k selection) into one number, given the
  :class:`CategorySets` that say which categories count as correct and as specific.

Built-in aggregations (our reading of the paper; its exact wording was not available):

* ``correctness`` = (predictions in the *correct* set) / (all decided predictions, unparseable included);
* ``specificity`` = (predictions in the *specific* set) / (predictions in the *correct* set),
  0 when nothing is correct;
* ``hm`` = 2 * correctness * specificity / (correctness + specificity), 0 when both are 0.

Registered beside them (its own module, :mod:`.method_score`, imported at the end of this one so
the registry is the same whatever is imported first): ``method_score``, the method's average score.

Defaults: correct = {generic, less specific, specific, more specific};
specific = {specific, more specific}. Abstain, wrong and unparseable answers are not correct.
``undecided`` answers (no judge decided them) are in no denominator: nothing is known about
them. The report leaves them out before it aggregates, or files them under a category the
user names (:func:`apply_undecided`).

An aggregation is a ratio of counts of one histogram. The report gives it the counts of every
scored answer of a data source pooled together (never a mean of per-image shares), so the
ratios are over answers as defined above; its bootstrap pools the answers of the resampled
images the same way.

Adding a metric::

    @register_aggregation("exact_rate")
    def exact_rate(histogram, sets):
        return histogram.get("specific", 0.0) / max(sum(histogram.values()), 1e-12)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from speciarl_verl.core.categories import CORRECT_CATEGORIES, Category
from speciarl_verl.evaluation.records import UNDECIDED, UNPARSEABLE, VerdictRecord

__all__ = [
    "EXCLUDE",
    "HISTOGRAM_KEYS",
    "SCORED_KEYS",
    "UNDECIDED",
    "UNPARSEABLE",
    "Aggregation",
    "CategorySets",
    "ItemMetric",
    "aggregate_all",
    "aggregation_names",
    "apply_undecided",
    "get_aggregation",
    "get_item_metric",
    "harmonic_mean",
    "histogram",
    "item_metric_names",
    "register_aggregation",
    "register_item_metric",
    "undecided_policy",
]

#: Keys the metrics score, finest first, unparseable last (the evaluation order).
SCORED_KEYS: tuple[str, ...] = (
    Category.MORE_SPECIFIC.value,
    Category.SPECIFIC.value,
    Category.LESS_SPECIFIC.value,
    Category.GENERIC.value,
    Category.ABSTAIN.value,
    Category.WRONG.value,
    UNPARSEABLE,
)
#: Keys of the ``category`` histogram: the scored keys with ``undecided`` before ``unparseable``.
HISTOGRAM_KEYS: tuple[str, ...] = (*SCORED_KEYS[:-1], UNDECIDED, UNPARSEABLE)
#: :func:`apply_undecided` policy that leaves undecided answers out of the metrics (the default).
EXCLUDE = "exclude"

ItemMetric = Callable[[VerdictRecord], Hashable]
Aggregation = Callable[[Mapping[str, float], "CategorySets"], float]
_T = TypeVar("_T")

_ITEM_METRICS: dict[str, ItemMetric] = {}
_AGGREGATIONS: dict[str, Aggregation] = {}


@dataclass(frozen=True)
class CategorySets:
    """Which histogram keys count as *correct*, and which of those as *specific*.

    >>> CategorySets.from_labels(correct=["specific", "more specific"], specific=["more specific"]).specific
    frozenset({'more specific'})
    """

    correct: frozenset[str] = field(default_factory=lambda: frozenset(c.value for c in CORRECT_CATEGORIES))
    specific: frozenset[str] = field(
        default_factory=lambda: frozenset({Category.SPECIFIC.value, Category.MORE_SPECIFIC.value})
    )

    def __post_init__(self) -> None:
        for name in ("correct", "specific"):
            labels = frozenset(Category.coerce(label).value for label in getattr(self, name))
            if not labels:
                raise ValueError(f"the {name!r} category set is empty")
            object.__setattr__(self, name, labels)
        if not self.specific <= self.correct:
            extra = sorted(self.specific - self.correct)
            raise ValueError(f"specific categories {extra} are not in the correct set {sorted(self.correct)}")

    @classmethod
    def from_labels(cls, correct: Iterable[str] | None = None, specific: Iterable[str] | None = None) -> CategorySets:
        """Build from wire labels; ``None`` keeps the default for that set."""
        values: dict[str, Any] = {}
        if correct is not None:
            values["correct"] = frozenset(correct)
        if specific is not None:
            values["specific"] = frozenset(specific)
        return cls(**values)

    def describe(self) -> dict[str, list[str]]:
        order = {key: i for i, key in enumerate(HISTOGRAM_KEYS)}
        return {name: sorted(getattr(self, name), key=order.__getitem__) for name in ("correct", "specific")}


def _registrar(registry: dict[str, _T], kind: str) -> Callable[[str], Callable[[_T], _T]]:
    def register(name: str) -> Callable[[_T], _T]:
        def add(function: _T) -> _T:
            if name in registry and registry[name] is not function:
                raise ValueError(f"{kind} {name!r} is already registered with another function")
            registry[name] = function
            return function

        return add

    return register


def _getter(registry: dict[str, _T], kind: str) -> Callable[[str], _T]:
    def get(name: str) -> _T:
        if name not in registry:
            raise ValueError(f"Unknown {kind}: {name!r} (known: {', '.join(sorted(registry))})")
        return registry[name]

    return get


#: ``@register_item_metric("name")`` on ``fn(verdict: VerdictRecord) -> hashable key``.
register_item_metric = _registrar(_ITEM_METRICS, "item metric")
get_item_metric = _getter(_ITEM_METRICS, "item metric")
#: ``@register_aggregation("name")`` on ``fn(histogram: Mapping[str, float], sets: CategorySets) -> float``.
register_aggregation = _registrar(_AGGREGATIONS, "aggregation")
get_aggregation = _getter(_AGGREGATIONS, "aggregation")


def item_metric_names() -> list[str]:
    return sorted(_ITEM_METRICS)


def aggregation_names() -> list[str]:
    """Registered aggregations, the three built-ins first."""
    builtin = ("correctness", "specificity", "hm")
    return [*(n for n in builtin if n in _AGGREGATIONS), *sorted(set(_AGGREGATIONS) - set(builtin))]


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), and 0 when both are 0.

    >>> round(harmonic_mean(0.742, 0.846), 4), harmonic_mean(0.0, 0.0)
    (0.7906, 0.0)
    """
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def histogram(values: Iterable[Hashable]) -> dict[str, float]:
    """Count item-metric values; the category keys always appear (with 0), others are added.

    >>> histogram(["specific", "specific", "unparseable"])["specific"]
    2.0
    """
    counts: dict[str, float] = dict.fromkeys(HISTOGRAM_KEYS, 0.0)
    for value in values:
        key = str(value)
        counts[key] = counts.get(key, 0.0) + 1.0
    return counts


def undecided_policy(value: str) -> str:
    """``exclude``, or the wire label of the category undecided answers are counted as.

    >>> undecided_policy("exclude"), undecided_policy("Wrong")
    ('exclude', 'wrong')
    """
    if value.strip().lower() == EXCLUDE:
        return EXCLUDE
    try:
        return Category.coerce(value).value
    except ValueError:
        known = ", ".join(c.value for c in Category)
        raise ValueError(f"undecided answers: expected 'exclude' or a category ({known}), got {value!r}") from None


def apply_undecided(values: Iterable[str], policy: str) -> list[str]:
    """``values`` without the undecided ones (``exclude``), or with them counted as ``policy``'s category.

    >>> apply_undecided(["specific", "undecided", "wrong"], "exclude"), apply_undecided(["undecided"], "wrong")
    (['specific', 'wrong'], ['wrong'])
    """
    policy = undecided_policy(policy)
    if policy == EXCLUDE:
        return [v for v in values if v != UNDECIDED]
    return [policy if v == UNDECIDED else v for v in values]


def aggregate_all(counts: Mapping[str, float], sets: CategorySets, names: Iterable[str] | None = None) -> dict:
    """Every registered aggregation (or those in ``names``) of one histogram."""
    return {name: float(get_aggregation(name)(counts, sets)) for name in (names or aggregation_names())}


@register_item_metric("category")
def category(verdict: VerdictRecord) -> str:
    """The verdict's wire label, ``"undecided"`` or ``"unparseable"``."""
    return verdict.outcome


def _share(part: float, whole: float) -> float:
    return 0.0 if whole <= 0 else part / whole


@register_aggregation("correctness")
def correctness(counts: Mapping[str, float], sets: CategorySets) -> float:
    """Share of the decided predictions that fall in the correct set (undecided ones count nowhere).

    >>> correctness({"specific": 3, "generic": 1, "wrong": 3, "unparseable": 1, "undecided": 5}, CategorySets())
    0.5
    """
    decided = sum(count for key, count in counts.items() if key != UNDECIDED)
    return _share(sum(counts.get(key, 0.0) for key in sets.correct), decided)


@register_aggregation("specificity")
def specificity(counts: Mapping[str, float], sets: CategorySets) -> float:
    """Share of the correct predictions that fall in the specific set (0 when none is correct).

    >>> specificity({"specific": 3, "generic": 1, "wrong": 3, "unparseable": 1}, CategorySets())
    0.75
    """
    correct = sum(counts.get(key, 0.0) for key in sets.correct)
    return _share(sum(counts.get(key, 0.0) for key in sets.specific), correct)


@register_aggregation("hm")
def hm(counts: Mapping[str, float], sets: CategorySets) -> float:
    """Harmonic mean of correctness and specificity.

    >>> round(hm({"specific": 3, "generic": 1, "wrong": 3, "unparseable": 1}, CategorySets()), 4)
    0.6
    """
    return harmonic_mean(correctness(counts, sets), specificity(counts, sets))


# The method's average score registers itself as an aggregation; imported last, as it builds on this module.
from speciarl_verl.evaluation import method_score as _method_score  # noqa: E402, F401
