"""Verdict caches shared across steps, reward-worker processes and runs.

A store maps a cache key (see :func:`cache_key`) to a wire label and arbitrates who
judges a pair nobody has judged yet: a worker *claims* the key for ``lease_s`` seconds,
calls the judge, then *puts* the verdict, which also drops its claim. Other workers that
need the same pair meanwhile wait for the verdict instead of calling the judge again; if
the claimant dies, its lease lapses and another worker takes over.

* :class:`SQLiteVerdictStore`: one file per node (WAL journal, so the 8 reward workers
  of a node read while one writes);
* :class:`RedisVerdictStore`: one server for many nodes;
* :class:`NullVerdictStore`: nothing persists.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.judge.settings import CacheSettings

__all__ = [
    "NullVerdictStore",
    "RedisVerdictStore",
    "SQLiteVerdictStore",
    "VerdictStore",
    "cache_key",
    "check_redis_access",
    "judge_fingerprint",
    "open_verdict_store",
]


def judge_fingerprint(judge: Mapping[str, Any]) -> str:
    """Canonical JSON of everything about the judge that shapes a verdict (model, prompt
    version, decoding parameters); computed once per judge, part of every cache key."""
    return json.dumps(judge, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(ground_truth: str, prediction: str, judge: Mapping[str, Any] | str) -> str:
    """SHA-256 over the normalised pair and the judge's fingerprint.

    >>> judge = {"model": "m", "prompt": "abc", "decoding": {"temperature": 0}}
    >>> cache_key("Black-footed Albatross", "gull", judge) == cache_key("black footed albatross", "Gull", judge)
    True
    >>> cache_key("a", "b", judge) == cache_key("a", "b", {**judge, "model": "other"})
    False
    """
    fingerprint = judge if isinstance(judge, str) else judge_fingerprint(judge)
    # \x1f (unit separator) cannot occur in a normalised label, so the fields cannot run together
    blob = "\x1f".join((normalize_label(ground_truth), normalize_label(prediction), fingerprint))
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

    async def count(self) -> int:
        """Number of stored verdicts (for tests and reports)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class NullVerdictStore(VerdictStore):
    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return {}

    async def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        return set(keys)

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        return set()

    async def put_many(self, labels: Mapping[str, str], owner: str) -> None:
        return None

    async def release(self, key: str, owner: str) -> None:
        return None

    async def count(self) -> int:
        return 0


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, label TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)",
)


_KEYS_PER_QUERY = 500  # bound parameters per statement: SQLite builds before 3.32 allow 999


