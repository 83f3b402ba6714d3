"""The fault matrix: verl's own trainer on the CPU, the judge in ``llm`` mode, and one fault per case.

Each case is a real run of ``recipes/run_speciarl_tiny_cpu.sh`` (``main_ppo``, hf_cpu rollout, one FSDP2
worker) against the fake judge as its own process with an API key (:mod:`fault_harness`), a checkpoint
every step, and a fault injected while it runs:

* ``outage_raise``: from step 2 on the judge answers 503 for longer than the retries last; with
  ``failure_policy=raise`` the run must stop naming the endpoint, and the same command, the judge back,
  must resume from the last checkpoint to the same final step;
* ``outage_mask``: the judge answers 503 to every pair about circles from step 2 on; with ``mask`` the run
  must go on, those groups masked and counted;
* ``judge_killed``: the judge is SIGKILLed with a request in flight in step 2 and restarted 3 s later on its
  port; the step must complete after retries, with no judge failure;
* ``redis_restarted``: the verdict cache is a password-protected Redis (append-only file); it is SIGKILLed
  with a judge request in flight in step 2 and is back 2 s later; no verdict written before may be lost or
  paid for again;
* ``trainer_killed``: verl's driver is SIGKILLed with a judge request in flight in step 2; the same command
  must resume from the step-1 checkpoint and the judge be asked only for pairs not yet cached;
* ``bad_judge``: 10 % of replies are a label outside the set and 5 % hang; validated, retried, counted;
* ``bad_rows``: a training parquet with a row without ground truth, then one with unreadable image bytes;
  each refused before the first step, naming the file and the row;
* ``flaky_30_steps``: 30 steps with 5 % of judge requests failing at random: completes, retries counted.

Across cases: ``verdicts_lost`` (pairs the judge answered that the cache no longer holds at the end),
``pairs_rejudged`` (a pair answered with a label more than once) and ``silent_zero_rewards`` (a trained
rollout whose pair the judge never answered, in a group that got a reward: a verdict nobody gave).

    python benchmarks/faults.py [--cases a,b] [--work DIR]

prints a table and, last, ``RESULT cases=<n> survived=<n> verdicts_lost=<n> pairs_rejudged=<n>
silent_zero_rewards=<n>``. Everything listens on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_harness import (
    REDIS_PASSWORD_ENV,
    JudgeProcess,
    TrainingRun,
    answered_pairs,
    metric_sum,
    pairs_rejudged,
    wait_for,
)

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.judge.llm_judge import judge_input
from speciarl_verl.judge.redis_store import RedisVerdictStore
from speciarl_verl.judge.settings import LLMSettings
from speciarl_verl.judge.sqlite_store import SQLiteVerdictStore
from speciarl_verl.offline_fixtures.redis_process import RedisProcess

#: fast retries, so that an outage outlasts them within seconds and a 3 s restart is inside them
RETRIES = (
    "reward.reward_kwargs.judge.llm.max_retries=6",
    "reward.reward_kwargs.judge.llm.backoff_initial_s=0.2",
    "reward.reward_kwargs.judge.llm.backoff_max_s=2.0",
    "reward.reward_kwargs.judge.llm.timeout_s=5",
)
BATCH_OF_4 = ("data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4")


@dataclass
class Outcome:
    case: str
    survived: bool
    detail: str
    verdicts_lost: int = 0
    pairs_rejudged: int = 0
    silent_zero_rewards: int = 0
    wall_s: float = 0.0


# --- measuring ---


def cached_count(run: TrainingRun, redis: RedisProcess | None = None) -> int:
    async def count() -> int:
        store = (
            RedisVerdictStore(redis.url, password=redis.password)
            if redis is not None
            else SQLiteVerdictStore(run.out / "verdicts.sqlite")
        )
        try:
            return await store.count()
        finally:
            await store.aclose()

    return asyncio.run(count())


def silent_zero_rewards(run: TrainingRun, judge: JudgeProcess) -> int:
    """Rollouts whose pair the judge never answered with a label, in a group that still got a reward."""
    answered = answered_pairs(judge.answers())
    settings = LLMSettings()
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in run.rollouts():  # verl's key is "<sample>_<rollout>_<output>" (v1/trainer_base.py:1316)
        groups[(row["step"], row["uid"].rsplit("_", 2)[0])].append(row)
    silent = 0
    for rows in groups.values():
        if not any(float(row["score"]) > 0 for row in rows):
            continue  # masked or all wrong: no advantage either way
        for row in rows:
            prediction = parse_answer(row["output"])
            if prediction is not None and judge_input(settings, row["gts"], prediction) not in answered:
                silent += 1
    return silent


def settle(case: str, run: TrainingRun, judge: JudgeProcess, survived: bool, detail: str, **extra) -> Outcome:
    """The case's figures from what the run and the judge left behind."""
    answers = judge.answers()
    redis = extra.pop("redis", None)
    lost = max(0, len(answered_pairs(answers)) - cached_count(run, redis)) if answers else 0
    return Outcome(
        case,
        survived,
        detail,
        verdicts_lost=lost,
        pairs_rejudged=pairs_rejudged(answers),
        silent_zero_rewards=silent_zero_rewards(run, judge),
    )


