"""Warm reward steps run no full (generation-2) garbage-collection pass; the idle time between steps does
(``reward.reward_kwargs.steady_gc``, on by default: :mod:`speciarl_verl.verl_ext.steady_gc`).

The real manager, loaded by verl's loader, scores a step of a few thousand rollouts whose verdicts
are all known (the offline rule tier), all at once as verl's reward loop sends them, while
``gc.callbacks`` counts the collections of each generation. Every test leaves nothing frozen, Python's
thresholds back and its callback removed, whatever it found.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import Counter

import pytest
from verl.trainer.ppo.reward import load_reward_manager

from speciarl_verl.offline_fixtures.verl_rollouts import Rollout, trajectory_dataproto
from speciarl_verl.reward_settings import RewardSettings

ROLLOUTS = 3000
#: Warm steps in a row: with Python's own collector (the heap frozen at start-up), the first full pass came at
#: the tenth step of 2,560 rollouts, then every fourth.
STEPS = 15


class Cycle:
    """An object that refers to itself: only a full pass frees it once it reached the oldest generation."""


@pytest.fixture(autouse=True)
def collector_as_python_leaves_it():
    """Each test starts and ends with nothing frozen and Python's thresholds (other tests' managers change both)."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def step_of(tokenizer, rows_and_answers):
    """``step_of(count)``: ``(DataProtos, expected verdicts)`` of one step, ten rollouts per prompt: every
    verdict the offline tier gives without asking anyone, and an unparseable answer."""
    rows, answers = rows_and_answers
    row = rows["fgvc_aircraft"]
    responses = [(f"<answer>{answer}</answer>", verdict) for verdict, answer in answers["fgvc_aircraft"].items()]
    responses.append(("It is a plane.", None))
    prompt = tokenizer.encode("<|im_start|>user\nClassify.<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    encoded = [([*tokenizer.encode(f"<think>wings</think>{text}"), eos], verdict) for text, verdict in responses]

    def make(count):
        protos, verdicts = [], []
        for i in range(count):
            ids, verdict = encoded[i % len(encoded)]
            prompt_row = {**row, "index": i // 10, "extra_info": {**row["extra_info"], "index": i // 10}}
            protos.append(trajectory_dataproto(Rollout(f"u{i // 10}", i % 10, prompt_row, prompt, ids)))
            verdicts.append(verdict)
        return protos, verdicts

    return make


def run_step(manager, protos) -> list[dict]:
    """Every rollout of the step through ``run_single`` at once, as verl's reward loop sends them."""
    import asyncio

    async def all_rollouts():
        return await asyncio.gather(*(manager.run_single(p) for p in protos))

    return manager.loop.run_until_complete(all_rollouts())


def counting_collections(manager, protos) -> tuple[list[dict], Counter]:
    """The step's results and the collections (per generation) that ran inside it."""
    passes = Counter()

    def count(phase, info):
        if phase == "start":
            passes[info["generation"]] += 1

    gc.callbacks.append(count)
    try:
        results = run_step(manager, protos)
    finally:
        gc.callbacks.remove(count)
    return results, passes


def test_warm_steps_run_no_full_collection_and_the_idle_time_between_them_does(config_factory, tokenizer, step_of):
    manager = load_reward_manager(config_factory(), tokenizer)  # steady_gc: the shipped default
    assert manager.settings.steady_gc and gc.get_freeze_count() > 0
    collector = manager._collector
    collector.idle_s = 0.05  # the quiet spell that counts as "between steps" (0.5 s by default), shortened
    protos, verdicts = step_of(ROLLOUTS)  # a step's rollouts arrive after the worker started
    garbage = []

    total = Counter()
    for step in range(STEPS):  # as many steps as made Python's own collector run full passes inside them
        cycle = Cycle()
        cycle.me = cycle
        garbage.append(weakref.ref(cycle))
        del cycle
        results, passes = counting_collections(manager, protos)
        assert [r["reward_extra_info"]["verdict"] for r in results] == verdicts
        total += passes
        assert collector.full_passes == step
        # between steps the worker's loop runs on while the trainer updates the actor: the full pass runs there
        manager.loop.run_until_complete(asyncio.sleep(collector.idle_s + 0.1))
        assert collector.full_passes == step + 1
    assert total[0] > 0, "the steps allocate enough for the young generation to be collected"
    assert total[2] == 0, f"full collections inside the warm steps: {dict(total)}"
    # the reference cycles the steps left were freed between them: nothing kept
    assert all(ref() is None for ref in garbage)


def test_a_worker_that_never_pauses_still_gets_a_full_pass(config_factory, tokenizer, step_of):
    manager = load_reward_manager(config_factory(), tokenizer)
    manager._collector.max_busy_s = 0.0  # every rollout's end is past the longest stretch without a pass
    protos, _ = step_of(3)
    run_step(manager, protos)
    assert manager._collector.full_passes == 3


def test_python_s_collector_is_left_alone_when_steady_gc_is_off(config_factory, tokenizer, step_of):
    assert RewardSettings().steady_gc is True
    assert config_factory().reward.reward_kwargs.steady_gc is True  # the shipped configs say so too
    thresholds = gc.get_threshold()

    manager = load_reward_manager(config_factory("reward.reward_kwargs.steady_gc=false"), tokenizer)
    run_step(manager, step_of(20)[0])
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds and manager._collector is None

    load_reward_manager(config_factory("reward.reward_kwargs.steady_gc=true"), tokenizer)
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[:2] == thresholds[:2]
    assert gc.get_threshold()[2] > 10**9  # automatic full passes are out of reach; the young ones keep theirs


def test_steady_gc_takes_a_boolean_only():
    with pytest.raises(ValueError, match="steady_gc must be true or false"):
        RewardSettings.from_mapping({"steady_gc": "no"})
