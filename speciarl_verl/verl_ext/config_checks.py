"""Checks that a verl config wires SpeciaRL's two stages together and chooses its judge.

The dynamic reward only exists after the group stage; a run that scores with
our reward manager but samples with verl's stock replay buffer would train on
the provisional per-rollout score without saying so. Nor does the reward pick
a judge for the user: ``JudgeSettings.kind`` defaults to the rule tier alone,
whose undecided pairs count as *wrong*, which a recipe that forgot the key
would train on without a word. These checks turn both into errors at start-up.
"""

from __future__ import annotations

import logging
from typing import Any

from speciarl_verl.judge.settings import JUDGE_KINDS
from speciarl_verl.reward_settings import RewardSettings

__all__ = ["GROUP_STAGE_PATH", "check_group_stage", "check_judge_kind", "group_stage_class", "judge_kind_given"]

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


#: What each ``judge.kind`` costs, for the message that asks for one.
_KIND_COSTS = {
    "offline": "the rule tier alone: no judge server, but every pair it has no rule for (a farther ancestor "
    'such as "albatross" for an albatross species, any wrong answer) scores judge.deferred_outcome (wrong)',
    "llm": "every pair to the LLM judge at judge.llm.endpoints, as the method: one judge call per unique pair, "
    "a served judge model (GPUs)",
    "auto": "the rule tier first (exact names, synonyms, refusals, domain nouns, close parents), the LLM judge for "
    "the rest: fewer judge calls, the same judge server (what the shipped configs set)",
}
assert set(_KIND_COSTS) == set(JUDGE_KINDS), "every judge kind needs its cost described"


def _reward_kwarg(config: Any, *path: str) -> Any:
    """``reward.reward_kwargs.<path>`` of verl's config, ``None`` when missing or null."""
    node = config
    for key in ("reward", "reward_kwargs", *path):
        node = node.get(key) if node is not None and hasattr(node, "get") else None
    return node


def judge_kind_given(config: Any) -> bool:
    """Whether ``reward.reward_kwargs.judge.kind`` is set (not missing, not null) in verl's config."""
    return _reward_kwarg(config, "judge", "kind") is not None


def check_judge_kind(config: Any) -> None:
    """Raise if the dynamic reward would run with a judge nobody chose (warn for the static tables):
    one message naming the key, its choices and what each costs. Runs before the settings are read,
    so a null ``kind`` gets this message too."""
    if judge_kind_given(config):
        return
    choices = "; ".join(f"{kind}: {_KIND_COSTS[kind]}" for kind in JUDGE_KINDS)
    message = (
        "reward.reward_kwargs.judge.kind is not set: choose the judge with reward.reward_kwargs.judge.kind="
        f"{'|'.join(JUDGE_KINDS)} (prefix the override with + where the config has no such key). {choices}"
    )
    if (_reward_kwarg(config, "scheme") or "dynamic") == "dynamic":
        raise ValueError(message)
    logger.warning("SpeciaRL static reward with the rule tier alone (the default judge); %s", message)
