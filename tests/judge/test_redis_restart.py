"""A Redis verdict cache that restarts under the reward: asked again while it is down, nothing lost.

A real ``redis-server`` (password, append-only file fsynced on every write) killed with SIGKILL and
started again on its port; a wrong password is never retried."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
import redis

from speciarl_verl.judge.redis_store import RedisVerdictStore, is_reconnectable
from speciarl_verl.offline_fixtures.redis_process import RedisProcess

PASSWORD = "redis-pw"


@pytest.fixture
def server(tmp_path):
    process = RedisProcess(tmp_path / "redis", password=PASSWORD).start()
    yield process
    process.stop()


def test_a_cache_killed_and_restarted_mid_lookup_is_waited_for_and_keeps_its_verdicts(server):
    restarting = threading.Thread(target=server.restart, kwargs={"sig": signal.SIGKILL, "down_s": 1.5})

    async def scenario():
        store = RedisVerdictStore(server.url, "restart", password=PASSWORD, reconnect_s=30)
        try:
            await store.put_many({f"k{i}": "specific" for i in range(50)}, owner="worker-a")
            restarting.start()
            await asyncio.sleep(0.3)  # the server is down now
            started = time.monotonic()
            during = await store.get_many([f"k{i}" for i in range(50)])
            waited = time.monotonic() - started
            await asyncio.to_thread(restarting.join)
            taken = await store.claim_many(["new"], owner="worker-a", lease_s=30)
            await store.put_many({"new": "generic"}, owner="worker-a")
            return during, waited, taken, await store.count()
        finally:
            await store.aclose()

    try:
        during, waited, taken, count = asyncio.run(scenario())
    finally:
        if restarting.is_alive():  # the server it starts must exist before the fixture stops it
            restarting.join(60)
    assert during == {f"k{i}": "specific" for i in range(50)}  # every verdict written before the kill
    assert waited >= 0.5  # it really was down when asked
    assert taken == {"new"} and count == 51


def test_without_a_reconnect_window_a_restart_is_an_error_at_once(server):
    async def scenario():
        store = RedisVerdictStore(server.url, "no-window", password=PASSWORD, reconnect_s=0)
        try:
            await store.put_many({"k": "wrong"}, owner="w")
            server.stop(signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(redis.ConnectionError):
                await store.get_many(["k"])
            return time.monotonic() - started
        finally:
            await store.aclose()

    assert asyncio.run(scenario()) < 5


def test_a_wrong_password_is_not_retried(server):
    async def scenario():
        store = RedisVerdictStore(server.url, "bad-password", password="not-it", reconnect_s=30)
        started = time.monotonic()
        try:
            with pytest.raises(redis.AuthenticationError):
                await store.get_many(["k"])
        finally:
            await store.aclose()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5


def test_what_counts_as_a_restart():
    assert is_reconnectable(redis.ConnectionError("Connection closed by server."))
    assert is_reconnectable(redis.BusyLoadingError("loading"))
    assert is_reconnectable(ConnectionRefusedError(111, "refused"))
    assert not is_reconnectable(redis.AuthenticationError("invalid password"))
    assert not is_reconnectable(redis.TimeoutError("Timeout reading from socket"))
    assert not is_reconnectable(ValueError("x"))
