"""``speciarl verify``: judge a JSONL file of (ground truth, prediction) pairs.

Each input row is a JSON object with ``ground_truth`` and ``prediction`` (strings;
optional: ``data_source`` a string; ``parents``, ``parent_levels``, ``domain_nouns`` and
``synonyms`` lists of strings, as a built parquet row's ``extra_info`` holds them). The
rule tier files a ``parents`` entry as *less specific* only where ``parent_levels`` calls
it ``close`` (no ``parent_levels``: every parent is far and left to the LLM judge), and a
``domain_nouns`` entry as *generic*. Each output row is the input row plus:

* ``category``: a wire label (``"less specific"``), or ``null`` where ``--judge offline``
  could not decide the pair; such a row also has ``"reason": "undecided"`` (the rule tier
  has no rule for it; ``--judge auto`` would send it to the LLM);
* ``source``: ``offline`` (the rule tier), ``cache``, ``llm``, or ``dedup`` (a pair judged
  once for several identical rows).

Output is appended in input order after every chunk, so an interrupted run resumes where
it stopped (rows already in OUT are checked against the input and skipped). A judge that
fails after its retries stops the run with exit code 1, leaving OUT a clean prefix of the
input; bad input (a line that is not JSON, a missing or mistyped field, an OUT of another
input) is one line naming ``file:line`` and exit code 2.

Example::

    speciarl verify --judge offline --input pairs.jsonl --output verdicts.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from speciarl_verl.cli_errors import UserInputError, user_input
from speciarl_verl.jsonl_io import JsonlAppender, check_field_type, drop_torn_tail, read_jsonl_objects

__all__ = ["UNDECIDED", "read_pairs", "register", "verify_file"]

CHUNK = 256

#: ``reason`` of an output row whose ``category`` is ``null``: the rule tier could not decide it.
UNDECIDED = "undecided"

_REQUIRED = {"ground_truth": str, "prediction": str}
_NAME_LISTS = ("parents", "parent_levels", "domain_nouns", "synonyms")
_OPTIONAL = {"data_source": (str, type(None)), **dict.fromkeys(_NAME_LISTS, (list, type(None)))}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="judge JSONL pairs of ground truth and prediction")
    parser.add_argument("--judge", choices=("offline", "llm", "auto"), default="auto")
    parser.add_argument("--input", required=True, type=Path, help="JSONL with ground_truth and prediction")
    parser.add_argument("--output", required=True, type=Path, help="JSONL written (appended when resuming)")
    parser.add_argument("--endpoint", action="append", help="judge base URL ending in /v1 (repeat for several)")
    parser.add_argument("--model", help="judge model name as served")
    parser.add_argument("--judge-config", type=Path, help="YAML/JSON mapping of judge settings (see docs)")
    parser.add_argument("--cache", help="SQLite file for verdicts (default: the user cache directory)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from speciarl_verl.judge.settings import JudgeSettings

    mapping = _settings_file(args.judge_config) if args.judge_config is not None else {}
    mapping["kind"] = args.judge
    llm = dict(mapping.get("llm") or {})
    if args.endpoint:
        llm["endpoints"] = args.endpoint
    if args.model:
        llm["model"] = args.model
    mapping["llm"] = llm
    if args.cache:
        mapping["cache"] = {**(mapping.get("cache") or {}), "backend": "sqlite", "path": args.cache}
    with user_input():
        settings = JudgeSettings.from_mapping(mapping)
    summary = asyncio.run(verify_file(settings, args.input, args.output))
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def _settings_file(path: Path) -> dict[str, Any]:
    """The judge settings mapping in a YAML/JSON file (OmegaConf interpolations resolved)."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except OSError as error:
        raise UserInputError(f"{path}: cannot read it ({error.strerror or error})") from error
    except (yaml.YAMLError, OmegaConfBaseException) as error:
        raise UserInputError(f"{path}: not a valid settings file ({' '.join(str(error).split())})") from error
    if not isinstance(loaded, dict):
        raise UserInputError(f"{path}: expected a mapping of judge settings, got {type(loaded).__name__}")
    return loaded


