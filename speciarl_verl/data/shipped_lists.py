"""Readers for the data files shipped in ``speciarl_verl/data/classnames/``.

* ``<dataset>.txt``: the official class names, one per line, in class-index order;
* ``synonyms.txt``: ``data_source<TAB>ground truth<TAB>synonym...`` (other names of a class);
* ``stanford_cars_make_model.txt``: ``class name<TAB>make<TAB>model`` for the 196 car classes.

Lines starting with ``#`` are comments in the two tab-separated files.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from speciarl_verl.core.label_normalization import normalize_label

__all__ = ["CAR_MULTIWORD_MAKES", "car_make_model", "class_names", "synonyms_of"]

#: Makes whose name is more than one word; every other make is the first word of a class name.
CAR_MULTIWORD_MAKES: tuple[str, ...] = ("AM General", "Aston Martin", "Land Rover")


def _read(file: str) -> str:
    return resources.files("speciarl_verl.data").joinpath("classnames", file).read_text(encoding="utf-8")


def _table_rows(file: str) -> list[list[str]]:
    return [line.split("\t") for line in _read(file).splitlines() if line and not line.startswith("#")]


@cache
def class_names(file: str) -> tuple[str, ...]:
    """The shipped class list ``file`` (e.g. ``"cub200.txt"``), in official class-index order.

    >>> class_names("oxford_pets.txt")[:2]
    ('Abyssinian', 'american_bulldog')
    """
    return tuple(_read(file).splitlines())


@cache
def _synonym_table() -> dict[tuple[str, str], tuple[str, ...]]:
    return {(row[0], normalize_label(row[1])): tuple(row[2:]) for row in _table_rows("synonyms.txt")}


def synonyms_of(data_source: str, ground_truth: str) -> tuple[str, ...]:
    """Other names of ``ground_truth`` in ``data_source`` (empty if none are listed).

    >>> synonyms_of("cub200", "Brewer Blackbird")
    ("Brewer's Blackbird",)
    """
    return _synonym_table().get((data_source, normalize_label(ground_truth)), ())


@cache
def _car_table() -> dict[str, tuple[str, str]]:
    return {normalize_label(row[0]): (row[1], row[2]) for row in _table_rows("stanford_cars_make_model.txt")}


def car_make_model(class_name: str) -> tuple[str, str | None]:
    """``(make, model)`` of a Stanford Cars class name; ``model`` is None for a name not in the table.

    >>> car_make_model("Acura TL Type-S 2008")
    ('Acura', 'TL')
    >>> car_make_model("Aston Martin DB9 Coupe 2012")
    ('Aston Martin', None)
    """
    known = _car_table().get(normalize_label(class_name))
    if known is not None:
        return known
    make = next((m for m in CAR_MULTIWORD_MAKES if class_name.startswith(m + " ")), class_name.split(" ", 1)[0])
    return make, None
