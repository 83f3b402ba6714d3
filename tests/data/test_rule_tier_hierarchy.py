"""The hierarchy each adapter writes into a row, for real classes of each benchmark, read by the judge's rule tier.

The rule tier files only a ``close`` parent as *less specific* and a declared domain noun as *generic*;
farther ancestors are left to the LLM judge (``None`` here).
"""

from __future__ import annotations

import pytest

from speciarl_verl.core.categories import Category
from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.verifier import VerificationRequest

C = Category


def class_row(dataset: str, name: str, parents: tuple[str, ...] | None = None) -> dict:
    """The ``extra_info`` hierarchy fields a row of class ``name`` gets (``parents`` as a split file gives them)."""
    adapter = get_adapter(dataset)
    official = adapter.class_for_name(name)
    info = official if parents is None else adapter.class_info(official.class_id, official.class_name, parents)
    fields = ("parents", "parent_levels", "domain_nouns", "synonyms")
    return {"ground_truth": info.ground_truth, **{key: list(getattr(info, key)) for key in fields}}


def verdict(dataset: str, row: dict, prediction: str) -> Category | None:
    return decide_offline(VerificationRequest.for_row(row["ground_truth"], prediction, dataset, row))


# FGVC's family and manufacturer come from the split files, as fgvc_aircraft.read_raw passes them
BOEING = ("fgvc_aircraft", "737-800", ("Boeing 737", "Boeing"))
ACURA = ("stanford_cars", "Acura TL Sedan 2012", None)


@pytest.mark.parametrize(
    ("case", "prediction", "expected"),
    [
        (BOEING, "737-800", C.SPECIFIC),
        (BOEING, "Boeing 737", C.LESS_SPECIFIC),
        (BOEING, "Boeing", None),
        (BOEING, "Aircraft", C.GENERIC),
        (BOEING, "airliner", None),  # not true of every FGVC variant (a Cessna 172), so not declared
        (ACURA, "Acura TL", C.LESS_SPECIFIC),
        (ACURA, "Acura", None),
        (ACURA, "car", C.GENERIC),
        (("oxford_pets", "Abyssinian", None), "cat", C.GENERIC),
        (("oxford_pets", "Abyssinian", None), "dog", None),
        (("oxford_pets", "samoyed", None), "Dog", C.GENERIC),
        (("oxford_pets", "saint_bernard", None), "St. Bernard", C.SPECIFIC),
        (("cub200", "002.Laysan_Albatross", None), "albatross", None),  # CUB ships no hierarchy
        (("cub200", "002.Laysan_Albatross", None), "Bird", C.GENERIC),
        (("flowers102", "passion flower", None), "flower", C.GENERIC),
        (("food101", "apple_pie", None), "food", C.GENERIC),
        (("food101", "apple_pie", None), "pie", None),
        (("synthetic_shapes", "red_circle", None), "circle", C.LESS_SPECIFIC),
        (("synthetic_shapes", "red_circle", None), "shape", C.GENERIC),
    ],
)
def test_real_classes_get_the_verdicts_of_the_methods_judge_prompt(case, prediction, expected):
    dataset, name, parents = case
    assert verdict(dataset, class_row(dataset, name, parents), prediction) is expected


def test_a_make_alone_is_far_even_as_the_only_parent():
    adapter = get_adapter("stanford_cars")
    info = adapter.class_info(0, "Tesla Roadster 2010")  # not in the shipped make/model table
    assert info.parents == ("Tesla",) and info.parent_levels == ("far",)


def test_the_built_row_carries_the_levels_and_nouns_to_the_judge(tmp_path):
    import pyarrow.parquet as pq

    spec = SourceSpec("synthetic_shapes", ".", "train", subset=4)
    built = build_parquet(spec, tmp_path / "train.parquet", BuildOptions(seed=0, progress=False))
    for row in pq.read_table(built.parquet).to_pylist():
        truth, extra = row["reward_model"]["ground_truth"], row["extra_info"]
        family = truth.split(" ")[1]
        assert verdict("synthetic_shapes", {"ground_truth": truth, **extra}, family) is C.LESS_SPECIFIC
        assert verdict("synthetic_shapes", {"ground_truth": truth, **extra}, "Shapes") is C.GENERIC
