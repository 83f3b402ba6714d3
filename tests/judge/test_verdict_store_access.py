"""A shared verdict cache is never an open Redis on the network unless the user says so."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from speciarl_verl.judge.redis_store import RedisVerdictStore, check_redis_access
from speciarl_verl.judge.settings import CacheSettings
from speciarl_verl.judge.sqlite_store import SQLiteVerdictStore
from speciarl_verl.judge.verdict_store import NullVerdictStore, open_verdict_store
from speciarl_verl.offline_fixtures.redis_process import redis_server_binary
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
    binary = redis_server_binary()
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


# --- no password in what a store says about itself ---


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@judge-node:6379/0", "redis://:***@judge-node:6379/0"),
        ("redis://speciarl:s3cret@judge-node:6379/0", "redis://speciarl:***@judge-node:6379/0"),
        ("redis://judge-node:6379/0?password=s3cret", "redis://judge-node:6379/0?password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_describe_names_the_redis_store_without_its_password(url, shown):
    store = open_verdict_store(redis_cache(url, namespace="runs"))
    assert store.describe() == f"Redis cache {shown} (namespace runs)"
    assert "s3cret" not in store.describe()


def test_describe_names_the_sqlite_and_null_stores(tmp_path):
    path = tmp_path / "verdicts.sqlite"
    assert SQLiteVerdictStore(path).describe() == f"SQLite cache {path}"
    assert open_verdict_store(CacheSettings(path=str(path))).describe() == f"SQLite cache {path}"
    assert NullVerdictStore().describe() == "no cache"
    assert open_verdict_store(CacheSettings(backend="none")).describe() == "no cache"


def test_a_refused_redis_url_is_quoted_without_its_password():
    with pytest.raises(ValueError, match="redis://, rediss:// or unix:// URL") as refused:
        redis_cache("http://speciarl:s3cret@judge-node:6379/0")
    assert "s3cret" not in str(refused.value) and "speciarl:***@judge-node" in str(refused.value)


def test_redact_url_hides_passwords_and_nothing_else():
    from speciarl_verl.judge.redaction import redact_url

    assert redact_url("http://user:pw@127.0.0.1:8001/v1") == "http://user:***@127.0.0.1:8001/v1"
    assert redact_url("https://user:p:w@d@host/v1") == "https://user:***@host/v1"  # unescaped : and @ in it
    assert redact_url("rediss://host:6380/0?ssl_cert_reqs=none&password=pw") == (
        "rediss://host:6380/0?ssl_cert_reqs=none&password=***"
    )
    assert redact_url("unix:///run/redis.sock?db=0&password=pw") == "unix:///run/redis.sock?db=0&password=***"
    for url in ("http://127.0.0.1:8001/v1", "redis://user@host:6379/0", "unix:///run/redis.sock?db=0"):
        assert redact_url(url) == url


# --- Redis: a silent server is a timeout, never a hang ---


def test_the_redis_pool_has_socket_timeouts(redis_url):
    store = RedisVerdictStore(redis_url, "timeouts")

    async def options():
        try:
            assert await store.get_many(["k"]) == {}
            return dict(store._client.connection_pool.connection_kwargs)
        finally:
            await store.aclose()

    kwargs = asyncio.run(options())
    assert kwargs["socket_connect_timeout"] == 10 and kwargs["socket_timeout"] == 30


def test_a_redis_server_that_never_answers_raises_instead_of_hanging():
    import redis

    with socket.socket() as silent:  # the kernel completes the handshake; nothing ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = RedisVerdictStore(url, "silent", connect_timeout_s=0.5, socket_timeout_s=0.5)

        async def lookup():
            try:
                return await asyncio.wait_for(store.get_many(["k"]), 120)
            finally:
                await store.aclose()

        with pytest.raises((redis.TimeoutError, redis.ConnectionError)):
            asyncio.run(lookup())


# --- SQLite: nobody else can write where the verdicts live ---


def _use(store):
    async def go():
        try:
            await store.put_many({"k": "generic"}, "me")
            return await store.get_many(["k"])
        finally:
            await store.aclose()

    return asyncio.run(go())


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_missing_folder_is_created_private_and_a_new_file_owner_only(tmp_path):
    path = tmp_path / "new" / "verdicts" / "v.sqlite"
    assert _use(SQLiteVerdictStore(path)) == {"k": "generic"}
    assert _mode(path.parent) == 0o700
    assert _mode(path) == 0o600


@pytest.fixture
def default_folder(tmp_path, monkeypatch):
    """The default cache folder, moved under this test's temporary folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = tmp_path / f"speciarl_verl-{os.getuid()}"
    assert CacheSettings().sqlite_path() == folder / "verdicts.sqlite"
    return folder


