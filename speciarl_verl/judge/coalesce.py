"""Turning many single-item awaits into one batched call.

verl scores rollouts one at a time, so each reward-manager call asks the verifier about one
pair. A :class:`Coalescer` collects the items that arrive within a short window (by default
the current turn of the event loop plus one millisecond, or until ``max_batch`` items are
waiting) and answers them with one call of a batch function: one store query for hundreds
of cache lookups instead of hundreds.

A coalescer serves one event loop at a time. Called from another loop (a verifier reused after
``asyncio.run`` returned), it drops what the old loop left unserved, whose callers are gone with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``await coalescer(item)`` -> ``batch_fn(items)[item]`` (``None`` if absent), batched per window.

    >>> async def lookup(keys):
    ...     calls.append(sorted(keys))
    ...     return {k: k.upper() for k in keys}
    >>> calls = []
    >>> async def main():
    ...     c = Coalescer(lookup)
    ...     return await asyncio.gather(c("a"), c("b"), c("a"))
    >>> asyncio.run(main()), calls
    (['A', 'B', 'A'], [['a', 'b']])
    """

    def __init__(
        self,
        batch_fn: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        window_s: float = 0.001,
        max_batch: int = 256,
    ):
        self.batch_fn = batch_fn
        self.window_s = window_s
        self.max_batch = max_batch
        self._pending: dict[K, list[asyncio.Future]] = {}
        self._timer: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop keeps only weak references to tasks: a batch call waiting on something nothing
        # else holds would be collected mid-flight and its waiters would hang. Held until done.
        self._in_flight: set[asyncio.Task] = set()

    async def __call__(self, item: K) -> V | None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # a window timer of a loop torn down mid-window never fires: without this reset every
            # later item would wait behind it forever
            self._pending, self._timer, self._in_flight, self._loop = {}, None, set(), loop
        future = loop.create_future()
        self._pending.setdefault(item, []).append(future)
        if len(self._pending) >= self.max_batch:
            # a full batch goes now: while thousands of calls arrive in one burst, the first
            # batches are already being served instead of all waiting for the burst to end
            batch, self._pending = self._pending, {}
            self._hold(loop.create_task(self._deliver(batch)))
        elif self._timer is None:
            self._timer = self._hold(loop.create_task(self._after_window()))
        return await future

    def _hold(self, task: asyncio.Task) -> asyncio.Task:
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _after_window(self) -> None:
        await asyncio.sleep(self.window_s)
        batch, self._pending, self._timer = self._pending, {}, None
        if batch:
            await self._deliver(batch)

    async def _deliver(self, batch: dict[K, list[asyncio.Future]]) -> None:
        try:
            results = await self.batch_fn(list(batch))
        except BaseException as error:  # every waiter of this batch gets the error
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        for item, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(results.get(item))
