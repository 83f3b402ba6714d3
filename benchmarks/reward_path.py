"""One GRPO step's reward through SpeciaRL's reward manager against a local judge endpoint.

    python benchmarks/reward_path.py            # 256 prompts x 10 rollouts
    python benchmarks/reward_path.py --quick    # 48 prompts x 10 rollouts, under a minute

The judge is a local OpenAI-compatible server in a process of its own, with a fixed latency
L per request and at most C requests served at once, so no client can beat
``unique pairs x L / C`` on a cold cache. Measured in one run:

* cold step: our reward manager at the settings a user gets (``judge.kind=llm``, the client's
  default ``max_in_flight``, SQLite cache, empty) over every rollout of the step, as verl's reward
  loop calls it (all rollouts concurrently);
* the same cold step against a judge without a concurrency cap, with ``judge.kind=llm`` and with
  ``judge.kind=auto`` (rule tier first), and once more with ``judge.kind=llm`` at
  ``max_in_flight=64`` (the client's default before it followed vLLM's ``max_num_seqs``,
  ``cold_uncapped_in_flight_64_s``), each with its own empty cache;
* warm step: the same step again with every verdict cached, plus the group stage's per-group
  math (records -> rewards and rewritten records, :func:`score_group`); repeated,
  reported as the median wall time (with the minimum and maximum) and the median process CPU time
  per rollout, with the range (on a shared 2-core machine one run's repeats spread by up to 1.5x, and
  two runs a minute apart differed by 2x: compare figures of one run only), and the garbage
  collections that ran inside the timed warm steps, per generation (``gc.callbacks``), with their
  time. The manager freezes the heap it starts with and runs full (generation-2) passes only when
  idle between steps (``reward.reward_kwargs.steady_gc``, on by default): between two repeats the
  event loop runs on, idle, for :data:`~speciarl_verl.verl_ext.steady_gc.IDLE_S` + 0.1 s (untimed),
  as a reward worker's does while the trainer updates the actor;
* fresh worker: a new reward manager (empty memo) on the filled SQLite cache, first step;
* naive manager (thread pool of N): verl's own ``naive`` reward manager with a plain custom
  reward function making one blocking judge request per rollout (what a verl user writes).
  verl runs that function on the event loop's default thread pool, so it is an N-way parallel
  loop, N = min(32, CPUs + 4); it is not a sequential one.

Rollouts: 2-4 distinct answers per group drawn from a shared class vocabulary (the CUB class
names), as a policy mid-training produces them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

# A 30B judge answering a ~700-token prompt with one label takes longer than this under load;
# 50 ms keeps the benchmark short and the client's own overhead visible.
L_SECONDS = 0.05
# The recipe's judge is a vLLM server, which batches up to max_num_seqs (256 by default) sequences at once;
# a batch of one-label answers takes about as long as one answer, so the stand-in serves 256 at once.
C_CONCURRENCY = 256
UNCAPPED = 100_000  # a judge that serves every request at once


class JudgeProcess:
    """The local judge server in a process of its own, as a real judge would be."""

    def __init__(self, latency_s: float, concurrency: int):
        self.args = ["--latency", str(latency_s), "--max-concurrency", str(concurrency)]

    def __enter__(self):
        import subprocess
        import sys

        module = "speciarl_verl.offline_fixtures.fake_judge_server"
        self.process = subprocess.Popen([sys.executable, "-m", module, *self.args], stdout=subprocess.PIPE, text=True)
        port = int(self.process.stdout.readline().split()[1])
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    @property
    def calls(self) -> int:
        import urllib.request

        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats") as response:
            return json.loads(response.read())["calls"]

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(10)


def make_step(prompts: int, n: int, seed: int) -> list[tuple[str, list[str]]]:
    """(ground truth, n answers) per prompt; answers repeat within a group and across groups."""
    from importlib import resources

    names = resources.files("speciarl_verl.data").joinpath("classnames").joinpath("cub200.txt").read_text()
    classes = [line.split(".", 1)[1].replace("_", " ") for line in names.splitlines()]
    rng = random.Random(seed)
    step = []
    for _ in range(prompts):
        truth = rng.choice(classes)
        pool = [truth, rng.choice(classes), rng.choice(classes), truth.split()[-1], "bird", "None"]
        distinct = rng.sample(pool, rng.randint(2, 4))
        step.append((truth, [rng.choice(distinct) for _ in range(n)]))
    return step


def dataprotos(tokenizer, step):
    from speciarl_verl.offline_fixtures.verl_rollouts import Rollout, trajectory_dataproto

    prompt = tokenizer.encode("<|im_start|>user\nClassify the image.<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    protos = []
    for index, (truth, answers) in enumerate(step):
        row = {
            "data_source": "cub200",
            "reward_model": {"style": "model", "ground_truth": truth},
            "extra_info": {"index": index},
            "index": index,
        }
        for session, answer in enumerate(answers):
            text = f"<think>Looking at the bill and the wings.</think><answer>{answer}</answer>"
            ids = [*tokenizer.encode(text), eos]
            protos.append(trajectory_dataproto(Rollout(f"u{index}", session, row, prompt, ids)))
    return protos


def unique_pairs(step) -> int:
    from speciarl_verl import normalize_label

    return len({(normalize_label(t), normalize_label(a)) for t, answers in step for a in answers})


def run_step(manager, protos) -> list[dict]:
    """Every rollout of the step through ``run_single`` at once, as verl's reward loop sends them."""

    async def all_rollouts():
        return await asyncio.gather(*(manager.run_single(p) for p in protos))

    results = manager.loop.run_until_complete(all_rollouts())
    failed = [r for r in results if r["reward_extra_info"].get("status") == "judge_error"]
    if failed:
        raise RuntimeError(
            f"{len(failed)} rollouts failed to be judged: {failed[0]['reward_extra_info']['judge_error']}"
        )
    return results


