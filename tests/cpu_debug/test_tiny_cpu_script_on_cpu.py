"""recipes/run_speciarl_tiny_cpu.sh: what it plans to run, and how it refuses bad options (no Ray here)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speciarl_verl.config.compose import compose_config

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "run_speciarl_tiny_cpu.sh"


def run_script(*args: str, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=60)


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
        (("--rollout", "sglang"), "--rollout must be hf_cpu or vllm"),
        (("--config", "../x"), "--config must be a config name"),
        (("--steps", "2", "--steps", "3"), "--steps given twice"),
        (("--bogus", "1"), "unknown option --bogus"),
        (("--nnodes", "2"), "--nnodes 2 trains on a Ray cluster"),
        (("--nnodes", "3", "--ray-address", "auto"), "--nnodes must divide the 8 rollouts"),
        (("--nnodes", "0"), "--nnodes must be a positive number"),
        (("--ray-address", "http://head"), "--ray-address must be HOST:PORT"),
        (("--judge-endpoint", "http://127.0.0.1:8001/v1"), "need --judge llm"),
        (("--judge", "llm", "--judge-endpoint", "http://127.0.0.1:8001"), "--judge-endpoint must be an OpenAI"),
        (("--judge", "llm", "--judge-api-key-env", "NOT-A-NAME"), "--judge-api-key-env must be an environment"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args, message):
    result = run_script(*args, "--dry-run")
    assert result.returncode == 2
    assert message in result.stderr


def test_vllm_rollout_plan_composes_tiny_cpu_vllm_once(tmp_path):
    result = run_script("--dry-run", "--out", str(tmp_path / "out"), "--rollout", "vllm", "--python", sys.executable)
    assert result.returncode == 0, result.stderr
    assert "rollout vllm" in result.stdout.splitlines()[0]
    words = train_words(result.stdout)
    assert words[words.index("-m") - 1] == sys.executable  # --python wins over the venv default
    assert [w for w in words if "cpu_debug=" in w] == ["+cpu_debug=tiny_cpu_vllm"]
    composed = compose_config("speciarl_grpo", [w for w in words[words.index("+cpu_debug=tiny_cpu_vllm") :]])
    rollout = composed.actor_rollout_ref.rollout
    assert (rollout.name, rollout.load_format) == ("vllm", "dummy")  # verl's own rollout, the GPU node's first sync
    assert composed.trainer.default_local_dir == str(tmp_path / "out" / "checkpoints")


def test_vllm_rollout_defaults_to_the_repositorys_venv_or_names_its_installer(tmp_path):
    # a copy of the script in a checkout of its own: the default python is <checkout>/.venv-vllm-rollout/bin/python
    script = tmp_path / "checkout" / "recipes" / SCRIPT.name
    script.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, script)
    missing = run_script("--dry-run", "--out", str(tmp_path / "out"), "--rollout", "vllm", script=script)
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1
    assert "python -m speciarl_verl.cpu_debug.vllm_venv" in missing.stderr
    venv_python = tmp_path / "checkout" / ".venv-vllm-rollout" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\n")
    venv_python.chmod(0o755)
    plan = run_script("--dry-run", "--out", str(tmp_path / "out"), "--rollout", "vllm", script=script)
    assert plan.returncode == 0, plan.stderr
    assert train_words(plan.stdout)[train_words(plan.stdout).index("-m") - 1] == str(venv_python)
    hf = run_script("--dry-run", "--out", str(tmp_path / "out"), script=script)  # no .venv: python3
    assert train_words(hf.stdout)[train_words(hf.stdout).index("-m") - 1] == "python3"
    assert "+cpu_debug=tiny_cpu" in train_words(hf.stdout)


def test_hf_cpu_uses_the_repositorys_venv_and_refuses_a_python_without_the_package_in_one_line(tmp_path):
    # a fresh shell after `make demo`: nothing activated, the checkout's .venv is there
    script = tmp_path / "checkout" / "recipes" / SCRIPT.name
    script.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, script)
    venv_python = tmp_path / "checkout" / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\nexit 1\n")  # an interpreter that cannot import the package
    venv_python.chmod(0o755)
    plan = run_script("--dry-run", "--out", str(tmp_path / "out"), script=script)
    assert plan.returncode == 0, plan.stderr
    assert train_words(plan.stdout)[train_words(plan.stdout).index("-m") - 1] == str(venv_python)
    run = run_script("--steps", "1", "--out", str(tmp_path / "out"), script=script)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert f"{venv_python} cannot import speciarl_verl" in run.stderr and "make install" in run.stderr
    assert not (tmp_path / "out" / "data").exists()  # refused before anything was built


def test_hidden_task_plans_its_dataset_and_its_own_shipped_policy(tmp_path):
    out = tmp_path / "out"
    result = run_script("--dry-run", "--task", "hidden", "--out", str(out), "--train-rows", "12", "--val-rows", "5")
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    assert "task hidden" in plan.splitlines()[0]
    builds = [shlex.split(line) for line in plan.splitlines() if "speciarl_verl.cli data build" in line]
    assert [words[words.index("--dataset") + 1] for words in builds] == ["synthetic_shapes_hidden"] * 2
    train_file = out / "data" / "synthetic_shapes_hidden_train_12.parquet"
    val_file = out / "data" / "synthetic_shapes_hidden_val_5.parquet"
    assert [words[words.index("--out") + 1] for words in builds] == [str(train_file), str(val_file)]
    shipped = SCRIPT.parents[1] / "speciarl_verl" / "cpu_debug" / "shipped_policy_hidden"
    assert f"# tiny policy: {shipped}" in plan
    words = train_words(plan)
    assert f"data.train_files={train_file}" in words and f"data.val_files={val_file}" in words
    assert f"actor_rollout_ref.model.path={shipped}" in words
    assert not out.exists()
    # the default task is still shapes; --policy still wins over the task's shipped one
    shapes = train_words(run_script("--dry-run", "--out", str(out)).stdout)
    assert f"actor_rollout_ref.model.path={shipped.with_name('shipped_policy')}" in shapes
    mine = run_script("--dry-run", "--task", "hidden", "--out", str(out), "--policy", str(tmp_path / "mine")).stdout
    assert f"actor_rollout_ref.model.path={tmp_path / 'mine'}" in train_words(mine)


def test_an_unknown_task_exits_2_in_one_line_naming_the_option():
    result = run_script("--task", "nope", "--dry-run")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "--task must be shapes or hidden, got 'nope'" in result.stderr


def test_ray_address_and_nnodes_join_the_cluster_with_one_rank_and_one_reward_worker_per_node(tmp_path):
    result = run_script(
        "--dry-run", "--out", str(tmp_path / "out"), "--ray-address", "127.0.0.2:26400", "--nnodes", "2"
    )
    assert result.returncode == 0, result.stderr
    assert "# Ray: the running cluster at 127.0.0.2:26400, 2 node(s)" in result.stdout
    words = train_words(result.stdout)
    assert "~ray_kwargs.ray_init.num_gpus" in words and "+ray_kwargs.ray_init.address=127.0.0.2:26400" in words
    composed = compose_config(
        "speciarl_grpo", [w for w in words[words.index("+cpu_debug=tiny_cpu") :] if "=" in w or w.startswith("~")]
    )
    ray_init = composed.ray_kwargs.ray_init
    assert ray_init.address == "127.0.0.2:26400" and ray_init.num_cpus is None and "num_gpus" not in ray_init
    # the cluster's workers have `ray start`'s environment: verl's file logger gets its path through the job
    metrics = ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH
    assert metrics == str(tmp_path / "out" / "metrics.jsonl")
    assert ray_init.runtime_env.env_vars.VERL_PLATFORM == "cpu"  # tiny_cpu's own variables stay
    assert (composed.trainer.nnodes, composed.trainer.n_gpus_per_node, composed.reward.num_workers) == (2, 1, 2)
    # 2 prompts x 4 rollouts over 2 ranks: 4 samples per rank, micro batches of 4
    samples = composed.data.train_batch_size * composed.actor_rollout_ref.rollout.n
    per_rank = samples // 2
    assert composed.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu == per_rank
    assert composed.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu == per_rank
    assert composed.actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu == per_rank
    # --ray-address alone: one node, the tiny sizes unchanged, still no num_cpus / num_gpus for Ray
    one = train_words(run_script("--dry-run", "--out", str(tmp_path / "out"), "--ray-address", "auto").stdout)
    assert "+ray_kwargs.ray_init.address=auto" in one and not [w for w in one if w.startswith("trainer.nnodes")]
    assert "ray_kwargs.ray_init.num_cpus=null" in one
    # without --ray-address the tiny run keeps its own Ray instance
    own = train_words(run_script("--dry-run", "--out", str(tmp_path / "out")).stdout)
    assert not [w for w in own if "ray_init" in w]


def test_judge_endpoint_uses_the_running_judge_and_the_key_variable(tmp_path):
    result = run_script(
        "--dry-run",
        "--out",
        str(tmp_path),
        "--judge",
        "llm",
        "--judge-endpoint",
        "http://127.0.0.1:8001/v1/",
        "--judge-api-key-env",
        "SPECIARL_JUDGE_API_KEY",
    )
    assert result.returncode == 0, result.stderr
    assert "fake_judge_server" not in result.stdout  # starts none
    assert "# judge: the running server http://127.0.0.1:8001/v1 " in result.stdout
    words = train_words(result.stdout)
    assert "reward.reward_kwargs.judge.llm.endpoints=[JUDGE_URL]" in words
    assert "reward.reward_kwargs.judge.llm.api_key_env=SPECIARL_JUDGE_API_KEY" in words
    # the fake server this script starts demands the key when one is named
    started = run_script("--dry-run", "--out", str(tmp_path), "--judge", "llm", "--judge-api-key-env", "K").stdout
    server = next(line for line in started.splitlines() if "fake_judge_server" in line and not line.startswith("#"))
    assert shlex.split(server)[-2:] == ["--api-key-env", "K"]
    assert "reward.reward_kwargs.judge.llm.api_key_env=K" in train_words(started)
