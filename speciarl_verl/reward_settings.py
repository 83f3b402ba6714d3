"""Reward configuration: one typed, validated record read from verl's config tree.

Everything lives under ``reward.reward_kwargs`` (verl's place for reward
manager options, which its own DAPO manager reads too), so a run is
reconfigured with Hydra overrides such as
``+reward.reward_kwargs.scheme=static +reward.reward_kwargs.static_table=scala1``.
The DAPO keys ``overlong_buffer_cfg`` and ``max_resp_len`` mean what they mean
for verl's ``dapo`` manager.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode
from speciarl_verl.core.categories import Category
from speciarl_verl.core.group_reward import GROUP_MODES, group_rewards
from speciarl_verl.core.static_reward import get_static_table, static_reward
from speciarl_verl.judge.settings import JudgeSettings

__all__ = ["SCHEMES", "OverlongPenalty", "RewardSettings", "Scheme"]

Scheme = Literal["dynamic", "static"]
SCHEMES: tuple[Scheme, ...] = get_args(Scheme)


@dataclass(frozen=True)
class OverlongPenalty:
    """DAPO's soft length penalty: linear from 0 at ``max_response_length - buffer_length``
    down to ``-penalty_factor`` at ``max_response_length`` response tokens."""

    enable: bool = False
    buffer_length: int = 0
    penalty_factor: float = 1.0
    max_response_length: int | None = None

    def __post_init__(self) -> None:
        if not self.enable:
            return
        if self.max_response_length is None:
            raise ValueError("overlong_buffer_cfg.enable=True needs reward_kwargs.max_resp_len")
        if self.buffer_length <= 0:
            raise ValueError(f"overlong_buffer_cfg.len must be positive, got {self.buffer_length}")
        if self.max_response_length < self.buffer_length:
            raise ValueError(
                f"max_resp_len ({self.max_response_length}) must be >= overlong_buffer_cfg.len ({self.buffer_length})"
            )

    def penalty(self, response_length: int) -> float:
        """Penalty (<= 0) for a response of ``response_length`` tokens.

        >>> OverlongPenalty(True, 512, 1.0, 2048).penalty(1792)
        -0.5
        """
        if not self.enable:
            return 0.0
        assert self.max_response_length is not None
        exceed = response_length - (self.max_response_length - self.buffer_length)
        return min(-exceed / self.buffer_length * self.penalty_factor, 0.0)

    @classmethod
    def from_dapo_kwargs(cls, buffer_cfg: Mapping[str, Any] | None, max_resp_len: int | None) -> OverlongPenalty:
        cfg = dict(buffer_cfg or {})
        return cls(
            enable=bool(cfg.get("enable", False)),
            buffer_length=int(cfg.get("len", 0) or 0),
            penalty_factor=float(cfg.get("penalty_factor", 1.0)),
            max_response_length=None if max_resp_len is None else int(max_resp_len),
        )


@dataclass(frozen=True)
class RewardSettings:
    """How verdicts become rewards.

    * ``scheme="dynamic"``: SpeciaRL's group reward (``group_mode`` "all" is the
      paper, "single" a legacy ablation); ``scheme="static"``: a fixed
      per-category table (``static_table``: reward3, scala1, scala2, scala3).
    * ``format_penalty``: reward of an answer that cannot be parsed.
    * ``max_answer_words``: longer answers count as unparseable (``None``: no cap).
    * ``parse_mode``: which ``<answer>`` block counts: ``first`` (the method's reading: the first
      block, tags case-sensitive) or ``strict`` (exactly one block, any tag case); see
      :func:`speciarl_verl.core.answer_parsing.parse_answer`.
    * ``noise_rate`` / ``noise_seed``: synthetic verdict noise for the robustness
      ablation (training only; validation always sees the judge's verdict).
    * ``validation_table``: the per-item validation score (``acc`` and ``reward``
      in verl's validation metrics); the default ``reward3`` makes it the share
      of answers at the ground truth's level or finer. Unparseable answers score 0.
    * ``steady_gc``: once the reward manager is built, its process freezes the start-up heap
      (``gc.collect()``, ``gc.freeze()``) and runs full (generation-2) garbage-collection passes
      only between steps, when no rollout has been in hand for half a second
      (:mod:`speciarl_verl.verl_ext.steady_gc`). Without it a full pass that lands inside a step
      walks the whole heap, a few tens of milliseconds on a warm step that otherwise takes as long.
      Only the process that builds the manager is affected.
    """

    scheme: Scheme = "dynamic"
    group_mode: str = "all"
    static_table: str = "reward3"
    format_penalty: float = -1.0
    max_answer_words: int | None = None
    parse_mode: ParseMode = "first"
    noise_rate: float = 0.0
    noise_seed: int = 0
    validation_table: str = "reward3"
    steady_gc: bool = True
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    overlong: OverlongPenalty = field(default_factory=OverlongPenalty)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"reward_kwargs.scheme={self.scheme!r} is not one of {SCHEMES}")
        if self.group_mode not in GROUP_MODES:
            raise ValueError(f"reward_kwargs.group_mode={self.group_mode!r} is not one of {GROUP_MODES}")
        get_static_table(self.static_table)
        get_static_table(self.validation_table)
        if not math.isfinite(self.format_penalty):
            raise ValueError(f"reward_kwargs.format_penalty must be finite, got {self.format_penalty}")
        if self.max_answer_words is not None and self.max_answer_words < 1:
            raise ValueError(f"reward_kwargs.max_answer_words must be null or >= 1, got {self.max_answer_words}")
        if self.parse_mode not in PARSE_MODES:
            raise ValueError(f"reward_kwargs.parse_mode={self.parse_mode!r} is not one of {PARSE_MODES}")
        if not 0.0 <= self.noise_rate <= 1.0:
            raise ValueError(f"reward_kwargs.noise_rate must be within [0, 1], got {self.noise_rate}")
        if not isinstance(self.steady_gc, bool):
            raise ValueError(f"reward_kwargs.steady_gc must be true or false, got {self.steady_gc!r}")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> RewardSettings:
        """Build from a plain mapping (``reward.reward_kwargs``); unknown keys are an error."""
        values = dict(values or {})
        overlong = OverlongPenalty.from_dapo_kwargs(
            values.pop("overlong_buffer_cfg", None), values.pop("max_resp_len", None)
        )
        judge = JudgeSettings.from_mapping(values.pop("judge", None))
        known = {f.name for f in fields(cls)} - {"judge", "overlong"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown reward.reward_kwargs key(s) {unknown}; known: "
                f"{sorted(known | {'judge', 'overlong_buffer_cfg', 'max_resp_len'})}"
            )
        return cls(judge=judge, overlong=overlong, **values)

    @classmethod
    def from_verl_config(cls, config: Any) -> RewardSettings:
        """Read ``reward.reward_kwargs`` from verl's (OmegaConf) trainer config."""
        from omegaconf import OmegaConf

        reward = config.get("reward") if config is not None else None
        kwargs = reward.get("reward_kwargs") if reward is not None else None
        if kwargs is None:
            return cls()
        if OmegaConf.is_config(kwargs):
            kwargs = OmegaConf.to_container(kwargs, resolve=True)
        return cls.from_mapping(kwargs)

    # -- scoring ------------------------------------------------------------------------------

    def training_rewards(self, categories: Sequence[Category | None]) -> list[float]:
        """Rewards of one group's rollouts (session order) under this configuration."""
        if self.scheme == "dynamic":
            return group_rewards(categories, mode=self.group_mode, format_penalty=self.format_penalty)
        return [static_reward(c, self.static_table, format_penalty=self.format_penalty) for c in categories]

    def provisional_reward(self, category: Category | None) -> float:
        """What one rollout scores on its own, before the group stage sees its siblings."""
        return self.training_rewards([category])[0]

    def validation_score(self, category: Category | None) -> float:
        return static_reward(category, self.validation_table, format_penalty=0.0)
