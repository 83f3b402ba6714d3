"""A local Ray cluster and TransferQueue sized for a 2-core machine, plus verl's own buffer construction."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

__all__ = ["build_replay_buffer", "start_local_cluster", "stop_local_cluster"]


def start_local_cluster(num_cpus: int = 2) -> None:
    """Start Ray with the machine's 2 cores and TransferQueue with one storage unit.

    TransferQueue's default of 8 storage units would ask for more CPUs than a 2-core
    Ray cluster has and hang without an error; one unit is plenty for tests and the demo.
    """
    import logging

    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    # TransferQueue's client warns on every call that its 8 threads exceed 2 cores.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("transfer_queue")]:
        logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}},
        )
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))


def stop_local_cluster() -> None:
    import ray
    import transfer_queue as tq

    try:
        tq.close()
    finally:
        ray.shutdown()


def _refill_not_expected(count: int) -> int:
    raise AssertionError(f"the replay buffer asked for {count} new prompts, but no refill was expected")


def build_replay_buffer(config: Any, refill_fn=None, trainer_mode: str = "sync"):
    """Build the replay buffer exactly as verl's trainer does (``PPOTrainer._build_replay_buffer``).

    The trainer object is stood in for by the three attributes that method reads.
    """
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    host = SimpleNamespace(
        config=config, trainer_mode=trainer_mode, _add_prompts_to_generate=refill_fn or _refill_not_expected
    )
    host._resolve_filter_groups_metric = lambda: PPOTrainer._resolve_filter_groups_metric(host)
    return PPOTrainer._build_replay_buffer(host)
