"""Fixed per-category reward tables: the static baselines SpeciaRL is compared with.

``reward3`` is the binary "exact or finer" reward of plain RLVR / RFT; the
``scala`` tables give partial credit to coarser correct answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from speciarl_verl.core.categories import Category

__all__ = ["get_static_table", "register_static_table", "static_reward", "static_table_names"]

_C = Category
_STATIC_TABLES: dict[str, Mapping[Category, float]] = {}


def register_static_table(name: str) -> Callable[[Mapping[Category, float]], Mapping[Category, float]]:
    """Register a table under ``name``; the same name may not be bound to a different table.

    Used as ``register_static_table("mine")(table)``. The table must give a
    value for every category.
    """

    def add(table: Mapping[Category, float]) -> Mapping[Category, float]:
        frozen = MappingProxyType({Category.coerce(k): float(v) for k, v in table.items()})
        missing = [c.value for c in Category if c not in frozen]
        if missing:
            raise ValueError(f"static reward table {name!r} has no value for {missing}")
        if name in _STATIC_TABLES and dict(_STATIC_TABLES[name]) != dict(frozen):
            raise ValueError(f"static reward table {name!r} is already registered with other values")
        _STATIC_TABLES[name] = frozen
        return frozen

    return add


def get_static_table(name: str) -> Mapping[Category, float]:
    """The table registered as ``name``; ``ValueError`` names the known tables otherwise."""
    if name not in _STATIC_TABLES:
        raise ValueError(f"Unknown static reward table: {name!r} (known: {', '.join(static_table_names())})")
    return _STATIC_TABLES[name]


def static_table_names() -> list[str]:
    return sorted(_STATIC_TABLES)


def static_reward(category: Category | str | None, table: str = "reward3", *, format_penalty: float = -1.0) -> float:
    """Look ``category`` up in the named table; ``None`` (unparseable) gives ``format_penalty``.

    >>> static_reward("less specific", "scala1")
    0.75
    >>> static_reward(None, "scala1", format_penalty=-0.5)
    -0.5
    """
    values = get_static_table(table)
    if category is None:
        return float(format_penalty)
    return values[Category.coerce(category)]


# Values listed for: more specific, specific, less specific, generic, abstain, wrong.
_TABLE_ORDER = (_C.MORE_SPECIFIC, _C.SPECIFIC, _C.LESS_SPECIFIC, _C.GENERIC, _C.ABSTAIN, _C.WRONG)
for _name, _values in {
    "reward3": (1.0, 1.0, 0.0, 0.0, 0.0, 0.0),
    "scala1": (1.0, 1.0, 0.75, 0.5, 0.25, 0.0),
    "scala2": (1.0, 1.0, 0.75, 0.5, 0.0, 0.0),
    "scala3": (1.0, 1.0, 0.75, 0.0, 0.0, 0.0),
}.items():
    register_static_table(_name)(dict(zip(_TABLE_ORDER, _values, strict=True)))
