"""The ``speciarl`` command. Each area adds its own subcommands from its ``cli`` module.

A module listed in :data:`SUBCOMMAND_MODULES` defines ``register(subparsers)``, which adds
one or more subparsers and sets ``func`` (called with the parsed arguments, returning an
exit code) on each.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["main", "build_parser", "SUBCOMMAND_MODULES"]

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "speciarl_verl.data.cli",
    "speciarl_verl.judge.cli",
    "speciarl_verl.evaluation.cli",
    "speciarl_verl.demo.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speciarl", description="SpeciaRL on verl: data, judge, evaluation.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
