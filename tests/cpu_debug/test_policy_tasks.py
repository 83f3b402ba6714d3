"""The drawn policy tasks: what each teaches per image, and the by-visibility summary of a policy check."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.cpu_debug import tiny_policy
from speciarl_verl.cpu_debug.policy_check import check_policy, check_rows
from speciarl_verl.cpu_debug.policy_tasks import LEVELS, POLICY_TASKS, get_policy_task
from speciarl_verl.data.adapters import synthetic_hidden, synthetic_shapes

SHAPES = get_policy_task("shapes")
HIDDEN = get_policy_task("hidden")


def think(response: str) -> str:
    return response.split("<think>", 1)[1].split("</think>", 1)[0]


def test_an_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="nope") as error:
        get_policy_task("nope")
    assert all(name in str(error.value) for name in POLICY_TASKS) and set(POLICY_TASKS) == {"shapes", "hidden"}


def test_shapes_targets_are_the_old_target_format_and_its_corpus_is_unchanged():
    # the shipped shapes policy must rebuild bit for bit: same targets, same tokenizer corpus, same order
    labels = {"domain": synthetic_shapes.DOMAIN_NOUN, "none": "None"}
    for species in synthetic_shapes.SPECIES:
        for level in LEVELS:
            label = labels.get(level) or {"species": species.name, "family": species.family}[level]
            expected = tiny_policy.TARGET_FORMAT.format(colour=species.colour, family=species.family, label=label)
            assert SHAPES.target(species, "clear", level, random.Random(0)) == expected
            assert tiny_policy.target_response(species, level) == expected
    old_corpus = [
        tiny_policy.target_response(s, level)
        for s in synthetic_shapes.SPECIES
        for level in ("species", "family", "domain", "none")
    ]
    assert SHAPES.tokenizer_corpus() == old_corpus
    head = ["<image>prompt", "You are a helpful assistant."]
    assert tiny_policy._tokenizer_corpus("<image>prompt", SHAPES) == [*head, *old_corpus]


def test_shapes_targets_never_draw_from_the_training_rng():
    # _supervise shares one rng between the level draw and target(): a draw here would shift every later batch
    rng = random.Random("tiny-policy/0")
    state = rng.getstate()
    for species in synthetic_shapes.SPECIES:
        for level in LEVELS:
            SHAPES.target(species, "clear", level, rng)
    assert rng.getstate() == state


def test_hidden_think_names_grey_where_the_colour_is_hidden_and_the_colour_elsewhere():
    rng = random.Random(0)
    for species in synthetic_hidden.SPECIES:
        for level in LEVELS:
            assert think(HIDDEN.target(species, "hidden", level, rng)) == f"grey {species.family}"
            for visibility in ("clear", "faint"):
                assert think(HIDDEN.target(species, visibility, level, rng)) == species.name
                # where the species shows, a species answer names it
                if level == "species":
                    assert parse_answer(HIDDEN.target(species, visibility, level, rng)) == species.name


@pytest.mark.parametrize("species", synthetic_hidden.SPECIES, ids=lambda s: s.class_name)
def test_a_species_answer_on_a_hidden_image_guesses_among_the_familys_in_domain_species(species):
    in_domain = {s.name for s in synthetic_hidden.species_in_split("train") if s.family == species.family}
    held_out = {f"{c} {f}" for c, f in synthetic_hidden.HELD_OUT}
    assert len(in_domain) == len(synthetic_hidden.COLOURS) - 1
    rng = random.Random(f"guess/{species.name}")
    guesses = Counter(parse_answer(HIDDEN.target(species, "hidden", "species", rng)) for _ in range(500))
    assert set(guesses) == in_domain and not set(guesses) & held_out
    assert min(guesses.values()) > 500 / 7 / 3  # a spread guess, not one favourite colour


def test_hidden_training_images_are_the_train_split_with_its_visibility_mix():
    images = HIDDEN.training_images()
    assert len(images) == 28 * 32
    assert {image.species for image in images} == set(synthetic_hidden.species_in_split("train"))
    counts = Counter(image.visibility for image in images)
    assert {k: v / len(images) for k, v in counts.items()} == {"clear": 0.5, "faint": 0.25, "hidden": 0.25}
    for index, image in enumerate(images[:8]):  # class-major, image number order: the adapter's own renders
        assert image.visibility == synthetic_hidden.visibility_of("train", index)
        expected = synthetic_hidden.render_hidden(image.species, "train", index)
        assert np.array_equal(np.asarray(image.image), np.asarray(expected))
    few = HIDDEN.training_images(images_per_class=4)
    assert len(few) == 28 * 4 and Counter(i.visibility for i in few) == {"clear": 56, "faint": 28, "hidden": 28}


@pytest.fixture(scope="module")
def hidden_rows():
    return check_rows("test", dataset="synthetic_shapes_hidden")


def test_check_policy_splits_verdicts_and_species_right_by_visibility(hidden_rows):
    clear = next(r for r in hidden_rows if r["extra_info"]["visibility"] == "clear")
    hidden = next(r for r in hidden_rows if r["extra_info"]["visibility"] == "hidden")
    plain = check_rows("test", 1, seed=0)[0]  # a synthetic_shapes row: no visibility, in no part

    def answers(row):
        truth = row["reward_model"]["ground_truth"]
        family = row["extra_info"]["parents"][0]
        wrong = next(s.name for s in synthetic_hidden.SPECIES if s.family == family and s.name != truth)
        return truth, family, wrong

    truth, family, wrong = answers(clear)
    clear_group = [truth, family, wrong, "shape"]
    truth, family, wrong = answers(hidden)
    hidden_group = [truth, family, family, "None", wrong, wrong]
    groups = [[f"<think>x</think><answer>{a}</answer>" for a in group] for group in (clear_group, hidden_group)]
    groups[1].append("<answer>unclosed")
    plain_group = [f"<answer>{plain['reward_model']['ground_truth']}</answer>"]
    check = check_policy([clear, hidden, plain], [*groups, plain_group])
    quarter, seventh = pytest.approx(1 / 4), pytest.approx(1 / 7)
    assert check.by_visibility == {
        "clear": {
            "answers": 4,
            "species_answers": 2,
            "correct": pytest.approx(3 / 4),
            "generic": quarter,
            "less specific": quarter,
            "specific": quarter,
            "wrong": quarter,
            "species_right": pytest.approx(1 / 2),
        },
        "hidden": {
            "answers": 7,
            "species_answers": 3,
            "abstain": seventh,
            "correct": pytest.approx(3 / 7),
            "less specific": pytest.approx(2 / 7),
            "specific": seventh,
            "unparseable": seventh,
            "wrong": pytest.approx(2 / 7),
            "species_right": pytest.approx(1 / 3),
        },
    }
    assert check.responses == 12 and check.species_named == 6  # the plain row still counts overall


def test_check_policy_has_no_visibility_split_for_rows_without_one():
    row = check_rows("test", 1, seed=0)[0]
    assert row["extra_info"]["visibility"] == ""
    check = check_policy([row], [[f"<answer>{row['reward_model']['ground_truth']}</answer>"]])
    assert check.by_visibility == {} and check.species_correct == 1.0
