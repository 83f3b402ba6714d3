"""Checking a built parquet file row by row before training reads it (pyarrow and Pillow only).

A row is bad when training cannot use it: no prompt (the ``prompt`` column missing, null,
empty, or holding no text), no image (the ``images`` column missing, null or empty, an
entry without bytes) or image bytes Pillow cannot open and verify, or no ground truth
(``reward_model.ground_truth`` missing, null, empty or not text; the reward manager would
stop the run at that row's first reward). Rows are numbered from 0 in file order, as
pyarrow and pandas number them; the row's ``extra_info.index`` and ``data_source`` are
named too when the file has them.

The file is read in batches of a few dozen rows, and each image only opened and verified
(its header and structure, not a full decode), so a file of thousands of images is checked
in seconds without holding more than a batch of encoded bytes.

:class:`BadRowsError` is the one error for a set of files: each bad file with its count of
bad rows, and the first :data:`SHOWN_ROWS` bad rows named.

>>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
>>> path = tempfile.mkdtemp() + "/bad.parquet"
>>> pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "<image>Name it."}]], "images": [[]]}), path)
>>> [problem for row in check_rows(path) for problem in row.problems]
["no reward_model column (the ground truth's)", 'no image']
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SHOWN_ROWS", "BadRow", "BadRowsError", "FileCheck", "check_file", "check_files", "check_rows"]

#: Bad rows a :class:`BadRowsError` message names (it counts them all).
SHOWN_ROWS = 5

#: Rows read per batch: with images of a few hundred kB, a few MB at a time.
_BATCH_ROWS = 32

_BYTES_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class BadRow:
    """One bad row: ``path`` as shown to the user, ``row`` its 0-based position in the file."""

    path: str
    row: int
    problems: tuple[str, ...]
    index: object = None
    data_source: object = None

    def describe(self) -> str:
        """``row 3 (index 3, data_source 'cub200'): no image`` (the file is named by the caller).

        >>> BadRow("t.parquet", 3, ("no image", "no prompt"), 3, "cub200").describe()
        "row 3 (index 3, data_source 'cub200'): no image, no prompt"
        """
        named = []
        if self.index is not None:
            named.append(f"index {self.index}")
        if self.data_source is not None:
            named.append(f"data_source {self.data_source!r}")
        where = f"row {self.row}" + (f" ({', '.join(named)})" if named else "")
        return f"{where}: {', '.join(self.problems)}"

    def __str__(self) -> str:
        return f"{self.path} {self.describe()}"


@dataclass(frozen=True)
class FileCheck:
    """The outcome for one file: how many rows it holds and which of them are bad."""

    path: str
    rows: int
    bad: tuple[BadRow, ...]


class BadRowsError(ValueError):
    """Files with bad rows: one message naming each bad file, its bad-row count and the first rows."""

    def __init__(self, checks: Iterable[FileCheck], shown: int = SHOWN_ROWS):
        self.checks = tuple(check for check in checks if check.bad)
        self.bad_rows = tuple(row for check in self.checks for row in check.bad)
        super().__init__(_message(self.checks, shown))


def _message(checks: Sequence[FileCheck], shown: int) -> str:
    parts = []
    left = shown
    for check in checks:
        listed = [row.describe() for row in check.bad[: max(left, 0)]]
        left -= len(listed)
        more = len(check.bad) - len(listed)
        if listed and more:
            listed.append(f"... and {more} more")
        rows = f": {'; '.join(listed)}" if listed else ""
        parts.append(f"{check.path}: {len(check.bad)} of {check.rows} rows are bad{rows}")
    return (
        "; ".join(parts) + ". Every row needs a prompt, an image Pillow can open and reward_model.ground_truth; "
        "fix or rebuild the file (speciarl data build), then run `speciarl data check FILE`"
    )


def check_files(
    paths: Sequence[str | Path],
    names: Sequence[str] | None = None,
    *,
    prompt_key: str = "prompt",
    image_key: str | None = "images",
) -> list[FileCheck]:
    """Check every file (``names``: how to show each, e.g. the path a local copy was made from);
    raises :class:`BadRowsError` naming all bad files when any row is bad."""
    shown = list(names) if names is not None else [str(path) for path in paths]
    checks = [
        check_file(path, name, prompt_key=prompt_key, image_key=image_key)
        for path, name in zip(paths, shown, strict=True)
    ]
    if any(check.bad for check in checks):
        raise BadRowsError(checks)
    return checks


def check_rows(
    path: str | Path, name: str | None = None, *, prompt_key: str = "prompt", image_key: str | None = "images"
) -> list[BadRow]:
    """The bad rows of one parquet file, in file order (empty when every row is usable)."""
    return list(check_file(path, name, prompt_key=prompt_key, image_key=image_key).bad)


def check_file(
    path: str | Path, name: str | None = None, *, prompt_key: str = "prompt", image_key: str | None = "images"
) -> FileCheck:
    """Read ``path`` in batches and check every row; ``ValueError`` naming it when it is no parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shown = name if name is not None else str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{shown}: not a readable parquet file ({error})") from error
    schema = parquet.schema_arrow
    columns, missing = _columns(schema, prompt_key, image_key)
    bad: list[BadRow] = []
    row = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
        values = {column: batch.column(column).to_pylist() for column in batch.schema.names}
        for offset in range(batch.num_rows):
            problems = list(missing)
            if prompt_key in values:
                problems += _prompt_problems(values[prompt_key][offset], prompt_key)
            if image_key is not None and image_key in values:
                problems += _image_problems(values[image_key][offset])
            if "reward_model" in values:
                problems += _ground_truth_problems(values["reward_model"][offset])
            if problems:
                extra = (values.get("extra_info") or [None] * batch.num_rows)[offset] or {}
                source = (values.get("data_source") or [None] * batch.num_rows)[offset]
                bad.append(BadRow(shown, row + offset, tuple(problems), extra.get("index"), source))
        row += batch.num_rows
    return FileCheck(shown, parquet.metadata.num_rows, tuple(bad))


