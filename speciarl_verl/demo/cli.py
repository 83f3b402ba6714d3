"""``speciarl demo``: the CPU demo (same as ``python -m speciarl_verl.demo``, same options).

The steps and a ``--rollouts`` file are checked before Ray starts, so an unknown step or a
missing or malformed rollouts file is one line (naming ``file:line``) and exit code 2 rather
than a failure half-way through the tour.
"""

from __future__ import annotations

import argparse

from speciarl_verl.cli_errors import UserInputError, user_input


def register(subparsers: argparse._SubParsersAction) -> None:
    from speciarl_verl.demo.tour import add_arguments

    parser = subparsers.add_parser(
        "demo",
        help="the CPU tour: data, reward loop, recipe dry run, report",
        description="The CPU tour of SpeciaRL on verl: data, reward loop, recipe dry run, report.",
    )
    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speciarl_verl.demo.tour import run, selected_steps
    from speciarl_verl.offline_fixtures.recorded_rollouts import load_recorded_groups

    with user_input():
        steps = selected_steps(args.steps)
    if args.rollouts is not None and "reward" in steps:
        try:
            with user_input():  # the reader's contract: a bad line is a ValueError naming file:line
                load_recorded_groups(args.rollouts)
        except OSError as error:
            raise UserInputError(f"{args.rollouts}: cannot read it ({error.strerror or error})") from error
    return run(args, steps)
