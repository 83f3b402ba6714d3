"""The Redis verdict store: one server shared by the reward workers of every node.

A URL that reaches another host without a password is refused (:func:`check_redis_access`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from speciarl_verl.judge.redaction import redact_url
from speciarl_verl.judge.verdict_store import VerdictStore

__all__ = ["RedisVerdictStore", "check_redis_access", "is_reconnectable"]

T = TypeVar("T")


def is_reconnectable(error: BaseException) -> bool:
    """A refused, reset or closed connection, or a server still loading its data: a restart, worth
    asking again. A wrong password (redis-py files it under ``ConnectionError`` too) and a timeout
    (a server that silently drops packets) are not."""
    from redis import exceptions

    if isinstance(error, exceptions.AuthenticationError | exceptions.AuthorizationError):
        return False
    return isinstance(error, exceptions.ConnectionError | ConnectionError)


# Delete the claim only if we still own it (another worker may have taken over an expired lease).
_RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Extend the claim to ARGV[2] ms only if we still own it (a lapsed claim is gone, or someone else's).
_RENEW_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
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
        raise ValueError(f"judge.cache.redis_url must be a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}")
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
    Connecting gives up after ``connect_timeout_s`` and a command after ``socket_timeout_s``
    (a server that drops packets raises ``redis.TimeoutError`` instead of hanging the worker).
    A server that refuses or drops connections (restarting) is asked again with back-off for
    ``reconnect_s`` seconds (:func:`is_reconnectable`); every operation is idempotent (``SET NX``,
    owner-checked scripts, reads), so repeating a pipeline that half ran changes nothing.
    """

    def __init__(
        self,
        url: str,
        namespace: str = "speciarl",
        *,
        password: str | None = None,
        allow_unauthenticated: bool = False,
        connect_timeout_s: float = 10.0,
        socket_timeout_s: float = 30.0,
        reconnect_s: float = 30.0,
    ):
        check_redis_access(url, has_password=bool(password), allow_unauthenticated=allow_unauthenticated)
        self.url = url
        self._password = password
        self.namespace = namespace
        self.connect_timeout_s = connect_timeout_s
        self.socket_timeout_s = socket_timeout_s
        self.reconnect_s = reconnect_s
        self._client = None
        self._release_script = None
        self._renew_script = None

    def describe(self) -> str:
        return f"Redis cache {redact_url(self.url)} (namespace {self.namespace})"

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
                self.url,
                decode_responses=True,
                max_connections=32,
                timeout=60,
                socket_connect_timeout=self.connect_timeout_s,
                socket_timeout=self.socket_timeout_s,
                **options,
            )
            self._client = redis.Redis(connection_pool=pool)
            self._release_script = self._client.register_script(_RELEASE_IF_OWNER)
            self._renew_script = self._client.register_script(_RENEW_IF_OWNER)
        return self._client

    async def _again(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()``, repeated while the server is restarting, for at most ``reconnect_s`` seconds."""
        retrying = AsyncRetrying(
            stop=stop_after_delay(self.reconnect_s),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception(is_reconnectable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await operation()
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        return await self._again(lambda: self._get_many(keys))

    async def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        return await self._again(lambda: self._claim_many(keys, owner, lease_s))

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        return await self._again(lambda: self._claimed(keys))

    async def put_many(self, labels: Mapping[str, str], owner: str) -> None:
        await self._again(lambda: self._put_many(labels, owner))

    async def release(self, key: str, owner: str) -> None:
        await self._again(lambda: self._release(key, owner))

    async def renew_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        return await self._again(lambda: self._renew_many(keys, owner, lease_s))

    async def _get_many(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        client = await self._conn()
        labels = await client.mget([self._verdict(k) for k in keys])
        return {key: label for key, label in zip(keys, labels, strict=True) if label is not None}

    async def _claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
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

    async def _claimed(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        client = await self._conn()
        owners = await client.mget([self._claim(k) for k in keys])
        return {key for key, owner in zip(keys, owners, strict=True) if owner is not None}

    async def _put_many(self, labels: Mapping[str, str], owner: str) -> None:
        if not labels:
            return
        client = await self._conn()
        async with client.pipeline(transaction=False) as pipe:  # one round trip for the whole batch
            for key, label in labels.items():
                pipe.set(self._verdict(key), label, nx=True)
            for key in labels:
                await self._release_script(keys=[self._claim(key)], args=[owner], client=pipe)
            await pipe.execute()

    async def _release(self, key: str, owner: str) -> None:
        await self._conn()
        await self._release_script(keys=[self._claim(key)], args=[owner])

    async def _renew_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        if not keys:
            return set()
        client = await self._conn()
        lease_ms = max(1, int(lease_s * 1000))
        async with client.pipeline(transaction=False) as pipe:  # one round trip; each script call is atomic
            for key in keys:
                await self._renew_script(keys=[self._claim(key)], args=[owner, lease_ms], client=pipe)
            renewed = await pipe.execute()
        return {key for key, ok in zip(keys, renewed, strict=True) if ok == 1}

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