class SQLiteVerdictStore(VerdictStore):
    """A WAL-mode SQLite file; safe for many processes on one machine (not over NFS).

    The connection lives on one worker thread of its own, so statements run strictly one
    after another and every query reads its rows at once (a cursor left open would pin an
    old snapshot, and a write on it fails with "database is locked" instead of waiting).
    The thread belongs to a ``ThreadPoolExecutor``, which Python stops at exit.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:  # on the store's thread
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                db.execute(statement)
            self._db = db
        return self._db

    async def _run(self, work):
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speciarl-verdicts")
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: work(self._open()))

    async def _select(self, query: str, parameters: Sequence[Any]) -> list[tuple]:
        return await self._run(lambda db: db.execute(query, parameters).fetchall())

    async def _write(self, *statements: tuple[str, Sequence[Any]]) -> list[int]:
        """Run the statements in one immediate transaction; returns each statement's row count."""

        def transaction(db: sqlite3.Connection) -> list[int]:
            db.execute("BEGIN IMMEDIATE")
            try:
                counts = [db.execute(query, parameters).rowcount for query, parameters in statements]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return counts

        return await self._run(transaction)

    async def _keys_in(self, query: str, keys: Sequence[str], *extra: Any) -> list[tuple]:
        """``query`` over all ``keys`` in one trip to the store's thread (chunked under SQLite's parameter limit)."""

        def select(db: sqlite3.Connection) -> list[tuple]:
            rows: list[tuple] = []
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = list(keys[start : start + _KEYS_PER_QUERY])
                rows += db.execute(query.format(marks=",".join("?" * len(chunk))), [*chunk, *extra]).fetchall()
            return rows

        return await self._run(select) if keys else []

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return dict(await self._keys_in("SELECT key, label FROM verdicts WHERE key IN ({marks})", keys))

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        rows = await self._keys_in("SELECT key FROM claims WHERE key IN ({marks}) AND expires >= ?", keys, time.time())
        return {key for (key,) in rows}

    async def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        now = time.time()
        upsert = (
            "INSERT INTO claims (key, owner, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, expires = excluded.expires "
            "WHERE claims.expires < ? OR claims.owner = excluded.owner"
        )
        counts = await self._write(*((upsert, (key, owner, now + lease_s, now)) for key in keys))
        return {key for key, changed in zip(keys, counts, strict=True) if changed == 1}

    async def put_many(self, labels: Mapping[str, str], owner: str) -> None:
        now = time.time()
        insert = "INSERT INTO verdicts (key, label, created) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING"
        delete = "DELETE FROM claims WHERE key = ? AND owner = ?"
        statements = [(insert, (key, label, now)) for key, label in labels.items()]
        statements += [(delete, (key, owner)) for key in labels]
        await self._write(*statements)

    async def release(self, key: str, owner: str) -> None:
        await self._write(("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner)))

    async def count(self) -> int:
        ((total,),) = await self._select("SELECT COUNT(*) FROM verdicts", ())
        return int(total)

    async def aclose(self) -> None:
        if self._executor is not None:
            if self._db is not None:
                await self._run(lambda db: db.close())
                self._db = None
            self._executor.shutdown(wait=True)
            self._executor = None


# Delete the claim only if we still own it (another worker may have taken over an expired lease).
_RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_redis_access(url: str, *, has_password: bool, allow_unauthenticated: bool = False) -> None:
    """Refuse a Redis URL that reaches another host without a password.

    Loopback hosts and ``unix://`` sockets pass (only this machine reaches them); a password in
    the URL (``redis://:PASSWORD@host`` or ``?password=``) or ``has_password`` (one comes from the
    environment) passes; ``allow_unauthenticated`` is the explicit opt-out for a trusted network.

    >>> check_redis_access("redis://127.0.0.1:6379/0", has_password=False)
    >>> check_redis_access("redis://judge-node:6379/0", has_password=False)
    Traceback (most recent call last):
    ...
    ValueError: judge.cache.redis_url redis://judge-node:6379/0 reaches judge-node without a password: ...
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"judge.cache.redis_url must be a redis://, rediss:// or unix:// URL, got {url!r}")
    if allow_unauthenticated or has_password or parts.scheme == "unix":
        return
    if parts.password or parse_qs(parts.query).get("password"):
        return
    host = parts.hostname or "localhost"  # redis-py's default host
    if _is_loopback(host):
        return
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    raise ValueError(
        f"judge.cache.redis_url {shown} reaches {host} without a password: anyone who reaches that port could "
        "read and forge verdicts (and, on a default Redis, write files on its host). Start the server with a "
        "password bound to the cluster interface (redis-server --bind <cluster-ip> --requirepass ..., or an "
        "ACL user), export the password on every node and set judge.cache.redis_password_env=<VARIABLE>; on a "
        "trusted, isolated network set judge.cache.allow_unauthenticated_redis=true instead"
    )


class RedisVerdictStore(VerdictStore):
    """Verdicts and claims in one Redis server (keys ``{namespace}:verdict:*`` and ``{namespace}:claim:*``).

    ``password`` (with the URL's user, if any) authenticates; a URL reaching another host
    without one is refused unless ``allow_unauthenticated`` (see :func:`check_redis_access`).
    """

    def __init__(
        self,
        url: str,
        namespace: str = "speciarl",
        *,
        password: str | None = None,
        allow_unauthenticated: bool = False,
    ):
        check_redis_access(url, has_password=bool(password), allow_unauthenticated=allow_unauthenticated)
        self.url = url
        self._password = password
        self.namespace = namespace
        self._client = None
        self._release_script = None

    def _verdict(self, key: str) -> str:
        return f"{self.namespace}:verdict:{key}"

    def _claim(self, key: str) -> str:
        return f"{self.namespace}:claim:{key}"

    async def _conn(self):
        if self._client is None:
            import redis.asyncio as redis

            # a blocking pool waits for a free connection instead of failing when many pairs are in flight
            options: dict[str, Any] = {"password": self._password} if self._password else {}
            pool = redis.BlockingConnectionPool.from_url(
                self.url, decode_responses=True, max_connections=32, timeout=60, **options
            )
            self._client = redis.Redis(connection_pool=pool)
            self._release_script = self._client.register_script(_RELEASE_IF_OWNER)
        return self._client

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        client = await self._conn()
        labels = await client.mget([self._verdict(k) for k in keys])
        return {key: label for key, label in zip(keys, labels, strict=True) if label is not None}

    async def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        if not keys:
            return set()
        client = await self._conn()
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(self._claim(key), owner, nx=True, px=int(lease_s * 1000))
            taken = await pipe.execute()
        mine = {key for key, ok in zip(keys, taken, strict=True) if ok}
        rest = [key for key in keys if key not in mine]
        if rest:  # a claim we already hold counts as ours
            owners = await client.mget([self._claim(k) for k in rest])
            mine |= {key for key, holder in zip(rest, owners, strict=True) if holder == owner}
        return mine

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        client = await self._conn()
        owners = await client.mget([self._claim(k) for k in keys])
        return {key for key, owner in zip(keys, owners, strict=True) if owner is not None}

    async def put_many(self, labels: Mapping[str, str], owner: str) -> None:
        if not labels:
            return
        client = await self._conn()
        async with client.pipeline(transaction=False) as pipe:  # one round trip for the whole batch
            for key, label in labels.items():
                pipe.set(self._verdict(key), label, nx=True)
            for key in labels:
                await self._release_script(keys=[self._claim(key)], args=[owner], client=pipe)
            await pipe.execute()

    async def release(self, key: str, owner: str) -> None:
        await self._conn()
        await self._release_script(keys=[self._claim(key)], args=[owner])

    async def count(self) -> int:
        client = await self._conn()
        total = 0
        async for _ in client.scan_iter(match=f"{self.namespace}:verdict:*", count=1000):
            total += 1
        return total

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()
            self._client = None


def open_verdict_store(settings: CacheSettings) -> VerdictStore:
    """The store the settings name (nothing is opened until first use)."""
    if settings.backend == "sqlite":
        return SQLiteVerdictStore(settings.sqlite_path())
    if settings.backend == "redis":
        return RedisVerdictStore(
            settings.redis_url,
            settings.namespace,
            password=settings.redis_password(),
            allow_unauthenticated=settings.allow_unauthenticated_redis,
        )
    return NullVerdictStore()
