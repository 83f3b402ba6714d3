"""The main recipe's life cycle for real on a CPU box: dry-run detection, the preflight, checkpoint
folders, the judge's health check, leftover judges, shutdown on Ctrl-C, Ray and logs.

Stand-ins: ``nvidia-smi`` lists six GPUs; ``--python`` is a small wrapper around this interpreter
that answers the preflight (``# `` lines, or a refusal), records the data builds instead of running
them, runs a fake vLLM server as ``-m vllm.entrypoints.openai.api_server`` (so its command line is
the one a real judge has) and a fake ``main_ppo`` that asks the judge with the reward's key and
records its arguments and environment. Everything else goes to this interpreter.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.fake_vllm_serve import FAKE_VLLM_SERVE

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "recipes" / "run_speciarl_qwen25vl.sh"
JUDGE = "Qwen3-30B-A3B-Instruct-2507"

# `python -m verl.trainer.main_ppo`: asks the judge as the reward would, records what it was given.
FAKE_MAIN_PPO = r"""
import json, os, signal, sys, time, urllib.error, urllib.request
out = os.environ["SPECIARL_TEST_OUT"]
overrides = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg)
endpoint = overrides["reward.reward_kwargs.judge.llm.endpoints"].strip("[]")
key = os.environ.get(overrides.get("reward.reward_kwargs.judge.llm.api_key_env", ""), "")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the reward's client uses no proxy
try:
    request = urllib.request.Request(endpoint + "/models", headers={"Authorization": f"Bearer {key}"})
    with opener.open(request, timeout=5) as response:
        status = response.status
except urllib.error.HTTPError as error:
    status = error.code
record = {"argv": sys.argv, "pid": os.getpid(), "ray_address": os.environ.get("RAY_ADDRESS"), "with_key": status}
with open(os.path.join(out, "train.json.part"), "w") as file:
    json.dump(record, file)
os.replace(os.path.join(out, "train.json.part"), os.path.join(out, "train.json"))
print("fake training: step 1 done", flush=True)
print("fake training: a warning on stderr", file=sys.stderr, flush=True)
if os.environ.get("SPECIARL_TEST_TRAIN") == "slow_stop":
    # verl's driver on SIGINT: shuts Ray down, which takes a while
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    open(os.path.join(out, "train.ready"), "w").close()
    while not stopping:
        time.sleep(0.1)
    print("fake training: shutting down", flush=True)
    time.sleep(float(os.environ.get("SPECIARL_TEST_STOP_S", "8")))
    sys.exit(1)
"""

# `--python`: the stand-ins above, and this interpreter for everything else.
WRAPPER = r"""
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
out = os.environ.get("SPECIARL_TEST_OUT", here)
env = dict(os.environ, PYTHONPATH=os.path.join(here, "site"))

def record(name, value):
    with open(os.path.join(out, name), "a") as file:
        file.write(json.dumps(value) + "\n")

if args[:2] == ["-m", "speciarl_verl.config.preflight"]:
    record("preflight.jsonl", args[2:])
    if os.environ.get("SPECIARL_TEST_PREFLIGHT") == "refuse":
        print("preflight: stand-in refusal: 32 samples per GPU do not split into micro-batches of 20", file=sys.stderr)
        sys.exit(2)
    print("# preflight stand-in: the batch splits")
    print("not a plan line: left out of the plan")
    sys.exit(0)
if args[:3] == ["-m", "speciarl_verl.cli", "data"]:
    record("builds.jsonl", args[3:])
    target = args[args.index("--out") + 1]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    open(target, "w").close()
    sys.exit(0)
if args[:2] == ["-m", "verl.trainer.main_ppo"]:
    args = [os.path.join(here, "fake_main_ppo.py"), *args[2:]]
