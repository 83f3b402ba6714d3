"""The verifier the reward uses: rule tier, then cache, then one LLM call per unique pair.

For a batch of requests:

1. ``offline``/``auto``: the rule tier decides what it can (:mod:`.offline`);
   ``offline`` gives the rest ``deferred_outcome`` (source ``deferred``).
2. Identical pairs (same normalised ground truth and prediction) collapse to one key.
3. Keys found in this process's memo or in the shared store are ``cache`` hits.
4. Each remaining key is judged once: a key already in flight in this process is awaited
   (``dedup``); otherwise the store's claim decides which worker calls the LLM (``llm``)
   and which waits for the stored verdict (``dedup``).
5. A pair that cannot be judged makes :meth:`TieredVerifier.verify` raise
   :class:`~speciarl_verl.judge.verifier.JudgeError` carrying every verdict that was reached;
   nothing is guessed. *Every* exception of the work counts: the judge's (retries exhausted, a
   4xx, a reply outside the labels), the cache's (Redis unreachable, SQLite locked past its busy
   timeout) and the configuration's (an unset ``api_key_env``); the message names the endpoint,
   the cache (without its password) or the setting. Only cancellation passes through as itself.

The cache key is made of the two strings the judge reads (:func:`~speciarl_verl.judge.llm_judge.judge_input`),
so two pairs share a verdict exactly when the judge would read the same text.

While a pair is being judged, this process renews its claim on the pair every third of
``cache.lease_s``, so a slow judge (retries, back-off, a queue of requests) never lets the lease
lapse and another worker judge the pair a second time; a crashed worker stops renewing.

The machinery that waits (in-flight pairs, the store poller, the coalesced store calls) belongs
to one event loop; a verifier used from a new loop starts it afresh.

Steps 1 and 3's memo need no waiting: :meth:`TieredVerifier.recall` gives those verdicts
synchronously. The reward manager, which verl calls once per rollout, uses
:meth:`TieredVerifier.verify_one`: it returns such a verdict without suspending (most rollouts
of a step end there once the cache is warm) and skips the batch bookkeeping otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

from speciarl_verl.core.categories import Category
from speciarl_verl.judge.coalesce import Coalescer
from speciarl_verl.judge.llm_judge import LLMJudge, judge_input
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.settings import CacheSettings, JudgeSettings
from speciarl_verl.judge.verdict_store import VerdictStore, cache_key, judge_fingerprint, open_verdict_store
from speciarl_verl.judge.verifier import JudgeError, Verdict, VerificationRequest

__all__ = ["OfflineVerifier", "TieredVerifier", "VerdictCacheError"]

logger = logging.getLogger(__name__)

_MEMO_SIZE = 200_000
_BURST = 4096  # pairs per coalesced store call at most (a step of a reward worker is well under this)


def _for_a_duplicate(verdict: Verdict) -> Verdict:
    """The verdict an identical pair gets from ``verdict``: an LLM call made for another pair is a ``dedup``."""
    return Verdict(verdict.category, "dedup") if verdict.source == "llm" else verdict


class VerdictCacheError(RuntimeError):
    """The verdict cache failed (could not be opened, read or written); the message names it."""


def _describe(error: BaseException) -> str:
    """One line for an exception: its own message when it names what failed, else its type too."""
    if isinstance(error, JudgeError | VerdictCacheError) or type(error).__module__.startswith("speciarl_verl"):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _judge_error(failure: BaseException, verdicts: list[Verdict | None], attempts: int | None = None) -> JudgeError:
    """The error a batch with failed pairs raises: how many failed, and the last failure in words."""
    failed = sum(v is None for v in verdicts)
    return JudgeError(
        f"judge failed for {failed} of {len(verdicts)} pair(s): {_describe(failure)}",
        verdicts,
        getattr(failure, "endpoint", None),
        attempts,
    )


class _Flight:
    """One pair being resolved in this process: the task doing it and the futures of its callers."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.waiters: list[asyncio.Future] = []


