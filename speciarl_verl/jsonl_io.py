"""Reading and writing JSONL and result files without ever leaving half a file behind.

Shared by the evaluator and ``speciarl verify``.


* :func:`read_jsonl` yields ``(line_number, object)`` and names ``file:line`` on bad JSON;
* :class:`JsonlAppender` appends whole lines and flushes them to disk, so a run that
  is interrupted keeps every finished line; a torn last line (a crash mid-write) is
  cut off when the file is opened again;
* :func:`write_atomically` writes a whole file to a temporary sibling and renames it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["read_jsonl", "JsonlAppender", "write_atomically", "drop_torn_tail"]


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed)`` for every non-blank line of ``path`` (numbers start at 1).

    Raises ``ValueError("FILE:LINE: not valid JSON (...)")`` on the first bad line.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error


def drop_torn_tail(path: str | Path) -> bool:
    """Cut an unterminated last line off ``path`` (left by an interrupted append); True if it did.

    Every line the appender writes ends in a newline, so text after the last
    newline can only be a write that did not finish.
    """
    path = Path(path)
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    write_atomically(path, data[: data.rfind(b"\n") + 1])
    return True


class JsonlAppender:
    """Append JSON objects to ``path`` one line each; :meth:`flush` makes them durable.

    Use as a context manager::

        with JsonlAppender(out) as sink:
            sink.write_many(rows)
            sink.flush()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(self.path)
        self._handle = self.path.open("a", encoding="utf-8")

    def write_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
        self._handle.write("".join(lines))
        return len(lines)

    def flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self.flush()
            self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_current_umask()
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; give the file the mode a plain open() would
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask
