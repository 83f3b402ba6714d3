import subprocess
import sys

import pytest

from speciarl_verl.cli import SUBCOMMAND_MODULES, build_parser


def test_every_subcommand_module_registers_something():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    assert len(commands) >= len(SUBCOMMAND_MODULES)
    assert "demo" in commands


def test_unknown_command_exits_with_usage_error():
    with pytest.raises(SystemExit) as excinfo:
        build_parser().parse_args(["nope"])
    assert excinfo.value.code == 2


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "speciarl_verl.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout
