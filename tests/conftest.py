"""Shared fixtures. Everything runs offline on CPU: tokenizers and clusters are built here."""

from __future__ import annotations

import os

# Before anything imports transformers / huggingface_hub: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A tiny byte-level tokenizer with Qwen2.5-VL's special tokens, saved like a hub checkpoint."""
    from speciarl_verl.testing.recorded_rollouts import load_recorded_groups
    from speciarl_verl.testing.tiny_tokenizer import build_tiny_tokenizer

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
    from speciarl_verl.testing.local_cluster import start_local_cluster, stop_local_cluster

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


@pytest.fixture
def compose():
    """Compose the shipped speciarl_grpo config with overrides."""
    from speciarl_verl.config.compose import compose_config

    return compose_config
