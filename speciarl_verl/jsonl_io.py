"""Reading and writing JSONL and result files without ever leaving half a file behind.

Shared by the evaluator and ``speciarl verify``.

* :func:`read_jsonl` yields ``(line_number, value)``; a file that cannot be read, a line that
  is not UTF-8 or not JSON raises :class:`~speciarl_verl.cli_errors.UserInputError` naming
  ``file:line``; :func:`read_jsonl_objects` also checks that each line is an object with the
  required fields of the right JSON type;
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

from speciarl_verl.cli_errors import UserInputError

__all__ = [
    "JsonlAppender",
    "check_field_type",
    "drop_torn_tail",
    "json_type_name",
    "read_jsonl",
    "read_jsonl_objects",
    "write_atomically",
]


#: The first bytes of every parquet file.
_PARQUET_MAGIC = b"PAR1"


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed)`` for every non-blank line of ``path`` (numbers start at 1).

    Raises :class:`UserInputError` naming the file, and the line where there is one:
    ``pairs.jsonl: cannot read it (No such file or directory)``,
    ``pairs.jsonl:4: not valid JSON (Expecting value at column 1)``,
    ``pairs.jsonl:9: not UTF-8 text (byte 0xff at column 3); expected JSONL``,
    ``data.parquet: a parquet file; expected JSONL (one JSON object per line)``.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise UserInputError(f"{path}: cannot read it ({error.strerror or error})") from error
    with handle:
        if handle.read(len(_PARQUET_MAGIC)) == _PARQUET_MAGIC:
            raise UserInputError(f"{path}: a parquet file; expected JSONL (one JSON object per line)")
        handle.seek(0)
        # Bytes, decoded line by line: a decode error then names its own line, not a read buffer's.
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = f"byte 0x{raw[error.start]:02x} at column {error.start + 1}"
                message = f"{path}:{number}: not UTF-8 text ({byte}); expected JSONL (one JSON object per line)"
                raise UserInputError(message) from error
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise UserInputError(
                    f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})"
                ) from error


def read_jsonl_objects(
    path: str | Path, required: Mapping[str, type | tuple[type, ...]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like :func:`read_jsonl`, and every line must be a JSON object holding each ``required`` field
    with a value of the given Python type(s); errors name ``file:line`` and the field.

    Example: ``read_jsonl_objects("pairs.jsonl", {"ground_truth": str, "prediction": str})`` on a
    line ``{"ground_truth": 7}`` raises ``pairs.jsonl:1: field 'ground_truth' must be a string, got an
    integer (7)``; a line ``[1, 2]`` raises ``pairs.jsonl:1: expected a JSON object, got a list``.
    """
    for number, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise UserInputError(f"{path}:{number}: expected a JSON object, got {json_type_name(row)}")
        for key, expected in required.items():
            if key not in row:
                raise UserInputError(f"{path}:{number}: missing field {key!r}")
            check_field_type(row[key], expected, f"{path}:{number}: field {key!r}")
        yield number, row


def check_field_type(value: Any, expected: type | tuple[type, ...], what: str) -> None:
    """Raise :class:`UserInputError` ``"<what> must be <type>, got <type> (<value>)"`` unless ``value`` fits.

    ``bool`` never passes for ``int`` or ``float`` (JSON keeps them apart; Python does not).

    >>> check_field_type(True, int, "x.jsonl:1: field 'n'")
    Traceback (most recent call last):
    ...
    speciarl_verl.cli_errors.UserInputError: x.jsonl:1: field 'n' must be an integer, got a boolean (true)
    """
    types = expected if isinstance(expected, tuple) else (expected,)
    fits = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not fits:
        wanted = " or ".join(_JSON_TYPE_NAMES.get(t, t.__name__) for t in types)
        shown = json.dumps(value, ensure_ascii=False)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UserInputError(f"{what} must be {wanted}, got {json_type_name(value)} ({shown})")


def json_type_name(value: Any) -> str:
    """What ``value`` is, in JSON's words.

    >>> json_type_name([1]), json_type_name(None), json_type_name(2.5)
    ('a list', 'null', 'a number')
    """
    for python_type, name in _JSON_TYPE_NAMES.items():
        if type(value) is python_type:
            return name
    return type(value).__name__


_JSON_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


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
