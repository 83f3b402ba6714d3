"""The launch checks that need no composed config: the config's name and each override as Hydra reads it.

Part of the preflight (:mod:`speciarl_verl.config.preflight`): a name that is not shipped, an override
Hydra cannot read, and a path Hydra would misread unquoted are refused in one line before anything starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from speciarl_verl.config.compose import shipped_config_names

__all__ = ["PATH_KEYS", "PreflightError", "check_config_name", "check_overrides", "one_line"]

# Overrides whose value is a path: the recipes write them as `key=path`, unquoted.
PATH_KEYS = ("data.train_files", "data.val_files", "trainer.default_local_dir", "actor_rollout_ref.model.path")
# verl takes a list of parquet files here, so Hydra's list syntax is allowed for these two.
_LIST_PATH_KEYS = frozenset({"data.train_files", "data.val_files"})
# Characters that are syntax in an unquoted Hydra override value (`${` is handled apart).
_GRAMMAR_CHARACTERS = ",()'\"=[]{}#"


class PreflightError(ValueError):
    """A launch the preflight refuses; the message is one line saying what is wrong and how to fix it."""


def one_line(error: BaseException) -> str:
    """An exception's message folded into one line (Hydra's messages span several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


# ---------------------------------------------------------------------------------------------
# the config name


def check_config_name(name: str) -> None:
    """Refuse a name that is not one of the shipped configs, suggesting the closest.

    >>> check_config_name("speciarl_grpo")
    >>> try:
    ...     check_config_name("speciarl_grpo_n10")
    ... except PreflightError as error:
    ...     print(str(error).split(";")[0])
    unknown config 'speciarl_grpo_n10' (did you mean speciarl_grpo_n15 or speciarl_grpo_n5 or speciarl_grpo_noise10?)
    """
    names = shipped_config_names()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise PreflightError(f"unknown config {name!r}{hint}; the shipped configs are: {', '.join(names)}")


# ---------------------------------------------------------------------------------------------
# the overrides, as Hydra will read them


def _override_key(override: str) -> str:
    """The dotted key of ``key=value``, ``+key=value``, ``++key=value`` or ``~key``.

    >>> _override_key("++data.train_files=/a.parquet"), _override_key("~trainer.logger")
    ('data.train_files', 'trainer.logger')
    """
    key = override.split("=", 1)[0].strip()
    return key.lstrip("~+").split("@", 1)[0]


def _path_problem(value: str) -> str | None:
    """What in an unquoted override value Hydra would take as syntax, or None.

    >>> _path_problem("/data/cub/train.parquet") is None
    True
    >>> _path_problem("/data/a,b.parquet")
    "','"
    >>> _path_problem("/data/${USER}/train.parquet")
    "'${' (an interpolation)"
    >>> _path_problem("/my data/train.parquet")
    'a space'
    """
    if "${" in value:
        return "'${' (an interpolation)"
    for character in value:
        if character in _GRAMMAR_CHARACTERS:
            return repr(character)
        if character.isspace():
            return "a space" if character == " " else "whitespace"
    return None


_PATH_FIX = (
    "Hydra's override grammar reads , ( ) ' \" = [ ] { } # whitespace and ${ as syntax, "
    "so move or rename it to a path without them"
)


def _check_path_override(key: str, value: str, parsed) -> None:
    """Refuse a path override Hydra would misread; ``parsed`` is Hydra's reading (None if it failed)."""
    text = value.strip()
    if text[:1] in ("'", '"') or (key in _LIST_PATH_KEYS and text[:1] == "["):
        # quoted, or a list of files: Hydra reads the characters inside as the path itself,
        # except `${`, which OmegaConf still resolves as an interpolation
        if parsed is None:
            return  # the caller reports Hydra's own error
        element = parsed.value()
        paths = list(element) if isinstance(element, list) else [element]
        if not all(isinstance(path, str) for path in paths):
            raise PreflightError(f"{key}: expected a path or a list of paths, got {value!r}")
        for path in paths:
            if "${" in path:
                raise PreflightError(
                    f"{key}={path} holds '${{' (an interpolation), which OmegaConf would try to resolve; {_PATH_FIX}"
                )
        return
    problem = _path_problem(value)
    if problem is not None:
        raise PreflightError(f"{key}={value} holds {problem}; {_PATH_FIX}")
    if parsed is None:
        raise PreflightError(
            f"{key}={value}: Hydra cannot read this path unquoted (a plain value takes only ASCII letters, "
            "digits and / . _ - + : @ % $ * ? | \\); move or rename it to a path without other characters"
        )


def check_overrides(overrides: Sequence[str]) -> None:
    """Read each override with Hydra's own parser; refuse an unreadable one and a misread path.

    >>> check_overrides(["data.train_files=/data/cub/train.parquet", "trainer.nnodes=2"])
    >>> try:
    ...     check_overrides(["data.val_files=/data/a,b.parquet"])
    ... except PreflightError as error:
    ...     print(str(error).split(";")[0])
    data.val_files=/data/a,b.parquet holds ','
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        key = _override_key(override)
        try:
            (parsed,) = parser.parse_overrides([override])
            error = None
        except HydraException as caught:
            parsed, error = None, caught
        if key in PATH_KEYS and "=" in override and not override.lstrip().startswith("~"):
            _check_path_override(key, override.split("=", 1)[1], parsed)
        if error is not None:
            raise PreflightError(f"Hydra cannot read the override {override!r} (key {key}): {one_line(error)}")
        if parsed.is_sweep_override():
            raise PreflightError(
                f"the override {override!r} (key {key}) is a sweep: an unquoted ',' separates sweep values; "
                f"write {key}=[a,b] for a list or quote the value: {key}='a,b'"
            )
