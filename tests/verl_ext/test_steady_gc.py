"""The steady collector on an event loop of its own: full passes only after a quiet spell, never while busy."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from speciarl_verl.verl_ext.steady_gc import SteadyCollector


@pytest.fixture
def loop():
    thresholds = gc.get_threshold()
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def rollouts(collector: SteadyCollector, count: int, seconds: float):
    """``count`` rollouts in hand at once, each taking ``seconds`` of waiting (as on a judge)."""

    async def one():
        collector.enter()
        try:
            await asyncio.sleep(seconds)
        finally:
            collector.leave(asyncio.get_running_loop())

    async def all_of_them():
        await asyncio.gather(*(one() for _ in range(count)))

    return all_of_them()


def test_start_freezes_and_puts_full_passes_out_of_reach(loop):
    young, middle, _ = gc.get_threshold()
    SteadyCollector().start()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[:2] == (young, middle) and gc.get_threshold()[2] > 10**9


def test_the_pass_waits_for_a_quiet_spell_and_comes_once_per_spell(loop):
    collector = SteadyCollector(idle_s=0.1)
    collector.start()

    # a busy stretch longer than the quiet spell, the worker never without a rollout: no pass
    async def busy():
        for _ in range(6):
            await rollouts(collector, 4, 0.03)  # gaps between bursts far shorter than 0.1 s

    loop.run_until_complete(busy())
    assert collector.full_passes == 0
    loop.run_until_complete(asyncio.sleep(0.05))  # quiet, but not for long enough
    assert collector.full_passes == 0
    loop.run_until_complete(asyncio.sleep(0.2))
    assert collector.full_passes == 1
    loop.run_until_complete(asyncio.sleep(0.3))  # one pass per quiet spell, however long it lasts
    assert collector.full_passes == 1
    loop.run_until_complete(rollouts(collector, 2, 0.0))
    loop.run_until_complete(asyncio.sleep(0.2))
    assert collector.full_passes == 2


def test_a_worker_busy_past_the_longest_stretch_gets_its_pass_at_a_rollouts_end(loop):
    collector = SteadyCollector(idle_s=10.0, max_busy_s=0.05)
    collector.start()
    loop.run_until_complete(rollouts(collector, 1, 0.0))
    assert collector.full_passes == 0
    loop.run_until_complete(rollouts(collector, 1, 0.08))
    assert collector.full_passes == 1


def test_a_step_that_begins_as_the_quiet_timer_comes_due_runs_no_full_pass(loop):
    collector = SteadyCollector(idle_s=0.05)
    collector.start()
    loop.run_until_complete(rollouts(collector, 1, 0.0))  # its end schedules the look for a quiet spell
    time.sleep(0.1)  # the loop does not run: the look is due when the next step's rollouts are created
    full = []

    def count(phase, info):
        if phase == "start" and info["generation"] == 2:
            full.append(info)

    gc.callbacks.append(count)
    try:
        loop.run_until_complete(rollouts(collector, 50, 0.0))
    finally:
        gc.callbacks.remove(count)
    assert full == [] and collector.full_passes == 0
    loop.run_until_complete(asyncio.sleep(0.15))
    assert collector.full_passes == 1
