import itertools

import pytest

from speciarl_verl import EVALUATION_LEVEL, TRAINING_LEVEL, Category, best_category


def test_wire_labels_are_exact():
    assert [c.value for c in Category] == [
        "wrong",
        "abstain",
        "generic",
        "less specific",
        "specific",
        "more specific",
    ]


def test_training_order_ties_specific_and_more_specific():
    order = sorted(Category, key=TRAINING_LEVEL.__getitem__)
    assert order[:4] == [Category.WRONG, Category.ABSTAIN, Category.GENERIC, Category.LESS_SPECIFIC]
    assert TRAINING_LEVEL[Category.SPECIFIC] == TRAINING_LEVEL[Category.MORE_SPECIFIC]


def test_evaluation_order_is_strict_with_more_specific_on_top():
    levels = [EVALUATION_LEVEL[c] for c in Category]
    assert levels == sorted(set(levels))
    assert max(Category, key=EVALUATION_LEVEL.__getitem__) is Category.MORE_SPECIFIC


def test_orders_are_read_only():
    with pytest.raises(TypeError):
        TRAINING_LEVEL[Category.WRONG] = 9  # type: ignore[index]


@pytest.mark.parametrize("text", ["Specific", " less   specific ", "MORE SPECIFIC"])
def test_coerce_folds_case_and_spacing(text):
    assert Category.coerce(text).value == " ".join(text.split()).lower()


@pytest.mark.parametrize("bad", ["correct", "", "less-specific", 3, None])
def test_coerce_rejects_anything_else(bad):
    with pytest.raises(ValueError, match="not a verdict category"):
        Category.coerce(bad)


def test_coerce_returns_the_member_for_a_member_or_its_exact_label():
    for member in Category:
        assert Category.coerce(member) is member
        assert Category.coerce(str(member)) is member
        assert Category.coerce(member.value.upper()) is member


# Each order written out independently of the package (ties share a rank).
RANKS = {
    "training": ["wrong", "abstain", "generic", "less specific", ("specific", "more specific")],
    "evaluation": ["wrong", "abstain", "generic", "less specific", "specific", "more specific"],
}


def rank(order, label):
    return next(i for i, entry in enumerate(RANKS[order]) if label in (entry if isinstance(entry, tuple) else (entry,)))


@pytest.mark.parametrize("order", ["training", "evaluation"])
def test_best_category_is_the_first_entry_at_the_top_rank_of_the_order(order):
    states = [c.value for c in Category] + [None]
    for group in itertools.product(states, repeat=3):
        parsed = [c for c in group if c is not None]
        expected = max(parsed, key=lambda c: rank(order, c)) if parsed else None  # max keeps the first of ties
        best = best_category(group, order)
        assert best is (None if expected is None else Category(expected)), group


def test_best_category_accepts_members_and_spellings_and_names_bad_input():
    assert best_category([Category.SPECIFIC, " More  Specific"], "evaluation") is Category.MORE_SPECIFIC
    assert best_category([Category.SPECIFIC, " More  Specific"], "training") is Category.SPECIFIC
    assert best_category([], "training") is None
    with pytest.raises(ValueError, match="'very specific'"):
        best_category(["generic", "very specific"], "training")
    with pytest.raises(ValueError, match="unknown rank order 'reward'"):
        best_category(["generic"], "reward")
