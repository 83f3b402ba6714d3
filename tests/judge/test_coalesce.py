"""The coalescer answers every waiter of a burst, even when nothing but itself holds the batches in flight."""

import asyncio
import gc
import weakref

from speciarl_verl.judge.coalesce import Coalescer


def test_a_bursts_waiters_all_finish_when_the_loop_collects_garbage_between_turns():
    # A batch call waiting on something only it references (as a client can, on a connection
    # the loop does not hold) is reachable only through the task delivering it.
    gates: weakref.WeakSet[asyncio.Future] = weakref.WeakSet()
    batches: list[list[str]] = []

    async def lookup(keys):
        batches.append(sorted(keys))
        gate = asyncio.get_running_loop().create_future()
        gates.add(gate)
        await gate
        return {key: key.upper() for key in keys}

    async def burst():
        coalescer = Coalescer(lookup, window_s=0.001, max_batch=2)
        waiters = [asyncio.ensure_future(coalescer(key)) for key in "abcde"]
        for _ in range(10):
            await asyncio.sleep(0.002)
            gc.collect()
        for gate in list(gates):
            gate.set_result(None)
        done, pending = await asyncio.wait(waiters, timeout=2)
        for waiter in pending:
            waiter.cancel()
        return [w.result() for w in waiters if w in done], len(pending)

    answers, hanging = asyncio.run(burst())
    assert hanging == 0
    assert answers == ["A", "B", "C", "D", "E"]
    assert sorted(batches) == [["a", "b"], ["c", "d"], ["e"]]  # two full batches at once, the rest after the window


def test_a_coalescer_reused_in_a_new_loop_after_one_was_torn_down_mid_window_still_answers():
    async def lookup(keys):
        return {key: key.upper() for key in keys}

    coalescer = Coalescer(lookup, window_s=0.05)

    async def abandoned():
        waiting = asyncio.ensure_future(coalescer("a"))
        await asyncio.sleep(0)  # the window's timer is scheduled; the loop ends before it fires
        assert not waiting.done()

    asyncio.run(abandoned())

    async def later():
        return await asyncio.wait_for(coalescer("b"), timeout=5)

    assert asyncio.run(later()) == "B"
