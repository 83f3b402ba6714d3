"""The ``speciarl`` command. Each area adds its own subcommands from its ``cli`` module.

A module listed in :data:`SUBCOMMAND_MODULES` defines ``register(subparsers)``, which adds
one or more subparsers and sets ``func`` (called with the parsed arguments, returning an
exit code) on each.

Failures a user can act on are reported here, in one place, as one line on stderr,
``speciarl <command>: <message>``, with exit code 2 for bad input (as argparse does for a
bad command line) and 1 for an expected runtime failure such as a judge that is down
(:mod:`speciarl_verl.cli_errors` says which errors are which). ``--debug``, before or after
the command, prints the traceback first. Any other error is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Iterator, Sequence

from speciarl_verl.cli_errors import exit_code_for, expected_errors, one_line

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "speciarl_verl.data.cli",
    "speciarl_verl.judge.cli",
    "speciarl_verl.evaluation.cli",
    "speciarl_verl.demo.cli",
)

_DEBUG_HELP = "on an error, print the traceback before the one-line message"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speciarl", description="SpeciaRL on verl: data, judge, evaluation.")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    for command in _commands(parser):
        # SUPPRESS: a leaf without --debug must not reset the value the top level parsed.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        command.set_defaults(command_name=command.prog)
    return parser


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers that run something (``speciarl verify``, ``speciarl eval judge``, ...)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield parser
        return
    for group in groups:
        for child in dict.fromkeys(group.choices.values()):  # an alias shares its parser
            yield from _commands(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``speciarl`` command; returns its exit code (0 done, 1 runtime failure, 2 bad input).

    >>> main(["verify", "--judge", "offline", "--input", "/no/such/pairs.jsonl", "--output", "/tmp/o.jsonl"])
    2
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except expected_errors() as error:
        code = exit_code_for(error)
        if args.debug:
            traceback.print_exc()
        print(f"{args.command_name}: {one_line(error)}", file=sys.stderr)
        return code if code is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
