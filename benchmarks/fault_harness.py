"""The pieces benchmarks/faults.py builds its cases from: a judge process, a training run, what they recorded.

* :class:`JudgeProcess`: the fake OpenAI-compatible judge
  (:mod:`speciarl_verl.offline_fixtures.fake_judge_server`) as its own process on a fixed loopback port,
  with an API key and an answers log that outlives it; it can be killed, restarted on its port and
  have its fault switched while it runs.
* :class:`TrainingRun`: ``recipes/run_speciarl_tiny_cpu.sh`` (verl's ``main_ppo`` on the CPU) pointed at
  that judge, in a session of its own so that a case can SIGKILL the trainer and reap every process
  it left; bounded in time.
* what a case is judged on: the steps verl logged (``metrics.jsonl``, earlier launches included), the
  rollouts verl dumped (``trainer.rollout_data_dir``), the judge's answers (``answers.jsonl``), and
  from them ``pairs_rejudged`` (a pair the judge answered with a label more than once); faults.py
  adds the counts that need the judge's reading of an answer (silent zero rewards, verdicts lost).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from speciarl_verl.offline_fixtures.redis_process import free_port

REPOSITORY = Path(__file__).resolve().parents[1]
RECIPE = REPOSITORY / "recipes" / "run_speciarl_tiny_cpu.sh"
KEY_ENV = "SPECIARL_JUDGE_API_KEY"
REDIS_PASSWORD_ENV = "SPECIARL_REDIS_PASSWORD"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    """Poll ``condition`` until it holds; ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(poll_s)


@dataclass
class JudgeProcess:
    """The fake judge on ``127.0.0.1:port``; every chat request is appended to ``answers_log``."""

    folder: Path
    key: str
    latency_s: float = 0.0
    fault: str | None = None
    seed: int = 0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def answers_log(self) -> Path:
        return self.folder / "answers.jsonl"

    def start(self, timeout_s: float = 60.0) -> JudgeProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-u", "-m", "speciarl_verl.offline_fixtures.fake_judge_server"]
        command += ["--port", str(self.port), "--api-key-env", KEY_ENV, "--answers-log", str(self.answers_log)]
        command += ["--latency", str(self.latency_s), "--seed", str(self.seed)]
        command += ["--fault", self.fault] if self.fault else []
        deadline = time.monotonic() + timeout_s
        while True:  # after a kill the kernel may hold the port a moment
            log = open(self.folder / "judge.log", "a")  # noqa: SIM115 - the child keeps it
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, KEY_ENV: self.key}
            )
            log.close()
            try:
                wait_for(self._answers, min(20.0, timeout_s), f"the judge on port {self.port}", poll_s=0.1)
                return self
            except TimeoutError:
                self.kill()
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise TimeoutError(f"the judge exited ({self.process.returncode})")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(20)
        self.process = None

    def calls(self) -> int:
        """Chat requests the running judge has seen (its ``GET /stats``); -1 if it does not answer."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()["calls"]
        except httpx.HTTPError:
            return -1

    def set_fault(self, fault: str | None) -> None:
        self.fault = fault
        httpx.post(f"http://127.0.0.1:{self.port}/fault", json={"fault": fault}, timeout=5).raise_for_status()

    def answers(self) -> list[dict]:
        if not self.answers_log.exists():
            return []
        return [json.loads(line) for line in self.answers_log.read_text().splitlines() if line.strip()]

    def __enter__(self) -> JudgeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def pairs_rejudged(answers: Iterable[dict]) -> int:
    """Label answers beyond the first for the same (ground truth, prediction): verdicts paid for twice."""
    answered = Counter(
        (a["ground_truth"], a["prediction"]) for a in answers if str(a.get("outcome", "")).startswith("label:")
    )
    return sum(count - 1 for count in answered.values())


def answered_pairs(answers: Iterable[dict]) -> set[tuple[str, str]]:
    return {(a["ground_truth"], a["prediction"]) for a in answers if str(a.get("outcome", "")).startswith("label:")}


@dataclass
class TrainingRun:
    """One launch of the tiny CPU recipe with the judge in ``llm`` mode at ``judge`` (``--judge-endpoint``; the
    verdict cache is ``OUT/verdicts.sqlite`` unless an override names another)."""

    out: Path
    judge: JudgeProcess
    steps: int = 3
    overrides: tuple[str, ...] = ()
    recipe_options: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 900.0
    process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            "bash", str(RECIPE), "--out", str(self.out), "--steps", str(self.steps),
            "--judge", "llm", "--judge-endpoint", self.judge.url, "--judge-api-key-env", KEY_ENV,
            *self.recipe_options, "--",
            "trainer.save_freq=1",
            f"trainer.rollout_data_dir={self.out / 'rollouts'}",
            *self.overrides,
        ]  # fmt: skip

    def start(self) -> TrainingRun:
        self.out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, KEY_ENV: self.judge.key, **self.env}
        env.pop("RAY_ADDRESS", None)
        log = open(self.out / "launches.log", "a")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self._started = time.monotonic()
        return self

    def wait(self) -> int:
        """The recipe's exit code; the whole session is reaped either way (Ray included)."""
        assert self.process is not None
        try:
            return self.process.wait(max(1.0, self.timeout_s - (time.monotonic() - self._started)))
        except subprocess.TimeoutExpired:
            return -1
        finally:
            self.reap()

    def run(self) -> int:
        return self.start().wait()

    def _session(self) -> list[psutil.Process]:
        assert self.process is not None
        found = []
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getsid(process.pid) == self.process.pid:
                    found.append(process)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def trainer(self) -> psutil.Process | None:
        """verl's ``main_ppo`` driver process of this launch."""
        for process in self._session():
            try:
                if "verl.trainer.main_ppo" in " ".join(process.cmdline()):
                    return process
            except psutil.Error:
                continue
        return None

    def reap(self) -> None:
        """SIGKILL whatever of this launch's session is left (Ray's raylet and workers after a kill)."""
        if self.process is None:
            return
        for _ in range(3):
            left = self._session()
            if not left:
                return
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(left, timeout=10)

    def wait_for_step(self, step: int, timeout_s: float = 600) -> None:
        """Until verl has logged ``step`` or the launch has ended."""
        wait_for(lambda: step in self.steps_logged() or self.process.poll() is not None, timeout_s, f"step {step}")

    # --- what the launch left behind ---

    def steps_logged(self) -> dict[int, dict]:
        """Every training step verl logged, from this folder's launches so far (last one wins)."""
        steps: dict[int, dict] = {}
        for name in ("metrics.previous.jsonl", "metrics.jsonl"):
            path = self.out / name
            if path.exists():
                for line in path.read_text().splitlines():
                    if line.strip():
                        record = json.loads(line)
                        steps.setdefault(record["step"], {}).update(record["data"])
        return steps

    def each_step_once(self) -> bool:
        """No step was trained by two launches (a resume starts after the last checkpoint, not before)."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return False
        steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
        return len(steps) == len(set(steps))

    def log_text(self) -> str:
        path = self.out / "launches.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def rollouts(self) -> list[dict]:
        """The training rollouts verl dumped, every step (``{step}.jsonl`` with our reward's extra info)."""
        folder = self.out / "rollouts"
        rows = []
        for path in sorted(folder.glob("*.jsonl")) if folder.exists() else []:
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return rows


def metric_sum(steps: dict[int, dict], key: str) -> float:
    return sum(float(data.get(key, 0.0)) for data in steps.values())