def test_the_default_folder_is_created_private(default_folder):
    assert _use(open_verdict_store(CacheSettings())) == {"k": "generic"}
    assert _mode(default_folder) == 0o700 and _mode(default_folder / "verdicts.sqlite") == 0o600


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o755 | 0o020])
def test_a_default_folder_others_can_write_to_is_refused(default_folder, mode):
    default_folder.mkdir()
    default_folder.chmod(mode)
    with pytest.raises(PermissionError) as refused:
        _use(open_verdict_store(CacheSettings()))
    message = str(refused.value)
    assert str(default_folder) in message and f"owner uid {os.geteuid()}" in message and f"mode {mode:#o}" in message
    assert f"chmod 700 {default_folder}" in message and "judge.cache.path" in message
    assert not (default_folder / "verdicts.sqlite").exists()
    default_folder.chmod(0o700)  # what the message says to do
    assert _use(open_verdict_store(CacheSettings())) == {"k": "generic"}


def test_a_default_folder_owned_by_someone_else_is_refused(default_folder, monkeypatch):
    default_folder.mkdir(mode=0o700)
    me = os.geteuid()
    # the tests run as one user, so be someone else for the store: the folder is then another user's
    monkeypatch.setattr(os, "geteuid", lambda: me + 1000)
    with pytest.raises(PermissionError, match=rf"owner uid {me}, mode 0o700\) is not owned by you \(uid {me + 1000}\)"):
        _use(open_verdict_store(CacheSettings()))


def test_the_owner_rule_on_its_own():
    from speciarl_verl.judge.sqlite_store import check_cache_folder

    folder = "/tmp/speciarl_verl-1000"
    check_cache_folder(folder, 1000, 0o40700, private=True, uid=1000)
    check_cache_folder(folder, 1000, 0o40755, private=True, uid=1000)  # others may read, not write
    for owner, mode in [(1001, 0o40700), (0, 0o40700), (1000, 0o40720), (1000, 0o40702)]:
        with pytest.raises(PermissionError, match=f"{folder} \\(owner uid {owner}, mode {mode & 0o777:#o}\\)"):
            check_cache_folder(folder, owner, mode, private=True, uid=1000)
    # an explicit path's folder may belong to a group or another user, but not be open to everyone
    check_cache_folder("/srv/verdicts", 1001, 0o40775, private=False, uid=1000)
    with pytest.raises(PermissionError, match="writable by every user"):
        check_cache_folder("/tmp", 0, 0o41777, private=False, uid=1000)


def test_a_default_folder_that_is_a_symbolic_link_is_refused(default_folder, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    default_folder.symlink_to(target)
    with pytest.raises(PermissionError, match="is not a folder"):
        _use(open_verdict_store(CacheSettings()))


def test_an_explicit_folder_is_refused_only_when_everyone_can_write_to_it(tmp_path):
    shared, team = tmp_path / "shared", tmp_path / "team"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError) as refused:
        _use(open_verdict_store(CacheSettings(path=str(shared / "v.sqlite"))))
    assert str(shared) in str(refused.value) and "mode 0o777" in str(refused.value)
    assert "writable by every user" in str(refused.value)
    team.mkdir()
    team.chmod(0o775)  # a group's folder: its members are trusted with the verdicts
    assert _use(open_verdict_store(CacheSettings(path=str(team / "v.sqlite")))) == {"k": "generic"}
