"""speciarl_verl: specificity-aware RL (SpeciaRL) for fine-grained classification, as a verl plugin.

The top level re-exports the pure core only; importing it loads neither verl
nor torch. The verl adapters live in :mod:`speciarl_verl.verl_ext` and are
registered with verl through the ``verl.plugins`` entry point.
"""

from speciarl_verl.core import (
    CORRECT_CATEGORIES,
    EVALUATION_LEVEL,
    TRAINING_LEVEL,
    Category,
    GroupOutcome,
    apply_verdict_noise,
    best_category,
    group_rewards,
    noise_rng,
    normalize_label,
    parse_answer,
    perturb_category,
    static_reward,
    step_metrics,
)
from speciarl_verl.judge.verifier import Verdict, VerificationRequest, Verifier
from speciarl_verl.reward_settings import RewardSettings

__version__ = "0.1.0"

__all__ = [
    "Category",
    "TRAINING_LEVEL",
    "EVALUATION_LEVEL",
    "CORRECT_CATEGORIES",
    "parse_answer",
    "normalize_label",
    "group_rewards",
    "best_category",
    "static_reward",
    "perturb_category",
    "apply_verdict_noise",
    "noise_rng",
    "GroupOutcome",
    "step_metrics",
    "Verifier",
    "VerificationRequest",
    "Verdict",
    "RewardSettings",
    "__version__",
]