def _columns(schema, prompt_key: str, image_key: str | None) -> tuple[list[str], list[str]]:
    """The columns (and struct fields) to read, and the problems every row has for want of a column."""
    import pyarrow as pa

    def field(column: str, child: str) -> bool:
        if column not in schema.names:
            return False
        kind = schema.field(column).type
        return pa.types.is_struct(kind) and kind.get_field_index(child) >= 0

    columns, missing = [], []
    for column, what in ((prompt_key, "prompt"), (image_key, "images")):
        if column is None:
            continue
        if column in schema.names:
            columns.append(column)
        else:
            missing.append(f"no {column!r} column (the {what})")
    if field("reward_model", "ground_truth"):
        columns.append("reward_model.ground_truth")
    elif "reward_model" in schema.names:
        missing.append("no reward_model.ground_truth field")
    else:
        missing.append("no reward_model column (the ground truth's)")
    if field("extra_info", "index"):
        columns.append("extra_info.index")
    if "data_source" in schema.names:
        columns.append("data_source")
    return columns, missing


def _prompt_problems(prompt: object, key: str) -> list[str]:
    if prompt is None:
        return [f"no prompt ({key} is null)"]
    if isinstance(prompt, str):
        return [] if prompt.strip() else [f"no prompt ({key} is empty)"]
    if not prompt:
        return [f"no prompt ({key} is empty)"]
    texts = [message.get("content") if isinstance(message, dict) else message for message in prompt]
    if not any(isinstance(text, str) and text.strip() for text in texts):
        return [f"no prompt ({key} has no text)"]
    return []


def _ground_truth_problems(reward_model: object) -> list[str]:
    truth = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if isinstance(truth, str) and truth.strip():
        return []
    if truth is None:
        return ["no ground truth (reward_model.ground_truth is null)"]
    if isinstance(truth, str):
        return [f"no ground truth (reward_model.ground_truth is {truth!r})"]
    return [f"no ground truth (reward_model.ground_truth is a {type(truth).__name__}, not text)"]


def _image_problems(images: object) -> list[str]:
    if not images:
        return ["no image"]
    problems = []
    for position, image in enumerate(images):
        data = image.get("bytes") if isinstance(image, dict) else image
        if not isinstance(data, bytes):
            what = "null" if data is None else f"a {type(data).__name__}"
            problems.append(f"image {position} has no bytes ({what})")
        elif not data:
            problems.append(f"image {position} has no bytes (empty)")
        else:
            error = _unreadable(data)
            if error:
                problems.append(f"image {position} unreadable ({error})")
    return problems


def _unreadable(data: bytes) -> str:
    """Why Pillow cannot open and verify ``data`` (``""`` when it can)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as error:  # whatever Pillow raises here, verl's Image.open would raise too
        text = _BYTES_REPR.sub("", str(error)).strip()
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return ""
