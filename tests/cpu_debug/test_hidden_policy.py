"""The shipped policy of the graded-visibility task reads the family everywhere and the species only where it shows.

Thresholds sit far from what the shipped weights reach (docs/notes.md has the check's figures: family right
0.97; species right 0.82 on clear images, 0.19 on hidden ones, chance 1/7): only sampling differs from CPU
to CPU, never the weights.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from speciarl_verl.cpu_debug.policy_check import check_policy, check_rows, sample_responses
from speciarl_verl.cpu_debug.policy_tasks import get_policy_task
from speciarl_verl.cpu_debug.tiny_policy import shipped_policy_dir
from speciarl_verl.data.adapters.synthetic_hidden import species_in_split

#: A blind guess among a family's in-domain species (7 of them).
GUESS_CHANCE = 1 / sum(species.family == "circle" for species in species_in_split("train"))


@pytest.fixture(scope="module")
def check():
    rows = check_rows("test", 48, seed=0, dataset="synthetic_shapes_hidden")  # images it was never trained on
    groups = sample_responses(shipped_policy_dir("hidden"), rows, n=8, temperature=1.0, seed=0)
    return check_policy(rows, groups)


def test_it_names_the_right_family_on_every_kind_of_image(check):
    assert check.family_named >= 150, check
    assert check.family_correct >= 0.85, check  # shipped: about 0.97; a guess would be 0.25
    for visibility in ("clear", "faint", "hidden"):
        assert check.by_visibility[visibility]["correct"] >= 0.6, (visibility, check.by_visibility)


def test_it_names_the_species_where_the_image_shows_it_and_cannot_where_it_is_hidden(check):
    from scipy.stats import binomtest

    clear, hidden = check.by_visibility["clear"], check.by_visibility["hidden"]
    named = clear["species_answers"]
    assert named >= 15 and clear["species_right"] >= 0.55, check.by_visibility
    assert binomtest(round(clear["species_right"] * named), named, GUESS_CHANCE, "greater").pvalue < 1e-6
    # the grey fill carries no colour: what it names there is a guess, far below what it reads on clear images
    assert hidden["species_right"] <= clear["species_right"] - 0.3, check.by_visibility


def test_it_answers_generically_on_every_kind_of_image(check):
    for visibility, shares in check.by_visibility.items():
        coarse = shares.get("less specific", 0) + shares.get("generic", 0)
        assert coarse > 2 * shares.get("specific", 0), (visibility, shares)
    assert check.parse_rate >= 0.9 and check.varied_groups >= 0.75, check


def test_the_shipped_folder_is_what_make_policy_hidden_builds_from_the_shipped_shapes_policy():
    task = get_policy_task("hidden")
    record = json.loads((shipped_policy_dir("hidden") / "tiny_policy.json").read_text())
    assert (record["task"], record["steps"], record["learning_rate"]) == ("hidden", task.steps, task.learning_rate)
    # it went on from the shapes policy that ships beside it, bit for bit
    shapes_weights = (shipped_policy_dir(task.start_from) / "model.safetensors").read_bytes()
    digest = hashlib.sha256(shapes_weights).hexdigest()
    assert record["start_from"] == {"policy": "shipped_policy", "weights_sha256": digest}
    assert record["final_loss"] < record["first_loss"] / 10
