"""``speciarl eval curves``: the command line of :mod:`speciarl_verl.evaluation.curves` (no matplotlib
or torch import until it runs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from speciarl_verl.cli_errors import output_folder

__all__ = ["add_curves_parser"]


def add_curves_parser(commands: argparse._SubParsersAction, guarded: Callable) -> None:
    """Register ``curves`` under ``speciarl eval``; ``guarded`` turns the step's ``ValueError`` into exit 2."""
    p = commands.add_parser(
        "curves",
        help="a training run's reward mean, verdict shares, zero-variance groups and judge figures per step",
    )
    p.add_argument(
        "--metrics",
        required=True,
        type=Path,
        help="verl's file-logger output of a run (OUT/metrics.jsonl of the recipes, CPU or GPU)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=guarded(_curves))


def _curves(args: argparse.Namespace) -> int:
    from speciarl_verl.evaluation.curves import write_curves

    output_folder(args.out, "--out", "curves.png, curves.csv and curves.md")
    written = write_curves(args.metrics, args.out)
    print(f"curves -> {written['png']}, table {written['markdown']}")
    return 0
