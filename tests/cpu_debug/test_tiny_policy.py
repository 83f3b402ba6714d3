"""The tiny supervised policy gives the reward something to do: its sampled answers parse, vary, and can be right."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.cpu_debug.tiny_policy import (
    LabelMix,
    build_tiny_policy,
    check_policy,
    main,
    sample_responses,
    target_response,
)
from speciarl_verl.data.adapters.synthetic_shapes import SPECIES, species_in_split

#: Chance of naming the right species when naming one of the in-domain species at random.
CHANCE = 1 / len(species_in_split("train"))


@pytest.fixture(scope="module")
def sampled(tiny_policy_dir, synthetic_parquets):
    rows = pq.read_table(synthetic_parquets["train"]).to_pylist()
    return rows, sample_responses(tiny_policy_dir, rows, n=8, temperature=1.0, seed=0)


def test_sampled_answers_parse_and_differ_within_most_groups(sampled):
    rows, groups = sampled
    check = check_policy(rows, groups)
    assert check.responses == len(rows) * 8
    assert check.parse_rate >= 0.8, groups[:2]
    assert check.varied_groups >= 0.75, groups[:2]
    # generic-leaning: family and domain-noun answers together outnumber species answers
    shares = check.categories
    assert shares.get("less specific", 0) + shares.get("generic", 0) > shares.get("specific", 0) > 0
    assert shares.get("abstain", 0) > 0


def test_named_species_are_right_more_often_than_chance(sampled):
    from scipy.stats import binomtest

    rows, groups = sampled
    check = check_policy(rows, groups)
    assert check.species_named >= 20
    right = round(check.species_correct * check.species_named)
    # a policy that named species at random would be this right with probability below 1 in 1,000
    assert binomtest(right, check.species_named, CHANCE, alternative="greater").pvalue < 1e-3, (right, check)


def test_check_policy_judges_with_the_offline_rule_tier_and_counts_unparseable_answers(synthetic_parquets):
    row = pq.read_table(synthetic_parquets["val"]).to_pylist()[0]
    truth = row["reward_model"]["ground_truth"]
    family = row["extra_info"]["parents"][0]
    wrong = next(s.name for s in SPECIES if s.family == family and s.name != truth)
    answers = [truth, family, "shape", "None", wrong]
    group = [f"<think>x</think><answer>{a}</answer>" for a in answers] + ["<answer>unclosed"]
    check = check_policy([row], [group])
    sixth = pytest.approx(1 / 6)
    assert check.categories == {
        "abstain": sixth,
        "generic": sixth,
        "less specific": sixth,
        "specific": sixth,
        "unparseable": sixth,
        "wrong": sixth,
    }
    assert check.parse_rate == pytest.approx(5 / 6) and check.varied_groups == 1.0
    assert (check.species_named, check.species_correct) == (2, 0.5)


def test_label_mix_is_validated_and_drawn_in_its_proportions():
    with pytest.raises(ValueError, match="sum to 1"):
        LabelMix(0.5, 0.5, 0.5, 0.0)
    with pytest.raises(ValueError, match="4 comma-separated"):
        LabelMix.parse("0.5,0.5")
    assert LabelMix.parse("1,0,0,0") == LabelMix(1.0, 0.0, 0.0, 0.0)
    rng = random.Random(1)
    draws = [LabelMix().draw(rng) for _ in range(4000)]
    assert draws.count("family") / 4000 == pytest.approx(0.45, abs=0.03)
    assert draws.count("none") / 4000 == pytest.approx(0.10, abs=0.03)


def test_every_target_parses_to_its_level():
    species = SPECIES[5]
    labels = {level: parse_answer(target_response(species, level)) for level in ("species", "family", "domain", "none")}
    assert labels == {"species": species.name, "family": species.family, "domain": "shape", "none": "None"}


def test_a_build_is_deterministic_for_a_seed_and_the_cli_writes_a_loadable_folder(tmp_path):
    options = {"steps": 3, "batch_size": 4, "images_per_class": 2, "progress": False}
    first = build_tiny_policy(tmp_path / "a", seed=5, **options)
    second = build_tiny_policy(tmp_path / "b", seed=5, **options)
    assert main(["--out", str(tmp_path / "c"), "--seed", "6", "--steps", "3", "--batch-size", "4"]) == 0

    def weights(path):
        return AutoModelForImageTextToText.from_pretrained(str(path)).state_dict()

    a, b, c = weights(first), weights(second), weights(tmp_path / "c")
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert any(not torch.equal(a[name], c[name]) for name in a)
    assert type(AutoProcessor.from_pretrained(str(first))).__name__ == "Qwen2_5_VLProcessor"
    record = json.loads((first / "tiny_policy.json").read_text())
    assert record["seed"] == 5 and record["steps"] == 3 and record["mix"]["family"] == 0.45


def test_bad_build_arguments_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        build_tiny_policy(tmp_path / "x", batch_size=0)
    assert not (tmp_path / "x").exists()
