"""``speciarl verify``: judge a JSONL file of (ground truth, prediction) pairs.

Each input row is a JSON object (the schema ``speciarl verify --help`` prints, :data:`INPUT_SCHEMA`)
with ``ground_truth`` and ``prediction`` (strings; optional: ``data_source`` a string; the class
fields ``parents``, ``parent_levels``, ``domain_nouns`` and ``synonyms``, lists of strings, at the
top level or inside an ``extra_info`` object as a built parquet row holds them; a field given in both
places must hold the same value). The rule tier files a ``parents`` entry as *less specific* only
where ``parent_levels`` calls it ``close`` (no ``parent_levels``: every parent is far and left to the
LLM judge), and a ``domain_nouns`` entry as *generic*. Each output row is the input row plus:

* ``category``: a wire label (``"less specific"``), or ``null`` where ``--judge offline``
  could not decide the pair; such a row also has ``"reason": "undecided"`` (the rule tier
  has no rule for it; ``--judge auto`` would send it to the LLM);
* ``source``: ``offline`` (the rule tier), ``cache``, ``llm``, or ``dedup`` (a pair judged
  once for several identical rows);
* ``judge_fingerprint``: a digest of the judge settings that shape a verdict (kind, and for an
  LLM judge its model, prompt and decoding; see
  :func:`~speciarl_verl.judge.file_judging.settings_fingerprint`).

This command is the file-judging pipeline of :mod:`speciarl_verl.judge.file_judging` (the one
``speciarl eval judge`` runs) on this row format. Its rows have no key but their position, so
OUT stays a prefix of the input in input order: an interrupted run resumes where it stopped.
Rows already in OUT are skipped once each is checked against its input row: the same
``ground_truth``, ``prediction``, ``data_source`` and class fields (``parents``,
``parent_levels``, ``synonyms``, ``domain_nouns``; absent and empty are the same), and the
same judge fingerprint. Any difference, or a row without a fingerprint (written by an older
version), is refused: one line naming ``OUT:line`` and the field, and exit code 2; a new
``--output`` starts afresh. A judge that fails after its retries stops the run with exit code 1
and writes nothing of the chunk in flight; bad input (a line that is not JSON, a missing or
mistyped field, an OUT of another input) is one line naming ``file:line`` and exit code 2.

The judge kind is ``--judge``, else the ``kind`` of the ``--judge-config`` file, else ``auto``
(the same order as ``speciarl eval judge``, whose default kind is ``llm``).

Example::

    speciarl verify --judge offline --input pairs.jsonl --output verdicts.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from speciarl_verl.cli_errors import UserInputError, output_file
from speciarl_verl.jsonl_io import check_field_type, json_type_name, read_jsonl_objects
from speciarl_verl.judge.file_judging import (
    CHUNK,
    UNDECIDED,
    JudgingStopped,
    Outcome,
    RowFormat,
    difference,
    file_judge_settings,
    judge_file,
    settings_from_cli,
)
from speciarl_verl.judge.verifier import JudgeError, VerificationRequest

__all__ = ["CHUNK", "INPUT_SCHEMA", "UNDECIDED", "PairRows", "class_field", "read_pairs", "register", "verify_file"]

_REQUIRED = {"ground_truth": str, "prediction": str}
_NAME_LISTS = ("parents", "parent_levels", "domain_nouns", "synonyms")
#: The fields of a row that decide its verdict (besides the judge), in the order a resume checks them.
_DECIDING = (*_REQUIRED, "data_source", *_NAME_LISTS)
_OPTIONAL = {"data_source": (str, type(None)), **dict.fromkeys(_NAME_LISTS, (list, type(None)))}
#: The counts ``speciarl verify`` always prints, in this order (other outcomes follow if any).
_SUMMARY_KEYS = ("offline", UNDECIDED, "cache", "llm", "dedup")
#: The judge kind when neither ``--judge`` nor the ``--judge-config`` file names one.
DEFAULT_KIND = "auto"

INPUT_SCHEMA = """\
input (--input, JSONL): one JSON object per line
  ground_truth    string, required: the class name the answer is compared with
  prediction      string, required: the answer (already parsed, no <answer> tags)
  data_source     string, optional: the dataset name (cub200, fgvc_aircraft, ...)
  parents         list of strings, optional: coarser names of the class, nearest first
  parent_levels   list of strings, optional: "close" or "far" for each parent; the rule
                  tier files a close parent as less specific, a far one is left to the
                  LLM (no parent_levels: every parent is far)
  domain_nouns    list of strings, optional: words for the whole domain, filed generic
  synonyms        list of strings, optional: other names of the class, filed specific
