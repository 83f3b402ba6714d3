"""Checks that a verl config wires SpeciaRL's two stages together.

The dynamic reward only exists after the group stage; a run that scores with
our reward manager but samples with verl's stock replay buffer would train on
the provisional per-rollout score without saying so. These checks turn that
into an error at start-up.
"""

from __future__ import annotations

import logging
from typing import Any

from speciarl_verl.reward_settings import RewardSettings

__all__ = ["GROUP_STAGE_PATH", "check_group_stage", "group_stage_class"]

logger = logging.getLogger(__name__)

GROUP_STAGE_PATH = "pkg://speciarl_verl.verl_ext.group_stage"


def group_stage_class(config: Any) -> type | None:
    """The replay-buffer class the config selects, if it is one of ours; else ``None``."""
    from verl.utils.import_utils import load_extern_object

    from speciarl_verl.verl_ext.group_stage import GroupRewardStage

    trainer = config.get("trainer") if config is not None else None
    if trainer is None or not trainer.get("use_v1", True):
        return None
    sampler = (trainer.get("v1") or {}).get("sampler") or {}
    custom = sampler.get("custom_sampler") or {}
    if not custom.get("path") or not custom.get("name"):
        return None
    cls = load_extern_object(custom.get("path"), custom.get("name"))
    return cls if isinstance(cls, type) and issubclass(cls, GroupRewardStage) else None


def check_group_stage(config: Any, settings: RewardSettings) -> None:
    """Raise if the dynamic reward is configured without the group stage (warn for static), or
    with training groups of fewer than two rollouts (a group needs a sibling to be compared with)."""
    if group_stage_class(config) is not None:
        rollout = ((config.get("actor_rollout_ref") or {}).get("rollout") or {}) if config is not None else {}
        n = rollout.get("n")
        if n is not None and int(n) < 2:
            raise ValueError(
                f"actor_rollout_ref.rollout.n={n}: SpeciaRL scores each rollout against the others of its group, "
                "and the group stage gives a group of fewer than two rollouts no advantage (it would train on "
                "nothing); set actor_rollout_ref.rollout.n >= 2 (the paper uses 10)"
            )
        return
    fix = (
        "set trainer.use_v1=true and trainer.v1.sampler.custom_sampler.path="
        f"{GROUP_STAGE_PATH} trainer.v1.sampler.custom_sampler.name=GroupRewardReplayBuffer "
        "(GroupRewardReplayBufferAsync for the async trainer modes), or compose the speciarl_grpo config"
    )
    if settings.scheme == "dynamic":
        raise ValueError(f"the SpeciaRL dynamic reward needs its group stage in verl's replay buffer: {fix}")
    logger.warning("SpeciaRL static reward without its group stage: no speciarl/* training metrics; %s", fix)
