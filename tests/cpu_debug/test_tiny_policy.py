"""The shipped tiny policy sees: its sampled answers parse, vary, and name the right shape and colour.

The thresholds are far below what the shipped weights reach (``tiny_policy.json`` and docs/notes.md
have the check's RESULT line): only sampling differs from CPU to CPU, never the weights. The builder
is tested only for what any CPU gives: the loss falls, the folder loads, a seed repeats itself.
"""

from __future__ import annotations

import json
import random
import re

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.cpu_debug import tiny_policy
from speciarl_verl.cpu_debug.policy_check import check_policy, check_rows, sample_responses
from speciarl_verl.cpu_debug.tiny_policy import LabelMix, build_tiny_policy, main, shipped_policy_dir, target_response
from speciarl_verl.data.adapters.synthetic_shapes import FAMILIES, SPECIES, species_in_split

#: Chance of naming the right species (family) when naming one of the in-domain species (families) at random.
SPECIES_CHANCE = 1 / len(species_in_split("test"))
FAMILY_CHANCE = 1 / len(FAMILIES)


@pytest.fixture(scope="module")
def sampled():
    rows = check_rows("test", 48, seed=0)  # in-domain images the policy was never trained on
    return rows, sample_responses(shipped_policy_dir(), rows, n=8, temperature=1.0, seed=0)


def test_the_shipped_policy_names_the_right_shape_and_colour(sampled):
    from scipy.stats import binomtest

    check = check_policy(*sampled)
    assert check.family_named >= 150 and check.species_named >= 20, check
    # the shipped weights reach about 0.99 and 0.98 here; a policy that guessed would be near 0.25 and 0.08
    assert check.family_correct >= 0.85, check
    assert check.species_correct >= 0.6, check
    for named, rate, chance in [
        (check.species_named, check.species_correct, SPECIES_CHANCE),
        (check.family_named, check.family_correct, FAMILY_CHANCE),
    ]:
        assert binomtest(round(rate * named), named, chance, alternative="greater").pvalue < 1e-9, check


def test_the_shipped_policy_answers_generically_and_its_groups_vary(sampled):
    rows, groups = sampled
    check = check_policy(rows, groups)
    assert check.responses == len(rows) * 8
    assert check.parse_rate >= 0.9, groups[:2]
    assert check.varied_groups >= 0.75, groups[:2]
    # generic-leaning: family and domain-noun answers together outnumber species answers, which still occur
    shares = check.categories
    assert shares.get("less specific", 0) + shares.get("generic", 0) > 2 * shares.get("specific", 0) > 0
    assert shares.get("abstain", 0) > 0


def test_the_shipped_folder_is_what_the_builder_defaults_build_and_vllm_can_serve():
    folder = shipped_policy_dir()
    record = json.loads((folder / "tiny_policy.json").read_text())
    defaults = {
        "seed": 0,
        "steps": tiny_policy.DEFAULT_STEPS,
        "batch_size": tiny_policy.DEFAULT_BATCH_SIZE,
        "learning_rate": tiny_policy.DEFAULT_LEARNING_RATE,
        "vision_depth": tiny_policy.DEFAULT_VISION_DEPTH,
        "mix": LabelMix().__dict__,
        "text_sizes": json.loads(json.dumps(tiny_policy.POLICY_TEXT_SIZES)),
        "target_format": tiny_policy.TARGET_FORMAT,
    }
    assert {key: record[key] for key in defaults} == defaults  # `make policy` would rebuild it with these
    assert record["final_loss"] < record["first_loss"] / 10
    text = AutoConfig.from_pretrained(str(folder)).text_config
    head_dim = text.hidden_size // text.num_attention_heads
    # vLLM's CPU attention refuses head_dim 16; its multimodal rotary embedding wants the sections to sum to half
    assert head_dim == 32 and sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert type(AutoProcessor.from_pretrained(str(folder))).__name__ == "Qwen2_5_VLProcessor"


def test_the_check_command_prints_its_result_line_last(capsys):
    assert main(["check", "--images", "4", "--n", "2", "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    pattern = r"RESULT family_right=[0-9.]+ species_right=[0-9.]+ specific_share=[0-9.]+ parse_rate=[0-9.]+ images=4"
    assert re.fullmatch(pattern, last), last


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
    # the truth, its family and a wrong colour of that family all name the right family
    assert (check.family_named, check.family_correct) == (3, 1.0)


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


def test_a_build_learns_repeats_for_a_seed_and_the_cli_writes_a_loadable_folder(tmp_path):
    options = {"steps": 12, "batch_size": 4, "images_per_class": 2, "progress": False}
    first = build_tiny_policy(tmp_path / "a", seed=5, **options)
    second = build_tiny_policy(tmp_path / "b", seed=5, **options)
    build = ["build", "--out", str(tmp_path / "c"), "--seed", "6", "--steps", "3", "--batch-size", "4", "--no-progress"]
    assert main(build) == 0

    def weights(path):
        return AutoModelForImageTextToText.from_pretrained(str(path)).state_dict()

    a, b, c = weights(first), weights(second), weights(tmp_path / "c")
    assert all(torch.equal(a[name], b[name]) for name in a)  # one machine, one seed: the same weights
    assert any(not torch.equal(a[name], c[name]) for name in a)
    assert type(AutoProcessor.from_pretrained(str(first))).__name__ == "Qwen2_5_VLProcessor"
    record = json.loads((first / "tiny_policy.json").read_text())
    assert record["seed"] == 5 and record["steps"] == 12 and record["mix"]["family"] == 0.45
    # from about ln(vocabulary) at the start, any CPU halves the loss within a dozen steps at this rate
    assert record["final_loss"] < record["first_loss"] / 2, record


def test_bad_build_arguments_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        build_tiny_policy(tmp_path / "x", batch_size=0)
    assert not (tmp_path / "x").exists()