class TieredVerifier:
    """Implements :class:`~speciarl_verl.judge.verifier.Verifier` for every ``judge.kind``.

    Store traffic is coalesced: the lookups, claims and writes of all pairs that arrive
    within a millisecond (verl calls the reward manager once per rollout, thousands at a
    time) go to the store as one batch each.
    """

    def __init__(self, settings: JudgeSettings, store: VerdictStore | None = None):
        self.settings = settings
        self.llm = LLMJudge(settings.llm) if settings.kind != "offline" else None
        self._fingerprint = judge_fingerprint(self.llm.identity) if self.llm is not None else ""
        self._store = store
        # key -> the Verdict a cache hit returns (verdicts are immutable, so one object serves every hit)
        self._memo: OrderedDict[str, Verdict] = OrderedDict()
        self._offline_verdicts = {category: Verdict(category, "offline") for category in Category}
        self._deferred = Verdict(settings.deferred_outcome, "deferred")
        self._rules_first = settings.kind in ("offline", "auto")
        self._keys: dict[tuple[str, str], str] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, with this verifier's waiting machinery made for it (afresh on a new loop:
        a task or future of a loop that is gone would never finish)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            # key being resolved by this process -> its task and the callers waiting for it
            self._in_flight: dict[str, _Flight] = {}
            # key another worker is judging -> the future its verdict (or the claim's end) settles
            self._waiters: dict[str, asyncio.Future] = {}
            self._poller: asyncio.Task | None = None
            # keys this process has claimed and is judging; their leases are renewed until the verdict is in
            self._held: set[str] = set()
            self._renewer: asyncio.Task | None = None
            # One store round trip per burst: a burst that reaches the verifier within one turn of the
            # event loop is only served after that turn anyway, so splitting it would add trips, not speed.
            self._lookup: Coalescer[str, str] = Coalescer(self._get_batch, max_batch=_BURST)
            self._claim: Coalescer[str, bool] = Coalescer(self._claim_batch, max_batch=_BURST)
            self._put: Coalescer[tuple[str, str], bool] = Coalescer(self._put_batch, max_batch=_BURST)
        return loop

    @property
    def store(self) -> VerdictStore:
        if self._store is None:
            self._store = open_verdict_store(self.settings.cache)
        return self._store

    async def _cached(self, method: str, *args: Any) -> Any:
        """``await store.<method>(*args)``; any failure of the store (or of opening it) is a
        :class:`VerdictCacheError` naming the store."""
        try:
            store = self.store
        except Exception as error:
            raise VerdictCacheError(f"verdict cache ({self.settings.cache.backend}): {_describe(error)}") from error
        try:
            return await getattr(store, method)(*args)
        except Exception as error:
            raise VerdictCacheError(f"{store.describe()} failed: {_describe(error)}") from error

    def key(self, request: VerificationRequest) -> str:
        """The pair's cache key: the judge's fingerprint and the two strings the judge reads for it."""
        raw = (request.ground_truth, request.prediction)
        key = self._keys.get(raw)
        if key is None:
            assert self.llm is not None
            if len(self._keys) > _MEMO_SIZE:
                self._keys.clear()
            key = self._keys[raw] = cache_key(*judge_input(self.settings.llm, *raw), self._fingerprint)
        return key

    def recall_pair(self, ground_truth: str, prediction: str) -> Verdict | None:
        """:meth:`recall` for a pair alone, without building its request; ``None`` unless ``judge.kind=llm``.

        With the rule tier on, a pair's verdict also depends on the row (parents, synonyms,
        data source), so only :meth:`recall` can answer.
        """
        if self._rules_first:
            return None
        key = self._keys.get((ground_truth, prediction))
        verdict = None if key is None else self._memo.get(key)
        if verdict is not None:
            self._memo.move_to_end(key)
        return verdict

    def recall(self, request: VerificationRequest) -> Verdict | None:
        """The verdict this process can give ``request`` without waiting (rule tier or memo), else ``None``."""
        if self._rules_first:
            decided = decide_offline(request)
            if decided is not None:
                return self._offline_verdicts[decided]
            if self.llm is None:  # judge.kind=offline
                return self._deferred
        key = self._keys.get((request.ground_truth, request.prediction)) or self.key(request)
        verdict = self._memo.get(key)
        if verdict is not None:
            self._memo.move_to_end(key)
        return verdict

    async def verify(self, requests: Sequence[VerificationRequest]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        try:
            for i, request in enumerate(requests):
                known = self.recall(request)
                if known is None:
                    pending.setdefault(self.key(request), []).append(i)
                else:
                    verdicts[i] = known
        except Exception as failure:  # a pair the rule tier or the key cannot take: nothing after it is known
            raise _judge_error(failure, verdicts) from failure
        if not pending:
            return verdicts  # type: ignore[return-value]

        keys = list(pending)
        results = await asyncio.gather(
            *(self._resolve(key, requests[pending[key][0]]) for key in keys), return_exceptions=True
        )
        failures: list[Exception] = []
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):  # cancellation and interpreter exits are not judge failures
                    raise result
                failures.append(result)
                continue
            first, *rest = pending[key]
            verdicts[first] = result
            for i in rest:
                verdicts[i] = _for_a_duplicate(result)
        if failures:
            raise _judge_error(failures[-1], verdicts) from failures[-1]
        return verdicts  # type: ignore[return-value]

    async def verify_one(self, request: VerificationRequest) -> Verdict:
        """``(await verify([request]))[0]``, for verl's one-rollout-at-a-time calls.

        A verdict :meth:`recall` can give is returned without suspending; otherwise the pair is
        resolved as in :meth:`verify` (store, single-flight, LLM), minus the batch's bookkeeping.
        Any failure is a :class:`JudgeError`, as from :meth:`verify`; when this call's own LLM call
        failed, it carries that call's ``attempts`` (an identical pair that waited on it carries none,
        so the attempts are counted once).
        """
        first = False
        try:
            known = self.recall(request)
            if known is not None:
                return known
            waiter, first = self._join(self.key(request), request)
            verdict = await waiter
        except Exception as failure:
            attempts = getattr(failure, "attempts", None) if first else None
            raise _judge_error(failure, [None], attempts) from failure
        return verdict if first else _for_a_duplicate(verdict)

    def _remember(self, key: str, label: str | Category) -> Category:
        category = Category.coerce(label)
        self._memo[key] = Verdict(category, "cache")
        self._memo.move_to_end(key)
        if len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)
        return category

    async def _get_batch(self, keys: list[str]) -> dict[str, str]:
        return await self._cached("get_many", keys)

    async def _claim_batch(self, keys: list[str]) -> dict[str, bool]:
        claimed = await self._cached("claim_many", keys, self.owner, self.settings.cache.lease_s)
        return {key: True for key in claimed}

    async def _put_batch(self, items: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        await self._cached("put_many", dict(items), self.owner)
        return {item: True for item in items}

    async def _resolve(self, key: str, request: VerificationRequest) -> Verdict:
        """Judge ``key`` once per process: every caller of a key waits for the one task resolving it.

        The task is nobody's own: a caller that is cancelled stops waiting, and the others (and the
        cache) still get the verdict. Each caller waits on a future of its own, which the task's
        completion settles directly (a fresh worker's first step has thousands of them, so no
        per-caller callback hop as with ``asyncio.shield``).
        """
        waiter, first = self._join(key, request)
        verdict = await waiter
        return verdict if first else _for_a_duplicate(verdict)

    def _join(self, key: str, request: VerificationRequest) -> tuple[asyncio.Future, bool]:
        """A future of ``key``'s verdict for this caller, and whether this caller started the task
        resolving it (its verdict, or its failure, is then this caller's own)."""
        loop = self._bind_loop()
        flight = self._in_flight.get(key)
        first = flight is None
        if flight is None:
            flight = self._in_flight[key] = _Flight(loop.create_task(self._resolve_now(key, request)))
            flight.task.add_done_callback(partial(self._settle, key, flight))
        waiter = loop.create_future()
        flight.waiters.append(waiter)
        return waiter, first

    def _settle(self, key: str, flight: _Flight, task: asyncio.Task) -> None:
        if self._in_flight.get(key) is flight:  # (a flight of a loop already replaced is not in there)
            del self._in_flight[key]
        if task.cancelled():  # only when its loop shuts down: its callers go with it
            for waiter in flight.waiters:
                waiter.cancel()
            return
        error = task.exception()
        for waiter in flight.waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if error is None:
                waiter.set_result(task.result())
            else:
                waiter.set_exception(error)

    async def _resolve_now(self, key: str, request: VerificationRequest) -> Verdict:
        label = await self._lookup(key)
        if label is not None:
            return Verdict(self._remember(key, label), "cache")
        return await self._judge_across_workers(key, request)

    async def _judge_across_workers(self, key: str, request: VerificationRequest) -> Verdict:
        assert self.llm is not None
        while True:
            if await self._claim(key):
                self._hold(key)
                try:
                    done = await self._lookup(key)  # finished between our lookup and our claim?
                    if done is not None:
                        await self._cached("release", key, self.owner)
                        return Verdict(self._remember(key, done), "dedup")
                    texts = judge_input(self.settings.llm, request.ground_truth, request.prediction)
                    judged = await self.llm.judge(*texts)
                except BaseException:
                    await self._release_quietly(key)
                    raise
                finally:
                    self._let_go(key)
                await self._put((key, judged.category.value))
                self._remember(key, judged.category)
                return Verdict(judged.category, "llm", judged.latency_s, judged.attempts)
            # Another worker is judging this pair: wait for its verdict; if its claim goes away
            # without one (it failed, or its lease lapsed), try to claim the pair ourselves.
            label = await self._wait_for(key)
            if label is not None:
                return Verdict(self._remember(key, label), "dedup")

    async def _release_quietly(self, key: str) -> None:
        """Drop our claim after a failure; if even that fails, the lease lapses on its own."""
        try:
            await self._cached("release", key, self.owner)
        except Exception as error:
            logger.warning("could not release a claim (it lapses within %s s): %s", self.settings.cache.lease_s, error)

    def _hold(self, key: str) -> None:
        """Keep renewing our claim on ``key`` while it is being judged."""
        self._held.add(key)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_held())

    def _let_go(self, key: str) -> None:
        """Stop renewing the claim on ``key``; with nothing left to renew, the renewer stops too (no task left
        sleeping in a worker that has gone quiet)."""
        self._held.discard(key)
        if not self._held and self._renewer is not None and not self._renewer.done():
            self._renewer.cancel()

    async def _renew_held(self) -> None:
        """Every third of the lease, extend the claims of the pairs this process is still judging."""
        lease = self.settings.cache.lease_s
        while self._held:
            await asyncio.sleep(lease / 3)
            keys = list(self._held)
            if not keys:
                break
            try:
                await self._cached("renew_many", keys, self.owner, lease)
            except Exception as error:  # a lapsed lease costs at most a second judge call, never a wrong verdict
                logger.warning("could not renew the claims on %d pair(s) being judged: %s", len(keys), error)

    async def _wait_for(self, key: str) -> str | None:
        future = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_waiters())
        return await future

    async def _poll_waiters(self) -> None:
        """One query pair per interval for every pair this process waits on (not one per pair)."""
        interval = self.settings.cache.poll_interval_s
        waiters = self._waiters
        while waiters:
            await asyncio.sleep(interval)
            for key in [k for k, future in waiters.items() if future.done()]:  # its waiter was cancelled
                del waiters[key]
            keys = list(waiters)
            if not keys:
                break
            try:
                found = await self._cached("get_many", keys)
                open_keys = [k for k in keys if k not in found]
                held = await self._cached("claimed", open_keys)
            except Exception as error:  # the store failed: the waiters fail with it
                for key in keys:
                    future = waiters.pop(key, None)
                    if future is not None and not future.done():
                        future.set_exception(error)
                continue
            for key in keys:
                if key in found or key not in held:
                    future = waiters.pop(key, None)
                    if future is not None and not future.done():
                        future.set_result(found.get(key))

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            for task in (self._renewer, self._poller):
                if task is not None and not task.done():
                    task.cancel()
        if self.llm is not None:
            await self.llm.aclose()
        if self._store is not None:
            await self._store.aclose()


class OfflineVerifier(TieredVerifier):
    """The rule tier alone (``judge.kind=offline``): no network, no cache."""

    def __init__(self, deferred_outcome: Category | str = Category.WRONG):
        settings = JudgeSettings(kind="offline", deferred_outcome=deferred_outcome, cache=CacheSettings(backend="none"))
        super().__init__(settings)
