"""SpeciaRL's method as pure functions: no verl, torch or network imports here."""

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.core.categories import (
    CORRECT_CATEGORIES,
    EVALUATION_LEVEL,
    NOISE_CHAIN,
    TRAINING_LEVEL,
    UNPARSEABLE_LEVEL,
    Category,
)
from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.group_reward import GROUP_MODES, best_category, group_rewards
from speciarl_verl.core.label_normalization import normalize_for_judge, normalize_label
from speciarl_verl.core.static_reward import get_static_table, register_static_table, static_reward, static_table_names
from speciarl_verl.core.step_metrics import step_metrics
from speciarl_verl.core.verdict_noise import apply_verdict_noise, noise_rng, perturb_category

__all__ = [
    "Category",
    "TRAINING_LEVEL",
    "EVALUATION_LEVEL",
    "CORRECT_CATEGORIES",
    "NOISE_CHAIN",
    "UNPARSEABLE_LEVEL",
    "parse_answer",
    "normalize_label",
    "normalize_for_judge",
    "group_rewards",
    "best_category",
    "GROUP_MODES",
    "static_reward",
    "get_static_table",
    "register_static_table",
    "static_table_names",
    "perturb_category",
    "apply_verdict_noise",
    "noise_rng",
    "GroupOutcome",
    "step_metrics",
]
