"""``speciarl verify``: judge a JSONL file of (ground truth, prediction) pairs.

Each input row needs ``ground_truth`` and ``prediction`` (optional: ``data_source``,
``parents``, ``synonyms``). Each output row is the input row plus ``category`` (a wire
label, or ``null`` where the offline judge deferred) and ``source`` (``offline``,
``cache``, ``llm``, or ``dedup`` for a pair judged once for several identical rows).
Output is appended in input order after every chunk, so an interrupted run resumes
where it stopped (rows already in OUT are checked against the input and skipped).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from speciarl_verl.jsonl_io import JsonlAppender, drop_torn_tail, read_jsonl

__all__ = ["register", "verify_file"]

CHUNK = 256


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
    from omegaconf import OmegaConf

    from speciarl_verl.judge.settings import JudgeSettings

    mapping: dict[str, Any] = {}
    if args.judge_config is not None:
        mapping = OmegaConf.to_container(OmegaConf.load(args.judge_config), resolve=True)  # type: ignore[assignment]
    mapping["kind"] = args.judge
    llm = dict(mapping.get("llm") or {})
    if args.endpoint:
        llm["endpoints"] = args.endpoint
    if args.model:
        llm["model"] = args.model
    mapping["llm"] = llm
    if args.cache:
        mapping["cache"] = {**(mapping.get("cache") or {}), "backend": "sqlite", "path": args.cache}
    settings = JudgeSettings.from_mapping(mapping)
    summary = asyncio.run(verify_file(settings, args.input, args.output))
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0 if summary["failed"] == 0 else 1


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, row in read_jsonl(path):
        for key in ("ground_truth", "prediction"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{path}:{number}: '{key}' must be a string, got {row.get(key)!r}")
        yield number, row


def _done_rows(output: Path, rows: list[tuple[int, dict[str, Any]]]) -> int:
    """How many leading input rows OUT already holds (checked pair by pair)."""
    if not output.exists():
        return 0
    drop_torn_tail(output)  # a line cut by an interruption: redo from there
    done = 0
    for _, previous in read_jsonl(output):
        if done >= len(rows):
            raise ValueError(f"{output} has more rows than the input; it belongs to another input")
        number, row = rows[done]
        if (previous.get("ground_truth"), previous.get("prediction")) != (row["ground_truth"], row["prediction"]):
            raise ValueError(f"{output} row {done + 1} does not match input line {number}; use a new --output")
        done += 1
    return done


async def verify_file(settings, input_path: Path, output_path: Path) -> dict[str, int]:
    """Judge every row of ``input_path`` into ``output_path``; returns counts by source (and ``failed``)."""
    from rich.progress import Progress

    from speciarl_verl.judge.offline import decide_offline
    from speciarl_verl.judge.tiered import TieredVerifier
    from speciarl_verl.judge.verifier import JudgeError, VerificationRequest

    rows = list(_read_rows(input_path))
    done = _done_rows(output_path, rows)
    counts = {"rows": len(rows), "resumed": done, "offline": 0, "cache": 0, "llm": 0, "dedup": 0, "failed": 0}
    verifier = TieredVerifier(settings) if settings.kind != "offline" else None
    try:
        with Progress() as progress, JsonlAppender(output_path) as out:
            task = progress.add_task("judging", total=len(rows), completed=done)
            for start in range(done, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                requests = [
                    VerificationRequest(
                        row["ground_truth"],
                        row["prediction"],
                        str(row.get("data_source") or ""),
                        tuple(row.get("parents") or ()),
                        tuple(row.get("synonyms") or ()),
                    )
                    for _, row in chunk
                ]
                if verifier is None:
                    decided = [decide_offline(r) for r in requests]
                    results = [(c.value if c else None, "offline") for c in decided]
                else:
                    try:
                        verdicts = await verifier.verify(requests)
                    except JudgeError as error:
                        counts["failed"] += error.failed
                        progress.console.print(f"[red]{error}[/red]")
                        break  # keep the output a clean prefix of the input; rerun to resume
                    results = [(v.category.value, v.source) for v in verdicts]
                out.write_many(
                    {**row, "category": category, "source": source}
                    for (_, row), (category, source) in zip(chunk, results, strict=True)
                )
                for _, source in results:
                    counts[source] += 1
                out.flush()
                progress.advance(task, len(chunk))
    finally:
        if verifier is not None:
            await verifier.aclose()
    return counts