def at_step_two_in_flight(run: TrainingRun, judge: JudgeProcess, timeout_s: float = 600) -> bool:
    """Wait until step 1 is logged and then a new judge request arrives (in flight: the judge is slow).
    False if the run ended first."""
    run.wait_for_step(1, timeout_s)
    before = judge.calls()
    try:
        wait_for(lambda: judge.calls() > before or run.process.poll() is not None, timeout_s, "a step-2 judge request")
    except TimeoutError:
        return False
    return run.process.poll() is None


# --- cases ---


def outage_raise(work: Path, key: str) -> Outcome:
    with JudgeProcess(work / "judge", key) as judge:
        run = TrainingRun(work / "run", judge, steps=3, overrides=RETRIES)
        run.start()
        run.wait_for_step(1)
        judge.set_fault("status:503")
        first = run.wait()
        stopped = [line for line in run.log_text().splitlines() if "failed on" in line and judge.url in line]
        judge.set_fault(None)
        second = TrainingRun(work / "run", judge, steps=3, overrides=RETRIES).run()
        steps, once = run.steps_logged(), run.each_step_once()
        survived = first != 0 and bool(stopped) and second == 0 and max(steps, default=0) == 3 and once
        detail = (
            f"stopped (exit {first}) naming the endpoint: {bool(stopped)}; rerun exit {second}, steps "
            f"{sorted(steps)}, none trained twice: {once}"
        )
        return settle("outage_raise", run, judge, survived, detail)


def outage_mask(work: Path, key: str) -> Outcome:
    with JudgeProcess(work / "judge", key) as judge:
        overrides = (*RETRIES, *BATCH_OF_4, "reward.reward_kwargs.judge.failure_policy=mask")
        run = TrainingRun(work / "run", judge, steps=3, overrides=overrides)
        run.start()
        run.wait_for_step(1)
        judge.set_fault("only:circle:status:503")
        code = run.wait()
        steps = run.steps_logged()
        masked = metric_sum(steps, "speciarl/masked_groups_total")
        failures = metric_sum(steps, "speciarl/judge/failures_total")
        survived = code == 0 and max(steps, default=0) == 3 and masked >= 1 and failures >= 1
        detail = f"exit {code}, steps {sorted(steps)}, masked groups {masked:.0f}, judge failures {failures:.0f}"
        return settle("outage_mask", run, judge, survived, detail)


def judge_killed(work: Path, key: str) -> Outcome:
    with JudgeProcess(work / "judge", key, latency_s=1.0) as judge:
        run = TrainingRun(work / "run", judge, steps=3, overrides=RETRIES)
        run.start()
        in_flight = at_step_two_in_flight(run, judge)
        if in_flight:
            judge.kill()
            time.sleep(3.0)
            judge.start()
        code = run.wait()
        steps = run.steps_logged()
        failures = metric_sum(steps, "speciarl/judge/failures_total")
        retries = metric_sum(steps, "speciarl/judge/retries_total")
        survived = in_flight and code == 0 and max(steps, default=0) == 3 and failures == 0
        detail = (
            f"killed with a request in flight: {in_flight}; exit {code}, judge failures {failures:.0f}, "
            f"retries {retries:.0f}"
        )
        return settle("judge_killed", run, judge, survived, detail)


