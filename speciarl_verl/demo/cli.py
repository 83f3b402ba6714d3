"""``speciarl demo``: the CPU demo (same as ``python -m speciarl_verl.demo``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the CPU tour: data, reward loop, recipe dry run, report")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the demo (see --help of the demo)")
    parser.set_defaults(func=lambda args: _run(args.args))


def _run(argv: list[str]) -> int:
    from speciarl_verl.demo.tour import main

    return main(argv)
