"""SpeciaRL's method as pure functions: no verl, torch or network imports here."""

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.core.categories import (
    CORRECT_CATEGORIES,
    EVALUATION_LEVEL,
    LEVELS,
    TRAINING_LEVEL,
    Category,
    RankOrder,
    best_category,
)
from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.group_reward import GROUP_MODES, group_rewards
from speciarl_verl.core.group_scoring import GroupScoringRules, ScoredGroup, score_group
from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.core.rollout_record import MissingRecordError, RolloutRecord
from speciarl_verl.core.static_reward import get_static_table, register_static_table, static_reward, static_table_names
from speciarl_verl.core.step_metrics import step_metrics
from speciarl_verl.core.verdict_noise import apply_verdict_noise, noise_rng, perturb_category

__all__ = [
    "CORRECT_CATEGORIES",
    "EVALUATION_LEVEL",
    "GROUP_MODES",
    "LEVELS",
    "TRAINING_LEVEL",
    "Category",
    "GroupOutcome",
    "GroupScoringRules",
    "MissingRecordError",
    "RankOrder",
    "RolloutRecord",
    "ScoredGroup",
    "apply_verdict_noise",
    "best_category",
    "get_static_table",
    "group_rewards",
    "noise_rng",
    "normalize_label",
    "parse_answer",
    "perturb_category",
    "register_static_table",
    "score_group",
    "static_reward",
    "static_table_names",
    "step_metrics",
]
