"""Full garbage-collection passes between reward steps, not inside them.

A reward worker is a long-lived process: its start-up heap (config, tokenizer, verifier, verl's
modules) is built once and never changes, and then it scores bursts of rollouts, one per training
step, with idle time between them. Left alone, CPython runs a full (generation-2) pass whenever
enough objects have survived two younger collections, which happens inside a burst, since a step's
rollouts live until it ends; a full pass walks the whole heap (38-61 ms in
``benchmarks/reward_path.py``, doubling a warm step).

:class:`SteadyCollector` changes two things in the process that builds the reward manager:

* at start, ``gc.collect()`` then ``gc.freeze()``: the start-up heap moves to the permanent
  generation, which no pass walks;
* automatic full passes are switched off (the third threshold set out of reach; the young
  generations keep theirs) and run instead once the worker has had no rollout in hand for
  :data:`IDLE_S`, between steps. A worker that never pauses that long still gets one after
  :data:`MAX_BUSY_S` of uninterrupted work, at the end of a rollout, so cyclic garbage that reached
  the oldest generation is always freed.

Objects freed by their reference count are freed at once as always; only reference cycles wait for
the next full pass. A cycle among the frozen start-up objects is never freed: they live as long as
the worker.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = ["IDLE_S", "MAX_BUSY_S", "SteadyCollector"]

#: Seconds without a rollout in hand after which the worker runs its full pass.
IDLE_S = 0.5
#: Longest stretch of uninterrupted work without a full pass.
MAX_BUSY_S = 300.0
#: A third threshold no count of generation-1 passes reaches.
_OUT_OF_REACH = 2**31 - 1


@dataclass
class _ProcessState:
    """What every collector in a process shares, since Python's collector is one per process."""

    in_hand: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    last_full: float = field(default_factory=time.monotonic)


class SteadyCollector:
    """Freezes the start-up heap and moves full collections to the idle time between steps.

    Call :meth:`start` once the long-lived objects exist, then :meth:`enter` / :meth:`leave` around every
    rollout, on the event loop the rollouts run on. ``full_passes`` counts the passes it ran. Quiet and the
    last full pass are the process's, not one collector's: where a process holds several reward managers (a
    test session does), one that has gone idle never collects while another has a rollout in hand.
    """

    _process: ClassVar[_ProcessState] = _ProcessState()

    def __init__(self, idle_s: float = IDLE_S, max_busy_s: float = MAX_BUSY_S) -> None:
        self.idle_s = idle_s
        self.max_busy_s = max_busy_s
        self.full_passes = 0
        self._timer: asyncio.Handle | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _OUT_OF_REACH)
        self._process.last_full = time.monotonic()

    def enter(self) -> None:
        self._process.in_hand += 1

    def leave(self, loop: asyncio.AbstractEventLoop) -> None:
        process = self._process
        process.in_hand -= 1
        process.last_activity = now = time.monotonic()
        if now - process.last_full >= self.max_busy_s:
            self._collect()
        elif process.in_hand == 0 and self._timer is None:
            # one timer per quiet spell, not one per rollout: it looks again when it fires
            self._timer = loop.call_later(self.idle_s, self._when_quiet, loop)

    def _when_quiet(self, loop: asyncio.AbstractEventLoop, confirmed: bool = False) -> None:
        self._timer = None
        if self._process.in_hand:
            return  # the rollout in hand schedules the next look when it leaves
        quiet = time.monotonic() - self._process.last_activity
        if quiet < self.idle_s:
            self._timer = loop.call_later(self.idle_s - quiet, self._when_quiet, loop)
        elif confirmed:
            self._collect()
        else:
            # Look once more in the loop's next round: a burst of rollouts created in this round (a step that
            # begins as the timer comes due, when the loop had not run in between) has entered by then.
            self._timer = loop.call_soon(self._when_quiet, loop, True)

    def _collect(self) -> None:
        gc.collect()
        self.full_passes += 1
        self._process.last_full = time.monotonic()
