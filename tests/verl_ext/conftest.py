"""Helpers for building scored groups with verl's loader and SpeciaRL's reward manager."""

from __future__ import annotations

import uuid

import pytest
from verl.trainer.ppo.reward import load_reward_manager

from speciarl_verl.offline_fixtures.verl_rollouts import Rollout, trajectory_dataproto

ROWS = {
    "fgvc_aircraft": {
        "data_source": "fgvc_aircraft",
        "prompt": [{"role": "user", "content": "<image>Classify the image."}],
        "reward_model": {"style": "model", "ground_truth": "737-800"},
        "extra_info": {
            "index": 0,
            "parents": ["Boeing 737", "Boeing"],
            "parent_levels": ["close", "far"],
            "domain_nouns": ["aircraft", "airplane", "aeroplane", "plane"],
            "synonyms": [],
        },
        "index": 0,
    },
    "oxford_pets": {
        "data_source": "oxford_pets",
        "prompt": [{"role": "user", "content": "<image>Classify the image."}],
        "reward_model": {"style": "model", "ground_truth": "samoyed"},
        # Pets ships no close parent (the species is a domain noun); "spitz" stands in for one so a Pets
        # group can hold every verdict
        "extra_info": {
            "index": 1,
            "parents": ["spitz", "dog"],
            "parent_levels": ["close", "far"],
            "domain_nouns": ["dog", "dogs", "puppy", "domestic dog", "pet", "pets", "animal"],
            "synonyms": [],
        },
        "index": 1,
    },
}

# One answer per verdict for each row above (None: an unparseable response).
ANSWERS = {
    "fgvc_aircraft": {
        "specific": "737-800",
        "less specific": "Boeing 737",
        "generic": "airplane",
        "abstain": "None",
        "wrong": "A320",
    },
    "oxford_pets": {
        "specific": "Samoyed",
        "less specific": "spitz",
        "generic": "animal",
        "abstain": "unknown",
        "wrong": "Siberian Husky",
    },
}


@pytest.fixture
def rows_and_answers():
    """``(ROWS, ANSWERS)`` above: for tests that drive the manager themselves."""
    return ROWS, ANSWERS


def new_uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def config_factory(compose, tokenizer_dir):
    def make(*overrides):
        return compose(overrides=[f"actor_rollout_ref.model.path={tokenizer_dir}", *overrides])

    return make


@pytest.fixture
def scored_group(tokenizer):
    """``scored_group(config, verdicts, source=..., uid=...)``: rollouts scored by the real reward manager.

    ``verdicts`` lists the wanted verdict per rollout (a wire label) or None for an unparseable answer.
    """
    managers = {}
    prompt = tokenizer.encode("<|im_start|>user\nClassify.<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def make(config, verdicts, source="fgvc_aircraft", uid=None, steps=1, padding_words=0):
        key = id(config)
        if key not in managers:
            managers[key] = load_reward_manager(config, tokenizer)
        manager = managers[key]
        uid = uid or new_uid()
        rollouts = []
        for session, verdict in enumerate(verdicts):
            filler = " and".join([""] * (padding_words + 1))
            if verdict is None:
                text = f"<think>wings{filler}</think> I think it is a plane."
            else:
                text = f"<think>wings{filler}</think><answer>{ANSWERS[source][verdict]}</answer>"
            rollout = Rollout(uid, session, ROWS[source], prompt, [*tokenizer.encode(text), eos], global_steps=steps)
            result = manager.loop.run_until_complete(manager.run_single(trajectory_dataproto(rollout)))
            assert result["reward_extra_info"]["verdict"] == verdict, (verdict, result)
            rollout.score = result["reward_score"]
            rollout.reward_extra_info = result["reward_extra_info"]
            rollouts.append(rollout)
        return rollouts

    return make
