"""Fixtures for the recipe tests: verl's validation on a CPU box, and recipe dry runs parsed into commands."""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[2]


def _validate_on_cpu(config) -> None:
    """verl's ``validate_config`` as ``main_ppo`` runs it, on a copy with the LoRA rank set to 0.

    With ``lora_rank > 0`` and ``rollout.name=vllm``, ``validate_config`` imports
    ``verl.workers.rollout.vllm_rollout.utils`` (which imports vLLM) only to round the rank
    to one vLLM supports. vLLM cannot be installed beside this machine's CPU torch, so that
    single check is skipped by validating a copy without LoRA; every other check runs, and
    the LoRA keys themselves are asserted by the config tests.
    """
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    checked = copy.deepcopy(config)
    with open_dict(checked):
        checked.actor_rollout_ref.model.lora_rank = 0
    validate_config(config=checked, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


@pytest.fixture(scope="session")
def validate_on_cpu():
    return _validate_on_cpu


@dataclass
class DryRun:
    """What a script printed: the whole text, and each command line split into words."""

    output: str
    commands: list[list[str]]

    def command(self, marker: str) -> list[str]:
        found = [c for c in self.commands if marker in c]
        assert len(found) == 1, f"expected one command with {marker!r} in:\n{self.output}"
        return found[0]

    def has(self, marker: str) -> bool:
        return any(marker in c for c in self.commands)

    def verl_call(self) -> tuple[str, list[str]]:
        """``(config name, Hydra overrides)`` of the ``main_ppo`` command."""
        words = self.command("verl.trainer.main_ppo")
        start = words.index("-m")
        assert words[start : start + 5] == ["-m", "verl.trainer.main_ppo", "-cp", "pkg://speciarl_verl.config", "-cn"]
        return words[start + 5], words[start + 6 :]


def _run_script(path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    environment.update(env or {})
    return subprocess.run(["bash", str(path), *args], capture_output=True, text=True, env=environment, timeout=120)


@pytest.fixture(scope="session")
def run_script():
    """``run_script(path, *args, env=None)``: ``bash path args`` without CUDA_VISIBLE_DEVICES unless given."""
    return _run_script


@pytest.fixture
def dry_run(tmp_path):
    """``dry_run(script, *args, env=None)``: ``recipes/<script> ... --dry-run --data-dir <tmp>/data``, parsed.

    The two options go before a ``--`` in ``args`` (after it everything is a Hydra override), and
    ``--python`` this interpreter unless ``args`` name one: the dry run runs the config's preflight
    (``python -m speciarl_verl.config.preflight``), which needs the package and Hydra.
    """

    def run(script: str, *args: str, env: dict | None = None) -> DryRun:
        flags = ["--dry-run", "--data-dir", str(tmp_path / "data")]
        if "--python" not in args:
            flags += ["--python", sys.executable]
        cut = args.index("--") if "--" in args else len(args)
        result = _run_script(ROOT / "recipes" / script, *args[:cut], *flags, *args[cut:], env=env)
        assert result.returncode == 0, f"{script} {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        lines = [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("#")]
        return DryRun(output=result.stdout, commands=[shlex.split(line) for line in lines])

    return run
