"""Verdict caches shared across steps, reward-worker processes and runs.

A store maps a cache key (see :func:`cache_key`) to a wire label and arbitrates who
judges a pair nobody has judged yet: a worker *claims* the key for ``lease_s`` seconds,
calls the judge, then *puts* the verdict, which also drops its claim. Other workers that
need the same pair meanwhile wait for the verdict instead of calling the judge again; if
the claimant dies, its lease lapses and another worker takes over.

A worker that judges a pair for longer than the lease (retries, back-off) keeps its claim
with :meth:`~VerdictStore.renew_many`.

* :class:`~speciarl_verl.judge.sqlite_store.SQLiteVerdictStore`: one file per node (WAL
  journal, so the 8 reward workers of a node read while one writes); its folder must not be
  writable by other users (see :func:`~speciarl_verl.judge.sqlite_store.check_cache_folder`);
* :class:`~speciarl_verl.judge.redis_store.RedisVerdictStore`: one server for many nodes;
* :class:`NullVerdictStore`: nothing persists.

:meth:`~VerdictStore.describe` names a store for messages, never with a password.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from speciarl_verl.judge.settings import CacheSettings

__all__ = [
    "NullVerdictStore",
    "VerdictStore",
    "cache_key",
    "judge_fingerprint",
    "open_verdict_store",
]


def judge_fingerprint(judge: Mapping[str, Any]) -> str:
    """Canonical JSON of everything about the judge that shapes a verdict (model, prompt
    version, decoding parameters); computed once per judge, part of every cache key."""
    return json.dumps(judge, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(ground_truth: str, prediction: str, judge: Mapping[str, Any] | str) -> str:
    """SHA-256 over the two strings the judge reads and the judge's fingerprint.

    The strings are taken as they are: callers pass what they send to the judge
    (:func:`~speciarl_verl.judge.llm_judge.judge_input`), so two pairs share a key exactly when the
    judge would read the same text, and nothing a key folds away can change a verdict.

    >>> judge = {"model": "m", "prompt": "abc", "decoding": {"temperature": 0}}
    >>> cache_key("laysan albatross", "crow", judge) == cache_key("laysan albatross", "crow", judge)
    True
    >>> cache_key("laysan albatross", "crow", judge) == cache_key("laysan albatross", "Crow", judge)
    False
    >>> cache_key("a", "b", judge) == cache_key("a", "b", {**judge, "model": "other"})
    False
    """
    fingerprint = judge if isinstance(judge, str) else judge_fingerprint(judge)
    # length-prefixed fields: no two different (ground truth, prediction) pairs give the same blob
    blob = f"{len(ground_truth)}:{ground_truth}\x1f{len(prediction)}:{prediction}\x1f{fingerprint}"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class VerdictStore(ABC):
    """A key -> label store with leased claims. All methods are coroutines."""

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Labels of the keys that have one."""

    @abstractmethod
    async def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        """Take the right to judge each key unless another owner holds an unexpired claim on it.

        Returns the keys now claimed by ``owner``.
        """

    async def claim(self, key: str, owner: str, lease_s: float) -> bool:
        return key in await self.claim_many([key], owner, lease_s)

    @abstractmethod
    async def claimed(self, keys: Sequence[str]) -> set[str]:
        """The keys on which some owner holds an unexpired claim."""

    @abstractmethod
    async def put_many(self, labels: Mapping[str, str], owner: str) -> None:
        """Store the labels (for each key the first one stored wins) and drop ``owner``'s claims."""

    async def put(self, key: str, label: str, owner: str) -> None:
        await self.put_many({key: label}, owner)

    @abstractmethod
    async def release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim without a verdict (the judge failed)."""

    @abstractmethod
    async def renew_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        """Extend to ``lease_s`` seconds from now each claim ``owner`` still holds among ``keys``.

        Returns the keys renewed. A claim that has lapsed (and may have been taken by another
        owner since) is not renewed: the caller's work on that key may be duplicated, but it
        never takes a claim back from a worker that now holds it.
        """

    def describe(self) -> str:
        """What this store is, for messages and logs (never with a password)."""
        return type(self).__name__

    async def count(self) -> int:
        """Number of stored verdicts (for tests and reports)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class NullVerdictStore(VerdictStore):
    def describe(self) -> str:
        return "no cache"

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return {}

    async def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        return set(keys)

    async def renew_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        return set(keys)

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        return set()

    async def put_many(self, labels: Mapping[str, str], owner: str) -> None:
        return None

    async def release(self, key: str, owner: str) -> None:
        return None

    async def count(self) -> int:
        return 0


def open_verdict_store(settings: CacheSettings) -> VerdictStore:
    """The store the settings name (nothing is opened until first use)."""
    if settings.backend == "sqlite":
        from speciarl_verl.judge.sqlite_store import SQLiteVerdictStore

        return SQLiteVerdictStore(settings.sqlite_path())
    if settings.backend == "redis":
        from speciarl_verl.judge.redis_store import RedisVerdictStore

        return RedisVerdictStore(
            settings.redis_url,
            settings.namespace,
            password=settings.redis_password(),
            allow_unauthenticated=settings.allow_unauthenticated_redis,
            reconnect_s=settings.reconnect_s,
        )
    return NullVerdictStore()