def redis_restarted(work: Path, key: str) -> Outcome:
    password = secrets.token_hex(16)
    with (
        RedisProcess(work / "redis", password=password) as redis,
        JudgeProcess(work / "judge", key, latency_s=1.0) as judge,
    ):
        cache = (
            "reward.reward_kwargs.judge.cache.backend=redis",
            f"reward.reward_kwargs.judge.cache.redis_url={redis.url}",
            f"reward.reward_kwargs.judge.cache.redis_password_env={REDIS_PASSWORD_ENV}",
        )
        run = TrainingRun(
            work / "run", judge, steps=3, overrides=(*RETRIES, *cache), env={REDIS_PASSWORD_ENV: password}
        )
        run.start()
        in_flight = at_step_two_in_flight(run, judge)
        before = cached_count(run, redis) if in_flight else 0
        if in_flight:
            restart = threading.Thread(target=redis.restart, kwargs={"sig": signal.SIGKILL, "down_s": 2.0})
            restart.start()
            restart.join(60)
        after_restart = cached_count(run, redis)
        code = run.wait()
        steps = run.steps_logged()
        failures = metric_sum(steps, "speciarl/judge/failures_total")
        survived = in_flight and code == 0 and max(steps, default=0) == 3 and failures == 0 and after_restart >= before
        detail = (
            f"killed with a request in flight: {in_flight}; verdicts {before} before, {after_restart} after the "
            f"restart; exit {code}, judge failures {failures:.0f}"
        )
        return settle("redis_restarted", run, judge, survived, detail, redis=redis)


def trainer_killed(work: Path, key: str, steps: int = 3) -> Outcome:
    with JudgeProcess(work / "judge", key, latency_s=1.0) as judge:
        run = TrainingRun(work / "run", judge, steps=steps, overrides=RETRIES)
        run.start()
        in_flight = at_step_two_in_flight(run, judge)
        trainer = run.trainer() if in_flight else None
        if trainer is not None:
            trainer.send_signal(signal.SIGKILL)
        first = run.wait()
        answered_before = len(answered_pairs(judge.answers()))
        second = TrainingRun(work / "run", judge, steps=steps, overrides=RETRIES).run()
        logged, once = run.steps_logged(), run.each_step_once()
        survived = trainer is not None and first != 0 and second == 0 and max(logged, default=0) == steps and once
        detail = (
            f"SIGKILLed the driver in step 2: {trainer is not None} (exit {first}); {answered_before} pairs judged "
            f"before; rerun exit {second}, steps {sorted(logged)}, none trained twice: {once}"
        )
        return settle("trainer_killed", run, judge, survived, detail)


def bad_judge(work: Path, key: str) -> Outcome:
    with JudgeProcess(work / "judge", key, fault="chance:0.1:bad_label,chance:0.05:hang", seed=7) as judge:
        overrides = (*RETRIES, "reward.reward_kwargs.judge.llm.timeout_s=2")
        run = TrainingRun(work / "run", judge, steps=3, overrides=overrides)
        code = run.run()
        steps = run.steps_logged()
        outcomes = [a["outcome"] for a in judge.answers()]
        retries = metric_sum(steps, "speciarl/judge/retries_total")
        failures = metric_sum(steps, "speciarl/judge/failures_total")
        bad, hung = outcomes.count("bad_label"), outcomes.count("hang")
        survived = code == 0 and max(steps, default=0) == 3 and failures == 0 and bad + hung > 0 and retries > 0
        detail = (
            f"exit {code}; {bad} labels outside the set and {hung} hangs served (validation included), "
            f"retries in the training steps {retries:.0f}, failures {failures:.0f}"
        )
        return settle("bad_judge", run, judge, survived, detail)


def _broken_copy(run: TrainingRun, row: int, field: str) -> Path:
    """Build the recipe's training parquet (the recipe's own data step) and break ``field`` of ``row``."""
    data = run.out / "data"
    path = data / "synthetic_shapes_train_16.parquet"  # where the recipe looks for it, and then builds nothing
    build = [sys.executable, "-m", "speciarl_verl.cli", "data", "build", "--dataset", "synthetic_shapes"]
    build += ["--root", str(data), "--split", "train", "--subset", "16", "--seed", "0", "--no-progress"]
    subprocess.run([*build, "--out", str(path)], check=True, capture_output=True)
    table = pq.read_table(path)
    rows = table.to_pylist()
    if field == "ground_truth":
        rows[row]["reward_model"]["ground_truth"] = ""
    else:
        rows[row]["images"][0]["bytes"] = b"\x89PNG\r\n\x1a\n not an image"
    pq.write_table(table.from_pylist(rows, schema=table.schema), path)
    return path


