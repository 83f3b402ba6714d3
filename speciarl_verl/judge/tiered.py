"""The verifier the reward uses: rule tier, then cache, then one LLM call per unique pair.

For a batch of requests:

1. ``offline``/``auto``: the rule tier decides what it can (:mod:`.offline`);
   ``offline`` gives the rest ``deferred_outcome`` (source ``deferred``).
2. Identical pairs (same normalised ground truth and prediction) collapse to one key.
3. Keys found in this process's memo or in the shared store are ``cache`` hits.
4. Each remaining key is judged once: a key already in flight in this process is awaited
   (``dedup``); otherwise the store's claim decides which worker calls the LLM (``llm``)
   and which waits for the stored verdict (``dedup``).
5. A pair whose call fails (retries exhausted, a 4xx, a reply outside the labels) makes
   :meth:`TieredVerifier.verify` raise :class:`~speciarl_verl.judge.verifier.JudgeError`
   carrying every verdict that was reached; nothing is guessed.

Steps 1 and 3's memo need no waiting: :meth:`TieredVerifier.recall` gives those verdicts
synchronously. The reward manager, which verl calls once per rollout, uses
:meth:`TieredVerifier.verify_one`: it returns such a verdict without suspending (most rollouts
of a step end there once the cache is warm) and skips the batch bookkeeping otherwise.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from speciarl_verl.core.categories import Category
from speciarl_verl.judge.coalesce import Coalescer
from speciarl_verl.judge.llm_judge import InvalidVerdictError, LLMJudge, cap_prediction
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.settings import CacheSettings, JudgeSettings
from speciarl_verl.judge.transport import JudgeTransportError
from speciarl_verl.judge.verdict_store import VerdictStore, cache_key, judge_fingerprint, open_verdict_store
from speciarl_verl.judge.verifier import JudgeError, Verdict, VerificationRequest

__all__ = ["OfflineVerifier", "TieredVerifier"]

_MEMO_SIZE = 200_000
_BURST = 4096  # pairs per coalesced store call at most (a step of a reward worker is well under this)


def _for_a_duplicate(verdict: Verdict) -> Verdict:
    """The verdict an identical pair gets from ``verdict``: an LLM call made for another pair is a ``dedup``."""
    return Verdict(verdict.category, "dedup") if verdict.source == "llm" else verdict


def _judge_error(failure: BaseException, verdicts: list[Verdict | None]) -> JudgeError:
    """The error a batch with failed pairs raises: how many failed, the last endpoint and error."""
    endpoint = getattr(failure, "endpoint", None)
    failed = sum(v is None for v in verdicts)
    return JudgeError(
        f"judge failed for {failed} of {len(verdicts)} pair(s) (last endpoint {endpoint}): {failure}",
        verdicts,
        endpoint,
    )


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
        # key being judged by this process -> the futures of the identical requests waiting for it
        self._in_flight: dict[str, list[asyncio.Future]] = {}
        self._waiters: dict[str, asyncio.Future] = {}
        self._poller: asyncio.Task | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # One store round trip per burst: a burst that reaches the verifier within one turn of the
        # event loop is only served after that turn anyway, so splitting it would add trips, not speed.
        self._lookup: Coalescer[str, str] = Coalescer(lambda keys: self.store.get_many(keys), max_batch=_BURST)
        self._claim: Coalescer[str, bool] = Coalescer(self._claim_batch, max_batch=_BURST)
        self._put: Coalescer[tuple[str, str], bool] = Coalescer(self._put_batch, max_batch=_BURST)

    @property
    def store(self) -> VerdictStore:
        if self._store is None:
            self._store = open_verdict_store(self.settings.cache)
        return self._store

    def key(self, request: VerificationRequest) -> str:
        raw = (request.ground_truth, request.prediction)
        key = self._keys.get(raw)
        if key is None:
            assert self.llm is not None
            prediction = cap_prediction(request.prediction, self.settings.llm.max_prediction_chars)
            if len(self._keys) > _MEMO_SIZE:
                self._keys.clear()
            key = self._keys[raw] = cache_key(request.ground_truth, prediction, self._fingerprint)
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
        for i, request in enumerate(requests):
            known = self.recall(request)
            if known is None:
                pending.setdefault(self.key(request), []).append(i)
            else:
                verdicts[i] = known
        if not pending:
            return verdicts  # type: ignore[return-value]

        keys = list(pending)
        results = await asyncio.gather(
            *(self._resolve(key, requests[pending[key][0]]) for key in keys), return_exceptions=True
        )
        failures: list[BaseException] = []
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, JudgeTransportError | InvalidVerdictError):
                    raise result
                failures.append(result)
                continue
            first, *rest = pending[key]
            verdicts[first] = result
            for i in rest:
                verdicts[i] = _for_a_duplicate(result)
        if failures:
            raise _judge_error(failures[-1], verdicts)
        return verdicts  # type: ignore[return-value]

    async def verify_one(self, request: VerificationRequest) -> Verdict:
        """``(await verify([request]))[0]``, for verl's one-rollout-at-a-time calls.

        A verdict :meth:`recall` can give is returned without suspending; otherwise the pair is
        resolved as in :meth:`verify` (store, single-flight, LLM), minus the batch's bookkeeping.
        """
        known = self.recall(request)
        if known is not None:
            return known
        try:
            return await self._resolve(self.key(request), request)
        except (JudgeTransportError, InvalidVerdictError) as failure:
            raise _judge_error(failure, [None]) from failure

    def _remember(self, key: str, label: str | Category) -> Category:
        category = Category.coerce(label)
        self._memo[key] = Verdict(category, "cache")
        self._memo.move_to_end(key)
        if len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)
        return category

    async def _claim_batch(self, keys: list[str]) -> dict[str, bool]:
        claimed = await self.store.claim_many(keys, self.owner, self.settings.cache.lease_s)
        return {key: True for key in claimed}

    async def _put_batch(self, items: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        await self.store.put_many(dict(items), self.owner)
        return {item: True for item in items}

    async def _resolve(self, key: str, request: VerificationRequest) -> Verdict:
        """Judge ``key`` once per process: later callers wait for the first one's verdict.

        Each later caller waits on a future of its own, which the first caller settles directly
        (a fresh worker's first step has thousands of them, so no per-caller callback hop as
        with ``asyncio.shield``); a waiter whose task is cancelled is simply skipped.
        """
        waiters = self._in_flight.get(key)
        if waiters is not None:
            waiter = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            return _for_a_duplicate(await waiter)
        waiters = self._in_flight[key] = []
        try:
            label = await self._lookup(key)
            if label is not None:
                verdict = Verdict(self._remember(key, label), "cache")
            else:
                verdict = await self._judge_across_workers(key, request)
        except BaseException as error:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            raise
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(verdict)
            return verdict
        finally:
            del self._in_flight[key]

    async def _judge_across_workers(self, key: str, request: VerificationRequest) -> Verdict:
        store = self.store
        assert self.llm is not None
        while True:
            if await self._claim(key):
                try:
                    done = await self._lookup(key)  # finished between our lookup and our claim?
                    if done is not None:
                        await store.release(key, self.owner)
                        return Verdict(self._remember(key, done), "dedup")
                    category, latency = await self.llm.judge(request.ground_truth, request.prediction)
                except BaseException:
                    await store.release(key, self.owner)
                    raise
                await self._put((key, category.value))
                self._remember(key, category)
                return Verdict(category, "llm", latency)
            # Another worker is judging this pair: wait for its verdict; if its claim goes away
            # without one (it failed, or its lease lapsed), try to claim the pair ourselves.
            label = await self._wait_for(key)
            if label is not None:
                return Verdict(self._remember(key, label), "dedup")

    async def _wait_for(self, key: str) -> str | None:
        future = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_waiters())
        return await future

    async def _poll_waiters(self) -> None:
        """One query pair per interval for every pair this process waits on (not one per pair)."""
        store, interval = self.store, self.settings.cache.poll_interval_s
        while self._waiters:
            await asyncio.sleep(interval)
            keys = list(self._waiters)
            try:
                found = await store.get_many(keys)
                held = await store.claimed([k for k in keys if k not in found])
            except Exception as error:  # the store failed: the waiters fail with it
                for key in keys:
                    self._waiters.pop(key).set_exception(error)
                continue
            for key in keys:
                if key in found:
                    self._waiters.pop(key).set_result(found[key])
                elif key not in held:
                    self._waiters.pop(key).set_result(None)

    async def aclose(self) -> None:
        if self.llm is not None:
            await self.llm.aclose()
        if self._store is not None:
            await self._store.aclose()


class OfflineVerifier(TieredVerifier):
    """The rule tier alone (``judge.kind=offline``): no network, no cache."""

    def __init__(self, deferred_outcome: Category | str = Category.WRONG):
        settings = JudgeSettings(kind="offline", deferred_outcome=deferred_outcome, cache=CacheSettings(backend="none"))
        super().__init__(settings)
