"""Compose the shipped Hydra configs in-process (tests, the demo, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from omegaconf import DictConfig

__all__ = ["compose_config", "shipped_config_names"]


def compose_config(name: str = "speciarl_grpo", overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m verl.trainer.main_ppo -cp pkg://speciarl_verl.config -cn NAME OVERRIDES`` would run."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="speciarl_verl.config", version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def shipped_config_names() -> list[str]:
    """The runnable configs of this package, sorted (``_``-prefixed files are fragments they compose).

    >>> "speciarl_grpo" in shipped_config_names() and "_speciarl_base" not in shipped_config_names()
    True
    """
    names = (f.name for f in resources.files(__package__).iterdir())
    return sorted(n.removesuffix(".yaml") for n in names if n.endswith(".yaml") and not n.startswith("_"))