#: (what is broken, in which row) of the ``bad_rows`` case, one training launch each
BAD_ROWS = (("ground_truth", 5), ("image", 9))


def bad_rows(work: Path, key: str, broken: tuple[tuple[str, int], ...] = BAD_ROWS) -> Outcome:
    results = []
    with JudgeProcess(work / "judge", key) as judge:
        for field, row in broken:
            run = TrainingRun(work / field, judge, steps=2, overrides=RETRIES)
            path = _broken_copy(run, row, field)
            code = run.run()
            log = run.log_text()
            named = str(path) in log and f"row {row}" in log
            results.append((field, code, named, bool(run.steps_logged())))
        requests = judge.calls()
        survived = all(code != 0 and named and not stepped for _, code, named, stepped in results) and requests == 0
        detail = "; ".join(f"{f}: exit {c}, file and row named {n}, steps {s}" for f, c, n, s in results)
        detail += f"; judge requests {requests}"
        return settle("bad_rows", run, judge, survived, detail)


def flaky_30_steps(work: Path, key: str) -> Outcome:
    with JudgeProcess(work / "judge", key, fault="chance:0.05:503", seed=3) as judge:
        overrides = (*RETRIES, *BATCH_OF_4, "trainer.save_freq=10")  # 4 images a step: more pairs to judge
        run = TrainingRun(work / "run", judge, steps=30, overrides=overrides, timeout_s=1800)
        code = run.run()
        steps = run.steps_logged()
        served = [a["outcome"] for a in judge.answers()].count("503")
        retries = metric_sum(steps, "speciarl/judge/retries_total")
        failures = metric_sum(steps, "speciarl/judge/failures_total")
        survived = code == 0 and max(steps, default=0) == 30 and failures == 0 and served > 0 and retries > 0
        detail = (
            f"exit {code}, {len(steps)} steps; {served} requests answered 503, retries counted {retries:.0f}, "
            f"failures {failures:.0f}"
        )
        return settle("flaky_30_steps", run, judge, survived, detail)


CASES: dict[str, Callable[[Path, str], Outcome]] = {
    "outage_raise": outage_raise,
    "outage_mask": outage_mask,
    "judge_killed": judge_killed,
    "redis_restarted": redis_restarted,
    "trainer_killed": trainer_killed,
    "bad_judge": bad_judge,
    "bad_rows": bad_rows,
    "flaky_30_steps": flaky_30_steps,
}


def run_case(name: str, work: Path) -> Outcome:
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    try:
        outcome = CASES[name](folder, secrets.token_hex(16))
    except Exception as error:  # a case that breaks is a case that did not survive, reported as such
        outcome = Outcome(name, False, f"{type(error).__name__}: {error}")
    outcome.wall_s = time.monotonic() - started
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| case | survived | verdicts lost | pairs re-judged | silent zero rewards | wall s | what happened |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| `{o.case}` | {'yes' if o.survived else 'NO'} | {o.verdicts_lost} | {o.pairs_rejudged} | "
            f"{o.silent_zero_rewards} | {o.wall_s:.0f} | {o.detail} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--work", type=Path, default=Path("outputs/faults"), help="run folders (replaced per case)")
    args = parser.parse_args()
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    args.work.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for name in names:
        print(f"== {name}", flush=True)
        outcome = run_case(name, args.work.resolve())
        print(f"   survived={outcome.survived} ({outcome.wall_s:.0f} s): {outcome.detail}", flush=True)
        outcomes.append(outcome)
    print(table(outcomes))
    total = {
        "cases": len(outcomes),
        "survived": sum(o.survived for o in outcomes),
        "verdicts_lost": sum(o.verdicts_lost for o in outcomes),
        "pairs_rejudged": sum(o.pairs_rejudged for o in outcomes),
        "silent_zero_rewards": sum(o.silent_zero_rewards for o in outcomes),
    }
    print("RESULT " + " ".join(f"{name}={value}" for name, value in total.items()))


if __name__ == "__main__":
    main()
