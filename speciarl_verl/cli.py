"""The ``speciarl`` command. Each area adds its own subcommands from its ``cli`` module.

A module listed in :data:`SUBCOMMAND_MODULES` defines ``register(subparsers)``, which adds
one or more subparsers and sets ``func`` (called with the parsed arguments, returning an
exit code) on each.

Failures a user can act on are reported here, in one place, as one line on stderr,
``speciarl <command>: <message>``, with exit code 2 for bad input (as argparse does for a
bad command line) and 1 for an expected runtime failure such as a judge that is down
(:mod:`speciarl_verl.cli_errors` says which errors are which). ``--debug``, before or after
the command, prints the traceback first. Any other error is a bug and keeps its traceback.

A mistyped option (``speciarl data build ... --subest 20``) is reported by the subcommand it was
given to, with that subcommand's usage and the closest option it has (``did you mean --subset?``).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
import traceback
from collections.abc import Iterator, Sequence

from speciarl_verl.cli_errors import exit_code_for, expected_errors, one_line

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main", "unrecognized_message"]

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "speciarl_verl.data.cli",
    "speciarl_verl.judge.cli",
    "speciarl_verl.evaluation.cli",
    "speciarl_verl.demo.cli",
)

_DEBUG_HELP = "on an error, print the traceback before the one-line message"
#: What argparse takes for a negative number rather than an option.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose unknown options are reported by the subcommand that was given them.

    argparse reports arguments no parser consumed from the top-level parser, with the top-level usage;
    here the subcommand that ran reports them, with its own usage and the closest option it knows.
    When required options are missing too, the unknown ones are named first (a typo is the likelier cause).
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            leaves = getattr(self, "_leaves", {})
            leaf = leaves.get(getattr(parsed, "command_name", None), self)
            leaf.error(unrecognized_message(extras, leaf))
        return parsed

    def error(self, message: str):  # type: ignore[override]
        unknown = [token for token in getattr(self, "_given", ()) if _is_unknown_option(token, self)]
        if unknown and message.startswith("the following arguments are required"):
            message = f"{unrecognized_message(unknown, self)}; {message}"
        super().error(message)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def _is_unknown_option(token: str, parser: argparse.ArgumentParser) -> bool:
    if not token.startswith("-") or token == "--" or _NEGATIVE_NUMBER.match(token):
        return False
    name = token.split("=", 1)[0]
    known = _option_strings(parser)
    return name not in known and not (parser.allow_abbrev and any(option.startswith(name) for option in known))


def unrecognized_message(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognized arguments: --subest 20 (did you mean --subset?)``: the suggestion is the closest
    option of ``parser`` to the first unknown option, when one is close.

    >>> p = argparse.ArgumentParser(prog="demo")
    >>> _ = p.add_argument("--subset")
    >>> unrecognized_message(["--subest", "20"], p)
    'unrecognized arguments: --subest 20 (did you mean --subset?)'
    """
    message = f"unrecognized arguments: {' '.join(extras)}"
    options = [token.split("=", 1)[0] for token in extras if _is_unknown_option(token, parser)]
    if options:
        close = difflib.get_close_matches(options[0], _option_strings(parser), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]}?)"
    return message


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default where its text does not already say it, wraps a
    one-paragraph description and keeps a text with line breaks (a schema, an example) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.option_strings and "default" not in text and action.default not in (None, False, [])
        if shown and action.default is not argparse.SUPPRESS:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="speciarl", description="SpeciaRL on verl: data, judge, evaluation.")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    leaves = {}
    for command in _commands(parser):
        # SUPPRESS: a leaf without --debug must not reset the value the top level parsed.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        command.set_defaults(command_name=command.prog)
        command.formatter_class = _HelpFormatter
        leaves[command.prog] = command
    parser._leaves = leaves  # type: ignore[attr-defined]  # read by _Parser.parse_args
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