The four lists go at the top level or inside an "extra_info" object, as a row of a built
parquet holds them (a field in both places must have the same value).
  {"ground_truth": "737-800", "prediction": "Boeing 737", "data_source": "fgvc_aircraft",
   "extra_info": {"parents": ["Boeing 737", "Boeing"], "parent_levels": ["close", "far"]}}

output (--output, JSONL): each input row plus category (a label, or null where --judge
offline has no rule: then also "reason": "undecided"), source (offline, cache, llm,
dedup) and judge_fingerprint. Rows already in --output are checked against the input
and the judge and skipped (resume); a difference is refused naming OUT:line.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="judge JSONL pairs of ground truth and prediction",
        description="Judge a JSONL file of (ground truth, prediction) pairs into a JSONL file of verdicts.",
        epilog=INPUT_SCHEMA,
    )
    parser.add_argument(
        "--judge",
        choices=("offline", "llm", "auto"),
        help=f"offline: rule tier only; llm: every pair to the LLM judge; auto: rule tier, then the LLM "
        f"(default: the kind of the --judge-config file, else {DEFAULT_KIND})",
    )
    parser.add_argument("--input", required=True, type=Path, help="JSONL of pairs (schema below)")
    parser.add_argument("--output", required=True, help="JSONL file written (appended when resuming)")
    parser.add_argument(
        "--endpoint", action="append", help="judge base URL ending in /v1, repeat for several (default: none)"
    )
    parser.add_argument("--model", help="judge model name as served (default: llm.model of the settings)")
    parser.add_argument(
        "--judge-config",
        type=Path,
        help="YAML/JSON mapping of judge settings (docs/configuration.md), read first; the flags here and "
        "--judge-set override it (default: none)",
    )
    parser.add_argument(
        "--judge-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more judge setting, e.g. llm.max_in_flight=8; repeatable, last wins (default: none)",
    )
    parser.add_argument(
        "--cache",
        help="SQLite file for verdicts (default: cache.path of the judge settings, else the node-local "
        "<system temp>/speciarl_verl-<uid>/verdicts.sqlite)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    output = output_file(args.output, "--output", "verdicts.jsonl")
    flags: dict[str, Any] = {} if args.judge is None else {"kind": args.judge}
    if args.endpoint:
        flags.setdefault("llm", {})["endpoints"] = list(args.endpoint)
    if args.model:
        flags.setdefault("llm", {})["model"] = args.model
    if args.cache:
        flags["cache"] = {"backend": "sqlite", "path": args.cache}
    mapping = settings_from_cli(args.judge_config, args.judge_set, base={"kind": DEFAULT_KIND}, flags=flags)
    settings = file_judge_settings(mapping)
    summary = asyncio.run(verify_file(settings, args.input, output, progress=not args.no_progress))
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def read_pairs(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for every pair of ``path``; :class:`UserInputError` names ``file:line``
    and the field on a line that is not JSON, not an object, or lacks or mistypes a field."""
    rows = []
    for number, row in read_jsonl_objects(path, _REQUIRED):
        where = f"{path}:{number}"
        for key, expected in _OPTIONAL.items():
            check_field_type(row.get(key), expected, f"{where}: field {key!r}")
        nested = row.get("extra_info")
        check_field_type(nested, (dict, type(None)), f"{where}: field 'extra_info'")
        for key in _NAME_LISTS:
            if nested is not None:
                check_field_type(nested.get(key), (list, type(None)), f"{where}: field 'extra_info.{key}'")
            for item in class_field(row, key) or ():
                check_field_type(item, str, f"{where}: each item of {key!r}")
            top, inner = row.get(key), (nested or {}).get(key)
            if top is not None and inner is not None and top != inner:
                raise UserInputError(
                    f"{where}: {key!r} is given at the top level ({top}) and in extra_info ({inner}) with "
                    "different values; keep one"
                )
        try:
            _request(row)
        except ValueError as bad:  # parent_levels that do not fit the parents
            raise UserInputError(f"{where}: {bad}") from None
        rows.append((number, row))
    return rows


def class_field(row: Any, name: str) -> Any:
    """A class field of a pair: the top-level value, else the one in the row's ``extra_info`` object.

    >>> row = {"parents": None, "extra_info": {"parents": ["Boeing 737", "Boeing"]}}
    >>> class_field(row, "parents"), class_field(row, "synonyms")
    (['Boeing 737', 'Boeing'], None)
    """
    value = row.get(name)
    nested = row.get("extra_info")
    if value is None and isinstance(nested, dict):
        return nested.get(name)
    return value


def _request(row: dict[str, Any]) -> VerificationRequest:
    fields = {name: class_field(row, name) for name in _NAME_LISTS}
    return VerificationRequest.for_row(row["ground_truth"], row["prediction"], row.get("data_source") or "", fields)


#: One pair of the input: its position, its line number and its row.
_Pair = tuple[int, int, dict[str, Any]]


class PairRows(RowFormat[_Pair]):
    """``speciarl verify``'s rows: an output row is the input row plus ``category``, ``source`` (and
    ``reason`` when ``category`` is null; the pipeline adds ``judge_fingerprint``); a row is known by
    its position in the file. The class fields need no digest: the input row's copy in OUT is compared."""

    ordered = True
    out_option = "--output"

    def __init__(self, input_path: Path) -> None:
        self.input_path = input_path
        self.items = [(index, number, row) for index, (number, row) in enumerate(read_pairs(input_path))]

    def key(self, item: _Pair) -> Hashable:
        return item[0]

    def describe(self, key: Hashable) -> str:
        return f"a row {key + 1}"  # type: ignore[operator]  # keys are positions

    def request(self, item: _Pair) -> VerificationRequest:
        return _request(item[2])

    def output_row(self, item: _Pair, outcome: Outcome) -> dict[str, Any]:
        out = {**item[2], "category": None if outcome.category is None else outcome.category.value}
        out["source"] = outcome.source
        if outcome.reason is not None:
            out["reason"] = outcome.reason
        return out

    def out_key(self, row: Any, where: str, position: int) -> Hashable:
        if not isinstance(row, dict):
            raise UserInputError(f"{where}: expected a JSON object, got {json_type_name(row)}")
        return position

    def mismatch(self, item: _Pair, row: Any, out_name: str) -> str | None:
        _, number, pair = item
        for name in _DECIDING:
            ours, theirs = _deciding_value(pair, name), _deciding_value(row, name)
            if ours != theirs:
                what = difference(name, ours, theirs, f"{self.input_path.name}:{number}", out_name)
                return f"the class fields differ: {what}" if name in _NAME_LISTS else what
        return None


def _deciding_value(row: dict[str, Any], name: str) -> Any:
    """A field of a pair as the judge reads it: an absent or null list is empty, an absent data source is ``""``."""
    if name in _NAME_LISTS:
        return class_field(row, name) or []
    value = row.get(name)
    if name == "data_source":
        return value or ""
    return value


async def verify_file(settings, input_path: Path, output_path: Path, *, progress: bool = True) -> dict[str, int]:
    """Judge every row of ``input_path`` into ``output_path``; returns counts by source.

    Raises :class:`UserInputError` on bad input, and ``JudgeError`` (saying how many rows are
    done and how to resume) when the judge fails; finished chunks stay in ``output_path``.
    """
    rows = PairRows(input_path)
    try:
        summary = await judge_file(rows, output_path, settings=settings, progress=progress)
    except JudgingStopped as stopped:
        raise JudgeError(
            f"{stopped}. {stopped.in_out} of {stopped.total} rows are in {output_path}; "
            "run the same command again to resume",
            stopped.verdicts,
            stopped.endpoint,
        ) from stopped
    counts = {"rows": summary.rows, "resumed": summary.resumed, **dict.fromkeys(_SUMMARY_KEYS, 0)}
    for outcome, count in summary.by_outcome.items():
        counts[outcome] = counts.get(outcome, 0) + count
    return counts