os.execve(sys.executable, [sys.executable, *args], env)
"""

CLEAN_ENV = {
    "CUDA_VISIBLE_DEVICES",
    "RAY_ADDRESS",
    "SPECIARL_JUDGE_API_KEY",
    "VLLM_API_KEY",
    *(f"{scheme}_proxy" for scheme in ("http", "https", "all", "no")),
    *(f"{scheme}_PROXY" for scheme in ("HTTP", "HTTPS", "ALL", "NO")),
}


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def kill_if_alive(*pids: int | None) -> None:
    for pid in pids:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Server:
    """A server in this process answering every GET with ``status`` (a judge that wants a key, or a stranger)."""

    def __init__(self, status: int, port: int = 0):
        code = status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Harness:
    def __init__(self, root: Path):
        self.root = root
        self.out = root / "out"
        self.out.mkdir()
        site = root / "stand-ins" / "site"
        module = site / "vllm" / "entrypoints" / "openai" / "api_server.py"
        module.parent.mkdir(parents=True)
        for package in (site / "vllm", *list(module.parents)[:3]):
            (package / "__init__.py").touch()
        module.write_text(FAKE_VLLM_SERVE)
        (root / "stand-ins" / "fake_main_ppo.py").write_text(FAKE_MAIN_PPO)
        self.python = root / "stand-ins" / "python"
        executable(self.python, f"#!{sys.executable}\n{WRAPPER}")
        self.bin = root / "bin"
        self.bin.mkdir()
        executable(self.bin / "nvidia-smi", "#!/bin/sh\nprintf '0\\n1\\n2\\n3\\n4\\n5\\n'\n")
        for name in ("train", "val"):
            (root / f"{name}.parquet").touch()
        self.port = free_port()
        self.logs = root / "logs"
        self.pidfile = self.logs / f"judge_vllm_{self.port}.pid"

    def env(self, **extra: str) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
        environment.update({"PATH": f"{self.bin}:/usr/bin:/bin", "SPECIARL_TEST_OUT": str(self.out), **extra})
        return environment

    def args(self, *extra: str, data: bool = True, wait: int = 90) -> list[str]:
        words = ["--python", str(self.python), "--judge-port", str(self.port), "--judge-wait", str(wait)]
        words += ["--log-dir", str(self.logs)]
        if data:
            words += ["--train-file", str(self.root / "train.parquet"), "--val-file", str(self.root / "val.parquet")]
        return [*words, *extra]

    def run(self, *args: str, env: dict | None = None, script: Path = MAIN) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(script), *args],
            capture_output=True,
            text=True,
            env=env or self.env(),
            cwd=self.root,
            timeout=300,
        )

    def recorded(self, name: str):
        path = self.out / name
        if name.endswith(".jsonl"):
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return json.loads(path.read_text()) if path.exists() else None

    def nothing_started(self) -> bool:
        return not any((self.out / name).exists() for name in ("judge.json", "train.json", "builds.jsonl"))


@pytest.fixture
def harness(tmp_path):
    return Harness(tmp_path)


def plan_commands(output: str) -> list[list[str]]:
    return [shlex.split(line) for line in output.splitlines() if line.strip() and not line.startswith("#")]


def training_words(output: str) -> list[str]:
    (words,) = [c for c in plan_commands(output) if "verl.trainer.main_ppo" in c]
    return words


# ---------------------------------------------------------------------------------------------
# --dry-run wherever it is


def test_dry_run_after_the_cut_starts_nothing(harness):
    result = harness.run(*harness.args("--", "trainer.total_epochs=1", "--dry-run"))
    assert result.returncode == 0, result.stderr
    assert harness.nothing_started() and not harness.logs.exists()
    assert "--dry-run after -- is taken as this script's --dry-run" in result.stdout
    words = training_words(result.stdout)
    assert "trainer.total_epochs=1" in words and "--dry-run" not in words


@pytest.mark.parametrize("option", ["--judge-arg", "--config", "--checkpoint-dir"])
def test_dry_run_as_another_options_value_is_refused_in_one_line(harness, option):
    result = harness.run(*harness.args(option, "--dry-run"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"--dry-run given as the value of {option}" in result.stderr
    assert harness.nothing_started() and not harness.logs.exists()


# ---------------------------------------------------------------------------------------------
# the preflight


def test_the_preflight_gets_the_training_overrides_and_its_lines_go_into_the_plan(harness):
    result = harness.run(*harness.args("--dry-run", "--", "trainer.total_epochs=1"))
    assert result.returncode == 0, result.stderr
    (call,) = harness.recorded("preflight.jsonl")
    words = training_words(result.stdout)
    cut = words.index("-cn")
    assert call == ["--config", words[cut + 1], "--", *words[cut + 2 :]]
    assert "# preflight stand-in: the batch splits" in result.stdout.splitlines()
    assert "not a plan line" not in result.stdout


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "real-run"])
def test_a_preflight_refusal_stops_everything_in_one_line(harness, dry):
    env = harness.env(SPECIARL_TEST_PREFLIGHT="refuse")
    result = harness.run(*harness.args(*(["--dry-run"] if dry else [])), env=env)
    assert result.returncode == 2
    assert result.stderr == "preflight: stand-in refusal: 32 samples per GPU do not split into micro-batches of 20\n"
    assert result.stdout == ""  # no plan: nothing of it would run
    assert harness.nothing_started() and not harness.logs.exists()


# ---------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_plan(harness, *args: str) -> tuple[str, str]:
    """(trainer.default_local_dir of the training command, the plan) of a dry run from harness.root."""
    result = harness.run(*harness.args("--dry-run", *args, data=False))
    assert result.returncode == 0, result.stderr
    (folder,) = [w.split("=", 1)[1] for w in training_words(result.stdout) if "trainer.default_local_dir=" in w]
    return folder, result.stdout


def test_the_checkpoint_folder_is_absolute_and_named_after_the_runs_inputs(harness):
    folder, plan = checkpoint_plan(harness)
    expected = harness.root / "checkpoints" / f"speciarl_grpo_cub200_train_3000_reference_seed42_{JUDGE}"
    assert folder == str(expected)
    assert f"# starting fresh in {expected}" in plan.splitlines()

    # verl's tracker names step 2 and its folder is there: the same command resumes
    expected.mkdir(parents=True)
    (expected / "latest_checkpointed_iteration.txt").write_text("2")
    (expected / "global_step_2").mkdir()
    assert f"# resuming from global_step_2 in {expected}" in checkpoint_plan(harness)[1]

    # another seed, training set or judge: a folder of its own, fresh
    for args, name in [
        (("--seed", "7"), f"speciarl_grpo_cub200_train_3000_reference_seed7_{JUDGE}"),
        (("--train-subset", "1024"), f"speciarl_grpo_cub200_train_1024_reference_seed42_{JUDGE}"),
        (("--judge-model", "Qwen/Other-Judge"), "speciarl_grpo_cub200_train_3000_reference_seed42_Other-Judge"),
        (("--sampler", "per_source"), f"speciarl_grpo_cub200_train_3000_seed42_{JUDGE}"),
        (("--train-file", "sets/food101 train.parquet"), f"speciarl_grpo_food101_train_seed42_{JUDGE}"),
    ]:
        folder, plan = checkpoint_plan(harness, *args)
        assert folder == str(harness.root / "checkpoints" / name), args
        assert f"# starting fresh in {folder}" in plan.splitlines()

    # the tracker names a step whose folder is gone: verl starts over, and so says the plan
    (expected / "latest_checkpointed_iteration.txt").write_text("9\n")
    assert f"# starting fresh in {expected} (" in checkpoint_plan(harness)[1]


def test_the_training_set_is_the_methods_draw_unless_per_source_is_asked(harness):
    cases = [
        ((), "reference", "cub200_train_3000_seed42_reference.parquet"),
        (("--sampler", "per_source"), "per_source", "cub200_train_3000_seed42.parquet"),
    ]
    plans = {}
    for args, sampler, name in cases:
        result = harness.run(*harness.args("--dry-run", "--cub-root", "/data/CUB_200_2011", *args, data=False))
        assert result.returncode == 0, result.stderr
        plans[sampler] = result.stdout.splitlines()
        train, val = [c for c in plan_commands(result.stdout) if "speciarl_verl.cli" in c]
        assert train[train.index("--sampler") + 1] == sampler, args
        assert train[train.index("--out") + 1] == str(harness.root / "data" / name)
        assert val[val.index("--sampler") + 1] == "per_source"  # the validation draw is the same either way
    said = "# 1. build the train parquet from /data/CUB_200_2011, drawn as the method drew it (--sampler reference)"
    assert said in plans["reference"]
    assert "# 1. build the train parquet from /data/CUB_200_2011, drawn per source" in plans["per_source"]
    bad = harness.run(*harness.args("--dry-run", "--sampler", "random", data=False))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--sampler must be reference" in bad.stderr
    given = harness.run(*harness.args("--dry-run", "--sampler", "per_source"))  # the harness gives --train-file
    assert given.returncode == 2 and "with --train-file nothing is drawn" in given.stderr
    assert harness.nothing_started()


def test_checkpoint_options_and_overrides(harness):
    folder, _ = checkpoint_plan(harness, "--checkpoint-root", "runs")
    assert folder == str(harness.root / "runs" / f"speciarl_grpo_cub200_train_3000_reference_seed42_{JUDGE}")
    folder, _ = checkpoint_plan(harness, "--checkpoint-dir", "mine/here")
    assert folder == str(harness.root / "mine" / "here")

    # the user's override wins; the script adds none of its own, and the plan says so
    result = harness.run(*harness.args("--dry-run", "--", "trainer.default_local_dir=/elsewhere/ckpt"))
    words = training_words(result.stdout)
    assert [w for w in words if "default_local_dir" in w] == ["trainer.default_local_dir=/elsewhere/ckpt"]
    assert "your override trainer.default_local_dir=/elsewhere/ckpt" in result.stdout
    assert "# starting fresh in /elsewhere/ckpt" in result.stdout.splitlines()

    resumable = harness.root / "checkpoints" / f"speciarl_grpo_train_seed42_{JUDGE}"
    (resumable / "global_step_4").mkdir(parents=True)
    (resumable / "latest_checkpointed_iteration.txt").write_text("4")
    result = harness.run(*harness.args("--dry-run", "--", "trainer.resume_mode=disable"))
    assert f"# starting fresh in {resumable} (your override trainer.resume_mode=disable" in result.stdout

    both = harness.run(*harness.args("--dry-run", "--checkpoint-root", "a", "--checkpoint-dir", "b"))
    assert both.returncode == 2 and "not both" in both.stderr


# ---------------------------------------------------------------------------------------------
# the judge's batch and the reward's requests in flight: one setting


def in_flight_and_batch(output: str) -> tuple[list[str], list[str]]:
    """(the training's max_in_flight overrides, the judge server's --max-num-seqs values) of a plan."""
    words = training_words(output)
    in_flight = [w.split("=", 1)[1] for w in words if w.startswith("reward.reward_kwargs.judge.llm.max_in_flight=")]
    servers = [c for c in plan_commands(output) if "vllm.entrypoints.openai.api_server" in c]
    batch = [c[i + 1] for c in servers for i, w in enumerate(c) if w == "--max-num-seqs"]
    return in_flight, batch


def test_one_option_sets_the_judges_batch_and_the_rewards_requests_in_flight(harness):
    result = harness.run(*harness.args("--dry-run"))
    assert result.returncode == 0, result.stderr
    assert in_flight_and_batch(result.stdout) == (["256"], ["256"])  # vLLM's default max_num_seqs

    result = harness.run(*harness.args("--dry-run", "--judge-max-num-seqs", "96"))
    assert result.returncode == 0, result.stderr
    assert in_flight_and_batch(result.stdout) == (["96"], ["96"])
    assert "batches up to 96 sequences (--max-num-seqs) and each reward worker keeps up to 96" in result.stdout

    # no server started: the reward's side still follows the option
    running = ("--judge-endpoint", "http://judge-node:9000/v1", "--judge-max-num-seqs", "96")
    result = harness.run(*harness.args("--dry-run", *running))
    assert result.returncode == 0, result.stderr
    assert in_flight_and_batch(result.stdout) == (["96"], [])
    assert "each reward worker keeps up to 96 requests in flight (--judge-max-num-seqs" in result.stdout

    # an override after -- comes last and wins, and the plan says so
    override = "reward.reward_kwargs.judge.llm.max_in_flight=32"
    result = harness.run(*harness.args("--dry-run", "--judge-max-num-seqs", "96", "--", override))
    assert result.returncode == 0, result.stderr
    assert in_flight_and_batch(result.stdout) == (["96", "32"], ["96"])
    said = f"#    your override {override} wins for the reward's requests in flight; the judge server still gets"
    assert f"{said} --max-num-seqs 96" in result.stdout


@pytest.mark.parametrize("arg", ["--max-num-seqs=8", "--max_num_seqs=8", "--max-num-seqs"])
def test_the_judges_max_num_seqs_as_a_judge_arg_is_refused_in_one_line(harness, arg):
    result = harness.run(*harness.args("--judge-arg", arg, "--judge-arg", "8"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"--judge-arg {arg}: give --judge-max-num-seqs N instead" in result.stderr
    assert harness.nothing_started() and not harness.logs.exists()


# ---------------------------------------------------------------------------------------------
# the judge's health check, keys and leftovers


def test_a_dead_proxy_does_not_stop_the_health_check(harness):
    dead = f"http://127.0.0.1:{free_port()}"
    env = harness.env(http_proxy=dead, HTTP_PROXY=dead, https_proxy=dead, HTTPS_PROXY=dead)
    started = time.monotonic()
    result = harness.run(*harness.args(wait=60), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "judge ready" in result.stdout
    assert time.monotonic() - started < 55  # not the whole --judge-wait
    assert harness.recorded("train.json")["with_key"] == 200


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("key_env", [None, "JUDGE_KEY"], ids=["no-key", "wrong-key"])
def test_a_judge_that_refuses_the_key_stops_the_run_at_once(harness, status, key_env):
    with Server(status) as judge:
        args = ["--judge-endpoint", f"http://127.0.0.1:{judge.port}/v1"]
        if key_env:
            args += ["--judge-api-key-env", key_env]
        result = harness.run(*harness.args(*args), env=harness.env(JUDGE_KEY="not-this-judges-key"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "HTTP 401/403" in result.stderr
    if key_env:
        assert f"refuses the key in ${key_env}" in result.stderr
    else:
        assert "pass --judge-api-key-env NAME" in result.stderr
    assert "leftover judge of an earlier run" in result.stderr
    assert harness.recorded("train.json") is None


def test_a_stranger_on_the_judge_port_is_named_with_the_key_option(harness):
    with Server(200, port=harness.port):
        result = harness.run(*harness.args())
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    endpoint = f"http://127.0.0.1:{harness.port}/v1"
    assert f"--judge-endpoint {endpoint} --judge-api-key-env NAME" in result.stderr
    assert harness.recorded("judge.json") is None


def start_leftover_judge(harness) -> subprocess.Popen:
    """A judge server as an earlier run started it (own process group, its key long gone)."""
    leftover_out = harness.root / "leftover"
    leftover_out.mkdir()
    leftover = subprocess.Popen(
        [str(harness.python), "-m", "vllm.entrypoints.openai.api_server", "--port", str(harness.port)],
        env=harness.env(VLLM_API_KEY="a-key-nobody-has", SPECIARL_TEST_OUT=str(leftover_out)),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert wait_for(lambda: answers(f"http://127.0.0.1:{harness.port}/health"), 60)
    return leftover


def test_the_leftover_judge_of_a_run_that_is_gone_is_stopped_and_replaced(harness):
    leftover = start_leftover_judge(harness)
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        harness.logs.mkdir()
        harness.pidfile.write_text(f"{leftover.pid} {gone.pid} 20250101-000000-1\n")
        result = harness.run(*harness.args())
        assert result.returncode == 0, result.stdout + result.stderr
        assert "leftover judge server of run 20250101-000000-1" in result.stderr
        assert not alive(leftover.pid)
        # the new run's own judge answered the training with the new key
        assert harness.recorded("train.json")["with_key"] == 200
        assert not harness.pidfile.exists()
    finally:
        kill_if_alive(leftover.pid)
        leftover.wait()


def test_the_judge_of_a_run_still_going_is_left_alone(harness):
    leftover = start_leftover_judge(harness)
    owner = subprocess.Popen(["bash", "-c", "sleep 300; :", "run_speciarl_qwen25vl.sh"])
    try:
        harness.logs.mkdir()
        harness.pidfile.write_text(f"{leftover.pid} {owner.pid} 20250101-000000-2\n")
        result = harness.run(*harness.args())
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert f"judge of run 20250101-000000-2, whose script (pid {owner.pid}) is still running" in result.stderr
        assert alive(leftover.pid) and harness.pidfile.exists()
        assert harness.recorded("judge.json") is None and harness.recorded("train.json") is None
    finally:
        kill_if_alive(leftover.pid, owner.pid)
        leftover.wait()
        owner.wait()


# ---------------------------------------------------------------------------------------------
# shutdown


def test_a_second_ctrl_c_during_the_shutdown_still_stops_the_judge(harness):
    env = harness.env(SPECIARL_TEST_TRAIN="slow_stop", SPECIARL_TEST_STOP_S="8")
    stdout, stderr = harness.root / "script.out", harness.root / "script.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        script = subprocess.Popen(
            ["bash", str(MAIN), *harness.args()],
            env=env,
            cwd=harness.root,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, as a terminal's foreground job has
        )
    judge = train = None
    try:
        assert wait_for(lambda: (harness.out / "train.ready").exists(), 180), stderr.read_text()
        judge, train = harness.recorded("judge.json")["pid"], harness.recorded("train.json")["pid"]
        os.killpg(script.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's foreground process group
        assert wait_for(lambda: "stopping the" in stderr.read_text(), 60)
        os.killpg(script.pid, signal.SIGINT)  # a second, impatient Ctrl-C, during the shutdown
        assert wait_for(lambda: not alive(judge), 60), "the judge server survived the second Ctrl-C"
        assert script.wait(timeout=180) == 130
        assert not alive(train)
        assert not harness.pidfile.exists()
    finally:
        kill_if_alive(judge, train)
        if script.poll() is None:
            script.kill()
            script.wait()


# ---------------------------------------------------------------------------------------------
# Ray and logs


def test_the_training_gets_a_ray_of_its_own_and_every_run_its_own_logs(harness):
    env = harness.env(RAY_ADDRESS="10.0.0.1:6379")
    first = harness.run(*harness.args(), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    train = harness.recorded("train.json")
    assert train["ray_address"] is None
    assert "+ray_kwargs.ray_init.address=local" in train["argv"]
    assert train["with_key"] == 200  # the key reached the training through its environment

    (judge_log,) = harness.logs.glob(f"judge_vllm_{harness.port}_*.log")
    (train_log,) = harness.logs.glob("train_speciarl_grpo_*.log")
    assert "fake judge: serving" in judge_log.read_text()
    logged = train_log.read_text()
    assert "fake training: step 1 done" in logged and "fake training: a warning on stderr" in logged
    assert "fake training: step 1 done" in first.stdout
    assert not harness.pidfile.exists()

    second = harness.run(*harness.args(), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(list(harness.logs.glob(f"judge_vllm_{harness.port}_*.log"))) == 2
    assert len(list(harness.logs.glob("train_speciarl_grpo_*.log"))) == 2
    assert train_log.read_text() == logged  # the first run's log is untouched


def test_a_cluster_named_by_the_user_keeps_ray_address_and_needs_the_key_before_ray_start(harness):
    env = harness.env(RAY_ADDRESS="10.0.0.1:6379")
    result = harness.run(*harness.args("--", "+ray_kwargs.ray_init.address=auto"), env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "export SPECIARL_JUDGE_API_KEY on every node before `ray start`" in result.stderr
    assert harness.nothing_started()

    result = harness.run(
        *harness.args("--", "+ray_kwargs.ray_init.address=auto"), env=dict(env, SPECIARL_JUDGE_API_KEY="k")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    train = harness.recorded("train.json")
    assert train["ray_address"] == "10.0.0.1:6379"
    assert [w for w in train["argv"] if "ray_init.address" in w] == ["+ray_kwargs.ray_init.address=auto"]


# ---------------------------------------------------------------------------------------------
# the sibling's documented example


def test_the_dataset_variation_example_of_its_header_runs(harness):
    header = (ROOT / "recipes" / "run_dataset_variation.sh").read_text().splitlines()
    lines = [line.removeprefix("#").strip() for line in header if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("bash recipes/run_dataset_variation.sh "))
    command = lines[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + " " + lines[start]
    words = shlex.split(command.replace("/data/CUB_200_2011", str(harness.root / "CUB_200_2011")))
    assert words[:2] == ["bash", "recipes/run_dataset_variation.sh"]
    (harness.root / "CUB_200_2011").mkdir()
    train = harness.root / words[words.index("--train-file") + 1]
    train.parent.mkdir(parents=True)
    train.touch()

    result = harness.run(*words[2:], *harness.args(data=False), script=ROOT / words[1])
    assert result.returncode == 0, result.stdout + result.stderr
    (build,) = harness.recorded("builds.jsonl")  # the CUB-200 validation set, from the root it names
    assert build[build.index("--split") + 1] == "test"
    assert build[build.index("--root") + 1] == str(harness.root / "CUB_200_2011")
    assert f"data.train_files={train}" in harness.recorded("train.json")["argv"]
