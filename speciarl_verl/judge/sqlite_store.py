"""The SQLite verdict store: one WAL-mode file shared by the reward workers of a node.

Its folder is checked before the file opens (:func:`check_cache_folder`): a folder another
user can write to would let them plant verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from speciarl_verl.judge.settings import CacheSettings
from speciarl_verl.judge.verdict_store import VerdictStore

__all__ = ["SQLiteVerdictStore", "check_cache_folder"]


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, label TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)",
)


_KEYS_PER_QUERY = 500  # bound parameters per statement: SQLite builds before 3.32 allow 999


def check_cache_folder(folder: str | Path, owner_uid: int, mode: int, *, private: bool, uid: int | None = None) -> None:
    """Refuse a folder for a verdict cache that other users could write into (``PermissionError``).

    ``owner_uid`` and ``mode`` are the folder's (``os.stat``); ``uid`` is the current user's
    (``os.geteuid()`` by default). A ``private`` folder (the default one, under a temporary folder
    anyone may create names in) must be owned by the current user and writable by nobody else;
    any other folder must not be writable by every user (``/tmp`` itself, say).

    >>> check_cache_folder("/tmp/speciarl_verl-1000", 1000, 0o40700, private=True, uid=1000)
    >>> check_cache_folder("/tmp/speciarl_verl-1000", 1001, 0o40700, private=True, uid=1000)
    Traceback (most recent call last):
    ...
    PermissionError: verdict cache folder /tmp/speciarl_verl-1000 (owner uid 1001, mode 0o700) is not owned by you ...
    >>> check_cache_folder("/srv/cache", 0, 0o40775, private=False, uid=1000)
    >>> check_cache_folder("/tmp", 0, 0o41777, private=False, uid=1000)
    Traceback (most recent call last):
    ...
    PermissionError: verdict cache folder /tmp (owner uid 0, mode 0o1777) is writable by every user: ...
    """
    uid = os.geteuid() if uid is None else uid
    if private and owner_uid != uid:
        problem = f"is not owned by you (uid {uid})"
    elif private and mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = "is writable by its group or by other users"
    elif mode & stat.S_IWOTH:
        problem = "is writable by every user"
    else:
        return
    if private:
        fix = (
            f"it is the default cache folder (judge.cache.path unset): if it is yours, run `chmod 700 {folder}`; "
            f"if not, have it removed, or set judge.cache.path to a file in a folder only you can write to"
        )
    else:
        fix = (
            "set judge.cache.path to a file in a folder of its own (mkdir -m 700 <folder>), "
            f"or, if the folder is yours, run `chmod o-w {folder}`"
        )
    raise PermissionError(
        f"verdict cache folder {folder} (owner uid {owner_uid}, mode {stat.S_IMODE(mode):#o}) {problem}: "
        f"another user could plant verdicts there or read them. To go on, {fix}"
    )


def _prepare_cache_folder(folder: Path, *, private: bool) -> None:
    """Create ``folder`` (mode 0o700) if it is missing, then :func:`check_cache_folder` it.

    A private folder is looked at itself, not through a symbolic link (a link someone else
    planted in the temporary folder is theirs, and is refused as such)."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=True)
    info = os.lstat(folder) if private else os.stat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(
            f"verdict cache folder {folder} is not a folder (a symbolic link or a file, owner uid {info.st_uid}): "
            "remove it, or set judge.cache.path to a file in a folder of your own"
        )
    check_cache_folder(folder, info.st_uid, info.st_mode, private=private)


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One immediate (write-locking) transaction: committed if the block ends, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SQLiteVerdictStore(VerdictStore):
    """A WAL-mode SQLite file; safe for many processes on one machine (not over NFS).

    The connection lives on one worker thread of its own, so statements run strictly one
    after another and every query reads its rows at once (a cursor left open would pin an
    old snapshot, and a write on it fails with "database is locked" instead of waiting).
    The thread belongs to a ``ThreadPoolExecutor``, which Python stops at exit.

    On first use the folder is created (mode 0o700) if missing and checked
    (:func:`check_cache_folder`); a new database file is created with mode 0o600.
    ``private_folder`` says which rule applies; by default the strict one exactly when
    the folder is the default cache folder (:meth:`CacheSettings.default_sqlite_folder`).
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0, *, private_folder: bool | None = None):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        if private_folder is None:
            private_folder = self.path.parent == CacheSettings.default_sqlite_folder()
        self.private_folder = private_folder
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"SQLite cache {self.path}"

    def _open(self) -> sqlite3.Connection:  # on the store's thread
        if self._db is None:
            _prepare_cache_folder(self.path.parent, private=self.private_folder)
            # a new file is readable by its owner only (SQLite gives its -wal and -shm files the same mode)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
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
            with _immediate(db):
                return [db.execute(query, parameters).rowcount for query, parameters in statements]

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

    async def renew_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        if not keys:
            return set()

        def renew(db: sqlite3.Connection) -> set[str]:
            now = time.time()
            renewed: set[str] = set()
            with _immediate(db):  # finding our live claims and extending them: one atomic step
                for start in range(0, len(keys), _KEYS_PER_QUERY):
                    chunk = list(keys[start : start + _KEYS_PER_QUERY])
                    ours = f"owner = ? AND expires >= ? AND key IN ({','.join('?' * len(chunk))})"
                    rows = db.execute(f"SELECT key FROM claims WHERE {ours}", [owner, now, *chunk]).fetchall()
                    db.execute(f"UPDATE claims SET expires = ? WHERE {ours}", [now + lease_s, owner, now, *chunk])
                    renewed.update(key for (key,) in rows)
            return renewed

        return await self._run(renew)

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
