"""recipes/run_speciarl_tiny_cpu.sh: what it plans to run, and how it refuses bad options (no Ray here)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from speciarl_verl.config.compose import compose_config

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "run_speciarl_tiny_cpu.sh"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def train_words(plan: str) -> list[str]:
    line = next(line for line in plan.splitlines() if "verl.trainer.main_ppo" in line)
    return shlex.split(line)


@pytest.mark.parametrize("config", ["speciarl_grpo", "speciarl_drgrpo", "speciarl_dapo_ds"])
def test_dry_run_plans_data_policy_and_a_verl_command_that_composes(tmp_path, config):
    result = run_script("--dry-run", "--out", str(tmp_path / "out"), "--steps", "5", "--config", config, "x.y=1")
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    assert "--dataset synthetic_shapes --root" in plan and "--split train" in plan and "--split val" in plan
    shipped = SCRIPT.parents[1] / "speciarl_verl" / "cpu_debug" / "shipped_policy"
    assert f"# tiny policy: {shipped}" in plan  # the shipped policy, never built on the spot
    words = train_words(plan)
    assert words[words.index("-cn") + 1] == config and "+cpu_debug=tiny_cpu" in words
    assert words[-1] == "x.y=1"  # user overrides come last and win
    overrides = [w for w in words[words.index("+cpu_debug=tiny_cpu") :] if "=" in w and w != "x.y=1"]
    composed = compose_config(config, overrides)
    assert composed.trainer.total_training_steps == 5 and composed.trainer.save_freq == 5
    assert composed.trainer.default_local_dir == str(tmp_path / "out" / "checkpoints")
    assert composed.actor_rollout_ref.rollout.name == "hf_cpu"
    assert composed.actor_rollout_ref.model.path == str(shipped)
    assert not (tmp_path / "out").exists()  # a dry run starts and writes nothing


def test_llm_judge_plan_starts_the_fake_server_and_points_the_reward_at_it(tmp_path):
    plan = run_script("--dry-run", "--out", str(tmp_path), "--judge", "llm").stdout
    assert "speciarl_verl.offline_fixtures.fake_judge_server" in plan
    words = train_words(plan)
    assert "reward.reward_kwargs.judge.kind=llm" in words
    assert "reward.reward_kwargs.judge.llm.endpoints=[JUDGE_URL]" in words


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--steps", "0"), "--steps must be a positive number"),
        (("--judge", "gpt"), "--judge must be offline or llm"),
        (("--config", "../x"), "--config must be a config name"),
        (("--steps", "2", "--steps", "3"), "--steps given twice"),
        (("--bogus", "1"), "unknown option --bogus"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args, message):
    result = run_script(*args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr
