"""Which errors `speciarl` reports as one line, with which exit code; everything else keeps its traceback."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from speciarl_verl import cli_errors
from speciarl_verl.cli import main
from speciarl_verl.cli_errors import UserInputError, exit_code_for, expected_errors, one_line, user_input


def test_every_listed_domain_error_exists_and_is_an_exception():
    for module_name, class_name, code in cli_errors._DOMAIN_ERRORS:
        error_type = getattr(importlib.import_module(module_name), class_name)
        assert issubclass(error_type, Exception) and code in (1, 2)


def test_exit_codes_of_the_real_domain_errors():
    from speciarl_verl.data.source_record import DataSourceError
    from speciarl_verl.evaluation.vllm_predictor import MissingGpuExtraError
    from speciarl_verl.judge.transport import JudgeTransportError
    from speciarl_verl.judge.verifier import JudgeError

    assert exit_code_for(UserInputError("f.jsonl:1: not valid JSON")) == 2
    assert exit_code_for(DataSourceError("images.txt line 3: image file missing")) == 2
    assert exit_code_for(JudgeError("judge failed for 1 of 1 pair(s)", [None])) == 1
    assert exit_code_for(JudgeTransportError("refused", "http://127.0.0.1:1/v1")) == 1
    assert exit_code_for(MissingGpuExtraError("vLLM is not installed")) == 2
    assert exit_code_for(ValueError("a bug, or input nobody checked")) is None
    assert exit_code_for(KeyError("prediction")) is None
    assert {UserInputError, DataSourceError, JudgeError, MissingGpuExtraError} <= set(expected_errors())


def test_looking_up_the_error_types_imports_nothing_heavy():
    heavy = ("speciarl_verl.judge.transport", "speciarl_verl.judge.llm_judge", "speciarl_verl.evaluation")
    code = (
        "import sys; from speciarl_verl.cli_errors import expected_errors; expected_errors(); "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_user_input_converts_only_the_types_it_is_given():
    with pytest.raises(UserInputError, match="bad value") as excinfo, user_input():
        raise ValueError("bad value")
    assert isinstance(excinfo.value.__cause__, ValueError)
    with pytest.raises(UserInputError, match="expected NAME"), user_input(TypeError):
        raise TypeError("expected NAME")
    with pytest.raises(KeyError), user_input():
        raise KeyError("not a ValueError: passes through")


def test_one_line_folds_line_breaks():
    assert one_line(ValueError("judge down\nrun again\n")) == "judge down run again"
    assert one_line(KeyError()) == "KeyError"


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr("speciarl_verl.data.cli._run_list", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["data", "list"])


def test_main_returns_the_exit_code_and_prints_one_line(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert main(["verify", "--judge", "offline", "--input", str(tmp_path / "none.jsonl"), "--output", str(out)]) == 2
    assert (
        capsys.readouterr().err
        == f"speciarl verify: {tmp_path / 'none.jsonl'}: cannot read it (No such file or directory)\n"
    )
