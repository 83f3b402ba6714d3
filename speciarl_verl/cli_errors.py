"""How ``speciarl`` commands report the failures a user can act on: one line and an exit code.

* exit 2, bad input: :class:`UserInputError` (a malformed or missing file, a missing field,
  an unknown dataset or prompt, a bad option value, an output path that is a folder where a
  file is written or the other way round), the data builder's ``DataSourceError`` (a missing
  root, an unreadable image) and ``speciarl eval predict`` asked for on a machine without
  vLLM (the ``[gpu]`` extra: a command this install cannot run). 2 is also what argparse
  uses for a bad command line, so every "fix what you typed or gave me" case shares it.
* exit 1, an expected runtime failure: the judge unreachable or failing after its
  retries (``JudgeError`` and the transport errors it wraps).
* anything else is a bug and keeps its traceback.

:func:`output_file` and :func:`output_folder` check an output option before anything is written.

Library code raises :class:`UserInputError` where it reads a file the user named (it is a
``ValueError``, so callers that catch ``ValueError`` keep working). An area's ``cli``
turns its own ``ValueError`` contract into one with :func:`user_input`.

>>> exit_code_for(UserInputError("pairs.jsonl:3: not valid JSON")), exit_code_for(KeyError("x"))
(2, None)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "EXIT_RUNTIME_FAILURE",
    "EXIT_USER_INPUT",
    "UserInputError",
    "exit_code_for",
    "expected_errors",
    "one_line",
    "output_file",
    "output_folder",
    "user_input",
]

EXIT_USER_INPUT = 2
EXIT_RUNTIME_FAILURE = 1

#: Domain error types by ``(module, class name)`` and the exit code each maps to. Looked up in
#: ``sys.modules`` only: an error of a module never imported cannot have been raised, so
#: reporting an error never imports the judge's HTTP client or the evaluator.
_DOMAIN_ERRORS: tuple[tuple[str, str, int], ...] = (
    ("speciarl_verl.data.source_record", "DataSourceError", EXIT_USER_INPUT),
    ("speciarl_verl.judge.verifier", "JudgeError", EXIT_RUNTIME_FAILURE),
    ("speciarl_verl.judge.transport", "JudgeTransportError", EXIT_RUNTIME_FAILURE),
    ("speciarl_verl.judge.llm_judge", "InvalidVerdictError", EXIT_RUNTIME_FAILURE),
    ("speciarl_verl.evaluation.vllm_predictor", "MissingGpuExtraError", EXIT_USER_INPUT),
)


class UserInputError(ValueError):
    """Input the user can fix; the message names the file (and line or row) and what is wrong.

    >>> str(UserInputError("pairs.jsonl:2: missing field 'prediction'"))
    "pairs.jsonl:2: missing field 'prediction'"
    """


def _loaded_domain_errors() -> list[tuple[type[BaseException], int]]:
    found = []
    for module_name, class_name, code in _DOMAIN_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None:
            found.append((getattr(module, class_name), code))
    return found


def expected_errors() -> tuple[type[BaseException], ...]:
    """Every error type a command reports as one line (for an ``except`` clause)."""
    return (UserInputError, *(error_type for error_type, _ in _loaded_domain_errors()))


def exit_code_for(error: BaseException) -> int | None:
    """2 for bad input, 1 for an expected runtime failure, ``None`` for anything else (a bug)."""
    if isinstance(error, UserInputError):
        return EXIT_USER_INPUT
    for error_type, code in _loaded_domain_errors():
        if isinstance(error, error_type):
            return code
    return None


@contextmanager
def user_input(*error_types: type[Exception]) -> Iterator[None]:
    """Re-raise ``error_types`` (default ``ValueError``) from the block as :class:`UserInputError`.

    For a block whose errors of that type can only come from what the user gave, e.g.
    a settings mapping or a records file whose reader reports problems as ``ValueError``.

    >>> with user_input():
    ...     int("twelve")
    Traceback (most recent call last):
    ...
    speciarl_verl.cli_errors.UserInputError: invalid literal for int() with base 10: 'twelve'
    """
    caught = error_types or (ValueError,)
    try:
        yield
    except UserInputError:
        raise
    except caught as error:
        raise UserInputError(str(error)) from error


def one_line(error: BaseException) -> str:
    """The error's message with line breaks folded into spaces (its type name if it has none).

    >>> one_line(ValueError("first\\n  second"))
    'first second'
    """
    return " ".join(str(error).split()) or type(error).__name__


def _file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is a file (nothing can be created under it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_file(text: str | Path, option: str, example: str = "out.jsonl") -> Path:
    """The path of an output *file* given as ``option``; :class:`UserInputError` for a path that ends in
    ``/`` or names an existing folder (refused, never written as a file beside or inside it), or that
    lies under a file.

    >>> output_file("verdicts.jsonl", "--out")
    PosixPath('verdicts.jsonl')
    >>> output_file("runs/", "--out", "preds.jsonl")
    Traceback (most recent call last):
    ...
    speciarl_verl.cli_errors.UserInputError: --out runs/: ends in '/', a folder; ... e.g. runs/preds.jsonl
    """
    raw = str(text)
    path = Path(raw)
    if raw.endswith("/") or path.is_dir():
        shown = raw if raw.endswith("/") else f"{raw}/"
        what = "ends in '/', a folder" if raw.endswith("/") else "is a folder"
        raise UserInputError(f"{option} {raw}: {what}; {option} names the file to write, e.g. {shown}{example}")
    blocking = _file_above(path)
    if blocking is not None:
        raise UserInputError(f"{option} {raw}: {blocking} is a file, not a folder")
    return path


def output_folder(text: str | Path, option: str, holds: str) -> Path:
    """The path of an output *folder* given as ``option`` (created when missing); :class:`UserInputError`
    for an existing file there, or a path under a file. ``holds`` says what the folder receives.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".jsonl") as taken:
    ...     output_folder(taken.name, "--out", "report.md and report.json")
    Traceback (most recent call last):
    ...
    speciarl_verl.cli_errors.UserInputError: --out ...: is a file; --out names a folder ... for report.md ...
    """
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{option} {text}: is a file; {option} names a folder (created if missing) for {holds}")
    blocking = _file_above(path)
    if blocking is not None:
        raise UserInputError(f"{option} {text}: {blocking} is a file, not a folder")
    return path
