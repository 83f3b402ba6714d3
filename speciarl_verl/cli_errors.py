"""How ``speciarl`` commands report the failures a user can act on: one line and an exit code.

* exit 2, bad input: :class:`UserInputError` (a malformed or missing file, a missing field,
  an unknown dataset or prompt, a bad option value) and the data builder's
  ``DataSourceError`` (a missing root, an unreadable image). 2 is also what argparse
  uses for a bad command line, so every "fix what you typed or gave me" case shares it.
* exit 1, an expected runtime failure: the judge unreachable or failing after its
  retries (``JudgeError`` and the transport errors it wraps), the ``[gpu]`` extra missing.
* anything else is a bug and keeps its traceback.

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

__all__ = [
    "EXIT_RUNTIME_FAILURE",
    "EXIT_USER_INPUT",
    "UserInputError",
    "exit_code_for",
    "expected_errors",
    "one_line",
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
    ("speciarl_verl.evaluation.vllm_predictor", "MissingGpuExtraError", EXIT_RUNTIME_FAILURE),
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
