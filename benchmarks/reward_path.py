"""One GRPO step's reward through SpeciaRL's reward manager against a local judge endpoint.

    python benchmarks/reward_path.py            # 256 prompts x 10 rollouts
    python benchmarks/reward_path.py --quick    # 48 prompts x 10 rollouts, under 30 s

The judge is a local OpenAI-compatible server with a fixed latency L per request and at
most C requests served at once, so no client can beat ``unique pairs x L / C`` on a cold
cache. Measured side by side in one run:

* cold step: our reward manager (``judge.kind=llm``, SQLite cache, empty) over every
  rollout of the step, as verl's reward loop calls it (all rollouts concurrently);
* warm step: the same step again, every verdict cached;
* sequential baseline: verl's own ``naive`` reward manager with a plain custom reward
  function that makes one blocking judge request per rollout (what a verl user writes).

Rollouts: 2-4 distinct answers per group drawn from a shared class vocabulary (the CUB
class names), as a policy mid-training produces them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import tempfile
import time
from pathlib import Path

# A 30B judge answering a ~700-token prompt with one label takes longer than this under load;
# 50 ms keeps the benchmark short and the client's own overhead visible.
L_SECONDS = 0.05
C_CONCURRENCY = 32


class JudgeProcess:
    """The local judge server in a process of its own, as a real judge would be."""

    def __init__(self, latency_s: float, concurrency: int):
        self.args = ["--latency", str(latency_s), "--max-concurrency", str(concurrency)]

    def __enter__(self):
        import subprocess
        import sys

        module = "speciarl_verl.testing.fake_judge_server"
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
    from speciarl_verl.testing.verl_rollouts import Rollout, trajectory_dataproto

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
            ids = tokenizer.encode(text) + [eos]
            protos.append(trajectory_dataproto(Rollout(f"u{index}", session, row, prompt, ids)))
    return protos


def unique_pairs(step) -> int:
    from speciarl_verl import normalize_label

    return len({(normalize_label(t), normalize_label(a)) for t, answers in step for a in answers})


def timed_step(manager, protos) -> float:
    async def all_rollouts():
        return await asyncio.gather(*(manager.run_single(p) for p in protos))

    started = time.perf_counter()
    results = manager.loop.run_until_complete(all_rollouts())
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r["reward_extra_info"].get("status") == "judge_error"]
    if failed:
        raise RuntimeError(
            f"{len(failed)} rollouts failed to be judged: {failed[0]['reward_extra_info']['judge_error']}"
        )
    return elapsed


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
    from speciarl_verl.testing.tiny_tokenizer import build_tiny_tokenizer

    work = Path(tempfile.mkdtemp(prefix="speciarl-bench-"))
    tokenizer = build_tiny_tokenizer(work / "tokenizer")
    step = make_step(prompts, args.n, args.seed)
    protos = dataprotos(tokenizer, step)
    # The whole step's inputs sit in this one process (a reward worker never holds them all);
    # freezing them keeps the garbage collector from re-walking them in every measured run.
    gc.collect()
    gc.freeze()
    pairs = unique_pairs(step)
    limit = pairs * latency / concurrency

    with JudgeProcess(latency, concurrency) as server:
        config = compose_config(
            overrides=[
                f"actor_rollout_ref.model.path={work / 'tokenizer'}",
                "reward.reward_kwargs.judge.kind=llm",
                f"reward.reward_kwargs.judge.llm.endpoints=[{server.url}]",
                "reward.reward_kwargs.judge.llm.model=fake-judge",
                f"reward.reward_kwargs.judge.llm.max_in_flight={2 * concurrency}",
                f"reward.reward_kwargs.judge.cache.path={work / 'verdicts.sqlite'}",
            ]
        )
        manager = load_reward_manager(config, tokenizer)
        # transformers imports its framework probes on the first decode of a process (~0.4 s here);
        # pay that once before timing, as a long-lived reward worker has.
        tokenizer.decode([0, 1, 2], skip_special_tokens=True)
        cold = timed_step(manager, protos)
        judge_calls = server.calls
        warm = timed_step(manager, protos)

        calls_before = server.calls
        naive = NaiveRewardManager(config, tokenizer, compute_score=plain_reward_function(server.url))
        sequential = timed_step(naive, protos)
        sequential_calls = server.calls - calls_before

    rollouts = len(protos)
    report = {
        "rollouts": rollouts,
        "unique_pairs": pairs,
        "latency_s": latency,
        "server_concurrency": concurrency,
        "limit_s": round(limit, 4),
        "cold_s": round(cold, 4),
        "warm_s": round(warm, 4),
        "sequential_s": round(sequential, 4),
        "judge_calls": judge_calls,
        "sequential_judge_calls": sequential_calls,
    }
    print(json.dumps(report, indent=1))
    print(
        f"RESULT cold_vs_limit={cold / limit:.2f} speedup_vs_sequential={sequential / cold:.1f} "
        f"warm_s={warm:.3f} judge_calls={judge_calls} unique_pairs={pairs}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
