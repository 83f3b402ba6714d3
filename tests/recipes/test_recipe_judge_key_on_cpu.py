"""The recipe's judge start-up for real, with stand-ins for vLLM, verl and nvidia-smi: the judge it
starts answers only with a key generated for the run, which never appears on a command line.

The config's preflight is the real one (``python -m speciarl_verl.config.preflight``), so verl is
not shadowed: the stand-in for ``-m verl.trainer.main_ppo`` is a file the interpreter's wrapper runs."""

from __future__ import annotations

import json
import socket
import stat
import sys
from pathlib import Path

from support.fake_vllm_serve import FAKE_VLLM_SERVE

ROOT = Path(__file__).resolve().parents[2]

# Stand-in for `python -m verl.trainer.main_ppo`: asks the judge with the key the reward would send.
FAKE_MAIN_PPO = r"""
import json, os, sys, urllib.error, urllib.request
overrides = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg)
endpoint = overrides["reward.reward_kwargs.judge.llm.endpoints"].strip("[]")
key = os.environ.get(overrides.get("reward.reward_kwargs.judge.llm.api_key_env", ""), "")
def status(headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint + "/models", headers=headers), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code
with open(os.environ["SPECIARL_TEST_OUT"] + "/train.json", "w") as out:
    json.dump({"argv": sys.argv, "key": key, "with_key": status({"Authorization": f"Bearer {key}"}),
               "without_key": status({})}, out)
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_the_judge_the_recipe_starts_answers_only_with_the_runs_key(run_script, tmp_path):
    fakes = tmp_path / "site"
    module = "vllm/entrypoints/openai/api_server.py"
    path = fakes / module
    path.parent.mkdir(parents=True, exist_ok=True)
    for package in list(path.parents)[: module.count("/")]:
        (package / "__init__.py").touch()
    path.write_text(FAKE_VLLM_SERVE)
    (tmp_path / "fake_main_ppo.py").write_text(FAKE_MAIN_PPO)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "nvidia-smi", "#!/bin/sh\nprintf '0\\n1\\n2\\n3\\n4\\n5\\n'\n")
    python = (
        "#!/bin/sh\n"
        'if [ "$1 $2" = "-m verl.trainer.main_ppo" ]; then\n'
        f'    shift 2; exec {sys.executable} {tmp_path / "fake_main_ppo.py"} "$@"\n'
        "fi\n"
        f'PYTHONPATH={fakes} exec {sys.executable} "$@"\n'
    )
    executable(bin_dir / "python", python)
    for name in ("train", "val"):
        (tmp_path / f"{name}.parquet").touch()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = run_script(
        ROOT / "recipes" / "run_speciarl_qwen25vl.sh",
        *("--python", str(bin_dir / "python"), "--judge-port", str(port), "--judge-wait", "60"),
        *("--train-file", str(tmp_path / "train.parquet"), "--val-file", str(tmp_path / "val.parquet")),
        *("--log-dir", str(tmp_path / "logs")),
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "SPECIARL_TEST_OUT": str(tmp_path),
            **{name: "" for name in ("SPECIARL_JUDGE_API_KEY", "VLLM_API_KEY")},
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    judge = json.loads((tmp_path / "judge.json").read_text())
    train = json.loads((tmp_path / "train.json").read_text())
    key = judge["key"]
    assert len(key or "") >= 32
    assert "reward.reward_kwargs.judge.llm.api_key_env=SPECIARL_JUDGE_API_KEY" in train["argv"]
    assert (train["key"], train["with_key"], train["without_key"]) == (key, 200, 401)
    # on no command line and in no output: ps shows command lines to every user of the node
    host = judge["argv"].index("--host")
    assert judge["argv"][host : host + 2] == ["--host", "127.0.0.1"]
    assert not any(key in word for word in judge["argv"] + train["argv"])
    assert key not in result.stdout + result.stderr
    # nor in the run's logs, which hold the judge's and the training's output
    logs = list((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 2 and not any(key in log.read_text() for log in logs)


def test_a_running_judge_is_asked_with_the_named_key(run_script, dry_run, tmp_path):
    plan = dry_run(
        "run_speciarl_qwen25vl.sh", "--judge-endpoint", "http://judge-node:8001/v1", "--judge-api-key-env", "JUDGE_KEY"
    )
    assert "reward.reward_kwargs.judge.llm.api_key_env=JUDGE_KEY" in plan.command("verl.trainer.main_ppo")
    without = dry_run("run_speciarl_qwen25vl.sh", "--judge-endpoint", "http://judge-node:8001/v1")
    assert not any(
        word.startswith("reward.reward_kwargs.judge.llm.api_key_env") for c in without.commands for word in c
    )
    bad = run_script(ROOT / "recipes" / "run_speciarl_qwen25vl.sh", "--judge-api-key-env", "not-a-name", "--dry-run")
    assert bad.returncode == 2
    assert "--judge-api-key-env must be an environment variable name" in bad.stderr
