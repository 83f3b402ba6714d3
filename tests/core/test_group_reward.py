import itertools

import pytest

from speciarl_verl import Category, group_rewards
from speciarl_verl.core import GroupOutcome, best_category, step_metrics

# Seven states of one rollout: the six verdicts and "unparseable" (None).
STATES = [c.value for c in Category] + [None]

# The paper's order W < A < G < S- < S < S+, written out independently of the package.
PAPER_ORDER = {"wrong": 0, "abstain": 1, "generic": 2, "less specific": 3, "specific": 4, "more specific": 5}


def paper_rewards(group, mode, penalty):
    """The paper's rule: c* = S if best is S+, A if best is W, else best; reward 1 iff c >= c*."""
    parsed = [c for c in group if c is not None]
    if not parsed:
        return [penalty] * len(group)
    best = max(parsed, key=PAPER_ORDER.__getitem__)
    reference = {"more specific": "specific", "wrong": "abstain"}.get(best, best)
    rewards = [penalty if c is None else float(PAPER_ORDER[c] >= PAPER_ORDER[reference]) for c in group]
    if mode == "single":
        winners = [i for i, r in enumerate(rewards) if r == 1.0]
        for i in winners[1:]:
            rewards[i] = 0.0
    return rewards


@pytest.mark.parametrize("mode", ["all", "single"])
def test_every_group_of_four_matches_the_paper_rule(mode):
    groups = list(itertools.product(STATES, repeat=4))
    assert len(groups) == 7**4
    for group in groups:
        assert group_rewards(list(group), mode=mode, format_penalty=-1.0) == paper_rewards(group, mode, -1.0), group


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (["specific", "more specific", "generic", "wrong", None], [1, 1, 0, 0, -1]),
        (["generic", "generic", "less specific", "wrong", "abstain"], [0, 0, 1, 0, 0]),
        (["generic"] * 5, [1] * 5),
        (["wrong", "wrong", "abstain", "wrong", "wrong"], [0, 0, 1, 0, 0]),
        (["wrong"] * 5, [0] * 5),
    ],
)
def test_worked_examples_from_the_spec(group, expected):
    assert group_rewards(group) == [float(x) for x in expected]


def test_format_penalty_is_configurable_and_all_unparseable_group_gets_it():
    assert group_rewards([None, None], format_penalty=-0.5) == [-0.5, -0.5]
    assert group_rewards(["specific", None], format_penalty=0.0) == [1.0, 0.0]


def test_single_mode_rewards_first_at_best_level_only_in_order_given():
    assert group_rewards(["more specific", "specific", "specific"], mode="single") == [1.0, 0.0, 0.0]
    assert group_rewards(["generic", "specific", "more specific"], mode="single") == [0.0, 1.0, 0.0]


def test_accepts_category_members_and_rejects_unknown_labels_naming_them():
    assert group_rewards([Category.SPECIFIC, Category.GENERIC]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="'very specific'"):
        group_rewards(["very specific"])
    with pytest.raises(ValueError, match="not a verdict category"):
        group_rewards([["specific"]])
    assert group_rewards([" More Specific", "LESS specific"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown group reward mode"):
        group_rewards(["specific"], mode="best")


@pytest.mark.parametrize("group", list(itertools.product(STATES, repeat=3)))
def test_rewards_outcome_and_metrics_share_one_idea_of_best(group):
    categories = tuple(None if c is None else Category(c) for c in group)
    rewards = group_rewards(group)
    outcome = GroupOutcome("u", categories, tuple(rewards))
    training_best, evaluation_best = best_category(group, "training"), best_category(group, "evaluation")
    assert outcome.best("training") is training_best
    assert outcome.best("evaluation") is evaluation_best
    if training_best not in (None, Category.WRONG):  # the reward pays exactly the training best's level
        reference = {"more specific": "specific"}.get(training_best.value, training_best.value)
        paid = {c for c, r in zip(group, rewards, strict=True) if r == 1.0}
        assert paid == {c for c in group if c is not None and PAPER_ORDER[c] >= PAPER_ORDER[reference]}
    slug = "none" if evaluation_best is None else evaluation_best.slug
    assert step_metrics([outcome])[f"speciarl/group_best/{slug}"] == 1.0