def timed_step(manager, protos) -> tuple[float, float]:
    """(wall s, process CPU s) of one step's ``run_single`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    run_step(manager, protos)
    return time.perf_counter() - wall, time.process_time() - cpu


def group_math(settings, results: list[dict], n: int) -> None:
    """The group stage's per-group work on the step's records (TransferQueue I/O left out)."""
    from speciarl_verl.core.group_scoring import score_group

    for start in range(0, len(results), n):
        records = [r["reward_extra_info"] for r in results[start : start + n]]
        score_group(records, settings, validation=False, uid=f"u{start // n}")


def timed_warm_step(manager, protos, n: int) -> tuple[float, float, float]:
    """(wall s, process CPU s, of which group math CPU s) of a step whose verdicts are all cached."""
    wall, cpu = time.perf_counter(), time.process_time()
    results = run_step(manager, protos)
    group_cpu = time.process_time()
    group_math(manager.settings, results, n)
    end_cpu, end_wall = time.process_time(), time.perf_counter()
    sources = {r["reward_extra_info"]["verdict_source"] for r in results} - {None}
    if sources != {"cache"}:
        raise RuntimeError(f"a warm step should find every verdict cached, got sources {sorted(sources)}")
    return end_wall - wall, end_cpu - cpu, end_cpu - group_cpu


class CollectionCounter:
    """Garbage collections per generation, and their seconds, in each stretch :meth:`counting` marks
    (``gc.callbacks``): ``steps[i]`` is ``(passes, seconds)`` of the i-th stretch, each a list by generation."""

    def __init__(self):
        self.generations = len(gc.get_threshold())
        self.steps: list[tuple[list[int], list[float]]] = []
        self._active = False
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if not self._active:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            passes, seconds = self.steps[-1]
            passes[info["generation"]] += 1
            seconds[info["generation"]] += time.perf_counter() - self._started

    @property
    def passes(self) -> list[int]:
        """Passes per generation over every stretch."""
        return [sum(passes[g] for passes, _ in self.steps) for g in range(self.generations)]

    @property
    def seconds(self) -> list[float]:
        """Seconds per generation over every stretch."""
        return [sum(seconds[g] for _, seconds in self.steps) for g in range(self.generations)]

    @contextlib.contextmanager
    def counting(self):
        self.steps.append(([0] * self.generations, [0.0] * self.generations))
        self._active = True
        try:
            yield
        finally:
            self._active = False


def naive_pool_size() -> int:
    """Threads of the event loop's default executor, which verl's naive manager runs its reward function on."""
    cpus = os.process_cpu_count() if hasattr(os, "process_cpu_count") else os.cpu_count()
    return min(32, (cpus or 1) + 4)


def plain_reward_function(url: str):
    """A verl custom reward function as users write it: one blocking judge request per rollout."""
    import urllib.request

    from speciarl_verl.core.answer_parsing import parse_answer
    from speciarl_verl.judge.prompt import DEFAULT_JUDGE_PROMPT

    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        answer = parse_answer(solution_str)
        if answer is None:
            return -1.0
        body = {
            "model": "fake-judge",
            "messages": DEFAULT_JUDGE_PROMPT.messages(ground_truth, answer),
            "temperature": 0.0,
            "max_tokens": 16,
            "structured_outputs": {"choice": list(DEFAULT_JUDGE_PROMPT.labels)},
        }
        request = urllib.request.Request(
            f"{url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            reply = json.loads(response.read())["choices"][0]["message"]["content"]
        return 1.0 if reply in ("specific", "more specific") else 0.0

    return compute_score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 prompts instead of 256")
    parser.add_argument("--prompts", type=int)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=L_SECONDS, help="judge seconds per request (L)")
    parser.add_argument("--concurrency", type=int, default=C_CONCURRENCY, help="requests the judge serves at once (C)")
    parser.add_argument("--repeats", type=int, default=15, help="warm steps measured (median, min and max reported)")
    parser.add_argument("--fresh-workers", type=int, default=7, help="fresh workers measured (median reported)")
    args = parser.parse_args()
    latency, concurrency = args.latency, args.concurrency
    prompts = args.prompts or (48 if args.quick else 256)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import load_reward_manager

    from speciarl_verl.config.compose import compose_config
    from speciarl_verl.offline_fixtures.tiny_tokenizer import build_tiny_tokenizer
    from speciarl_verl.verl_ext.steady_gc import IDLE_S

    work = Path(tempfile.mkdtemp(prefix="speciarl-bench-"))
    tokenizer = build_tiny_tokenizer(work / "tokenizer")
    step = make_step(prompts, args.n, args.seed)
    protos = dataprotos(tokenizer, step)
    pairs = unique_pairs(step)
    limit = pairs * latency / concurrency
    rollouts = len(protos)

    def manager_for(server: JudgeProcess, kind: str, cache: str, max_in_flight: int | None = None):
        overrides = [
            f"actor_rollout_ref.model.path={work / 'tokenizer'}",
            f"reward.reward_kwargs.judge.kind={kind}",
            f"reward.reward_kwargs.judge.llm.endpoints=[{server.url}]",
            "reward.reward_kwargs.judge.llm.model=fake-judge",
            f"reward.reward_kwargs.judge.cache.path={work / cache}",
        ]
        if max_in_flight is not None:
            overrides.append(f"reward.reward_kwargs.judge.llm.max_in_flight={max_in_flight}")
        config = compose_config(overrides=overrides)
        return config, load_reward_manager(config, tokenizer)

    def scored(manager, measure):
        try:
            return measure(manager)
        finally:
            manager.loop.run_until_complete(manager.verifier.aclose())

    with JudgeProcess(latency, concurrency) as server, JudgeProcess(latency, UNCAPPED) as uncapped:
        # transformers imports its framework probes on the first decode of a process (~0.4 s here);
        # pay that once before timing, as a long-lived reward worker has.
        tokenizer.decode([0, 1, 2], skip_special_tokens=True)
        # The settings a user gets: no max_in_flight override. Building the manager freezes the heap
        # (reward.reward_kwargs.steady_gc), this benchmark's inputs among it: the whole step sits
        # in this one process (a reward worker never holds them all), and a long-lived worker's
        # start-up objects are old. This benchmark no longer calls gc.freeze() itself: what it
        # measures is what the manager does.
        config, manager = manager_for(server, "llm", "verdicts.sqlite")
        cold, cold_cpu = timed_step(manager, protos)
        judge_calls = server.calls

        collections = CollectionCounter()
        gc.callbacks.append(collections)
        try:
            warm_runs = []
            for _ in range(args.repeats):
                with collections.counting():
                    warm_runs.append(timed_warm_step(manager, protos, args.n))
                # between two steps a reward worker's event loop runs on, idle, while the trainer updates the
                # actor: that is when the manager runs its full collection (steady_gc); not timed
                manager.loop.run_until_complete(asyncio.sleep(IDLE_S + 0.1))
        finally:
            gc.callbacks.remove(collections)
        scored(manager, lambda _: None)
        warm = statistics.median(w for w, _, _ in warm_runs)
        warm_min, warm_max = min(w for w, _, _ in warm_runs), max(w for w, _, _ in warm_runs)
        warm_cpu = statistics.median(c for _, c, _ in warm_runs)
        group_cpu = statistics.median(g for _, _, g in warm_runs)

        calls_before = server.calls
        fresh_runs = [
            scored(manager_for(server, "llm", "verdicts.sqlite")[1], lambda m: timed_step(m, protos))
            for _ in range(args.fresh_workers)
        ]
        fresh = statistics.median(w for w, _ in fresh_runs)
        fresh_cpu = statistics.median(c for _, c in fresh_runs)
        fresh_calls = server.calls - calls_before

        # The judge without a concurrency cap, our client at its default max_in_flight.
        cold_uncapped, _ = scored(manager_for(uncapped, "llm", "uncapped.sqlite")[1], lambda m: timed_step(m, protos))
        uncapped_calls = uncapped.calls
        auto, _ = scored(manager_for(uncapped, "auto", "uncapped-auto.sqlite")[1], lambda m: timed_step(m, protos))
        auto_calls = uncapped.calls - uncapped_calls
        # the same judge, our client at the default it had before (64 in flight), for comparison in one run
        old_default = manager_for(uncapped, "llm", "uncapped-64.sqlite", max_in_flight=64)[1]
        cold_uncapped_64, _ = scored(old_default, lambda m: timed_step(m, protos))

        calls_before = server.calls
        naive = NaiveRewardManager(config, tokenizer, compute_score=plain_reward_function(server.url))
        naive_s, _ = timed_step(naive, protos)
        naive_calls = server.calls - calls_before

    per_rollout_us = 1e6 / rollouts
    report = {
        "rollouts": rollouts,
        "unique_pairs": pairs,
        "latency_s": latency,
        "server_concurrency": concurrency,
        "limit_s": round(limit, 4),
        "cold_s": round(cold, 4),
        "cold_cpu_us_per_rollout": round(cold_cpu * per_rollout_us, 1),
        "judge_calls": judge_calls,
        "client_max_in_flight": manager.settings.judge.llm.max_in_flight,
        "cold_uncapped_s": round(cold_uncapped, 4),
        "uncapped_judge_calls": uncapped_calls,
        "cold_uncapped_in_flight_64_s": round(cold_uncapped_64, 4),
        "cold_auto_uncapped_s": round(auto, 4),
        "auto_judge_calls": auto_calls,
        "warm_repeats": args.repeats,
        "warm_s": round(warm, 4),
        "warm_min_s": round(warm_min, 4),
        "warm_max_s": round(warm_max, 4),
        "steady_gc": manager.settings.steady_gc,
        # per generation (0, 1, 2 = full pass), all timed warm steps together
        "gc_collections_in_warm_steps": collections.passes,
        "gc_s_in_warm_steps": [round(t, 4) for t in collections.seconds],
        # per step: wall seconds, collections per generation and the seconds they took together, so a slow
        # step shows whether the collector made it slow
        "warm_steps_wall_s_gc_passes_gc_s": [
            [round(wall, 4), *passes, round(sum(seconds), 4)]
            for (wall, _, _), (passes, seconds) in zip(warm_runs, collections.steps, strict=True)
        ],
        "warm_cpu_s": round(warm_cpu, 4),
        "warm_us_per_rollout": round(warm_cpu * per_rollout_us, 1),
        "warm_us_per_rollout_min": round(min(c for _, c, _ in warm_runs) * per_rollout_us, 1),
        "warm_us_per_rollout_max": round(max(c for _, c, _ in warm_runs) * per_rollout_us, 1),
        "warm_group_math_us_per_rollout": round(group_cpu * per_rollout_us, 1),
        "fresh_worker_sqlite_s": round(fresh, 4),
        "fresh_worker_sqlite_s_min_max": [
            round(min(w for w, _ in fresh_runs), 4),
            round(max(w for w, _ in fresh_runs), 4),
        ],
        "fresh_worker_us_per_rollout": round(fresh_cpu * per_rollout_us, 1),
        "fresh_worker_judge_calls": fresh_calls,
        "naive_pool_threads": naive_pool_size(),
        "naive_s": round(naive_s, 4),
        "naive_judge_calls": naive_calls,
        # CPU time is per process, but a shared machine's other load still slows it (caches, SMT siblings)
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=1))
    print(
        f"RESULT cold_vs_limit={cold / limit:.2f} speedup_vs_naive={naive_s / cold:.1f} warm_s={warm:.3f} "
        f"warm_max_s={warm_max:.3f} gc_passes_in_warm_steps={collections.passes[-1]} "
        f"warm_us_per_rollout={warm_cpu * per_rollout_us:.1f} judge_calls={judge_calls} unique_pairs={pairs}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