def read_pairs(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for every pair of ``path``; :class:`UserInputError` names ``file:line``
    and the field on a line that is not JSON, not an object, or lacks or mistypes a field."""
    rows = []
    for number, row in read_jsonl_objects(path, _REQUIRED):
        for key, expected in _OPTIONAL.items():
            check_field_type(row.get(key), expected, f"{path}:{number}: field {key!r}")
        for key in _NAME_LISTS:
            for item in row.get(key) or ():
                check_field_type(item, str, f"{path}:{number}: each item of {key!r}")
        try:
            _request(row)
        except ValueError as bad:  # parent_levels that do not fit the parents
            raise UserInputError(f"{path}:{number}: {bad}") from None
        rows.append((number, row))
    return rows


def _request(row: dict[str, Any]):
    from speciarl_verl.judge.verifier import VerificationRequest

    return VerificationRequest.for_row(row["ground_truth"], row["prediction"], row.get("data_source") or "", row)


def _done_rows(output: Path, rows: list[tuple[int, dict[str, Any]]]) -> int:
    """How many leading input rows OUT already holds (checked pair by pair)."""
    if not output.exists():
        return 0
    drop_torn_tail(output)  # a line cut by an interruption: redo from there
    done = 0
    for out_line, previous in read_jsonl_objects(output, {}):
        if done >= len(rows):
            raise UserInputError(
                f"{output}:{out_line}: OUT has more rows than the input; it belongs to another input, "
                "use a new --output"
            )
        number, row = rows[done]
        if (previous.get("ground_truth"), previous.get("prediction")) != (row["ground_truth"], row["prediction"]):
            raise UserInputError(
                f"{output}:{out_line}: row {done + 1} does not match input line {number}; use a new --output"
            )
        done += 1
    return done


async def verify_file(settings, input_path: Path, output_path: Path) -> dict[str, int]:
    """Judge every row of ``input_path`` into ``output_path``; returns counts by source.

    Raises :class:`UserInputError` on bad input, and ``JudgeError`` (saying how many rows are
    done and how to resume) when the judge fails; finished chunks stay in ``output_path``.
    """
    from rich.progress import Progress

    from speciarl_verl.judge.offline import decide_offline
    from speciarl_verl.judge.tiered import TieredVerifier
    from speciarl_verl.judge.verifier import JudgeError

    rows = read_pairs(input_path)
    done = _done_rows(output_path, rows)
    counts = {"rows": len(rows), "resumed": done, "offline": 0, UNDECIDED: 0, "cache": 0, "llm": 0, "dedup": 0}
    verifier = None
    if settings.kind != "offline":
        with user_input():  # a judge prompt missing from llm.prompt_file; api_key_env naming an unset variable
            settings.llm.api_key()
            verifier = TieredVerifier(settings)
    try:
        with Progress() as progress, JsonlAppender(output_path) as out:
            task = progress.add_task("judging", total=len(rows), completed=done)
            for start in range(done, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                requests = [_request(row) for _, row in chunk]
                if verifier is None:
                    decided = [decide_offline(r) for r in requests]
                    results = [(None if c is None else c.value, "offline") for c in decided]
                else:
                    try:
                        verdicts = await verifier.verify(requests)
                    except JudgeError as error:
                        # OUT stays a clean prefix of the input, so the same command resumes.
                        raise JudgeError(
                            f"{error}. {start} of {len(rows)} rows are in {output_path}; "
                            "run the same command again to resume",
                            error.verdicts,
                            error.endpoint,
                        ) from error
                    results = [(v.category.value, v.source) for v in verdicts]
                out.write_many(
                    _output_row(row, category, source)
                    for (_, row), (category, source) in zip(chunk, results, strict=True)
                )
                for category, source in results:
                    counts[source if category is not None else UNDECIDED] += 1
                out.flush()
                progress.advance(task, len(chunk))
    finally:
        if verifier is not None:
            await verifier.aclose()
    return counts


def _output_row(row: dict[str, Any], category: str | None, source: str) -> dict[str, Any]:
    out = {**row, "category": category, "source": source}
    if category is None:
        out["reason"] = UNDECIDED
    return out
