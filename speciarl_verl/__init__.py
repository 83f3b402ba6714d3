"""speciarl_verl: specificity-aware RL (SpeciaRL) for fine-grained classification, as a verl plugin.

The top level holds what a user of the method reaches for: the verdict categories and
their orders, answer parsing, the group and static rewards, the scoring of one group,
the reward settings and the verifier contract a custom judge implements. The rest of the
pure core is in :mod:`speciarl_verl.core`. Importing the package loads neither verl nor
torch; the verl adapters live in :mod:`speciarl_verl.verl_ext` and are registered with
verl through the ``verl.plugins`` entry point.
"""

from speciarl_verl.core import (
    CORRECT_CATEGORIES,
    EVALUATION_LEVEL,
    TRAINING_LEVEL,
    Category,
    best_category,
    group_rewards,
    normalize_label,
    parse_answer,
    score_group,
    static_reward,
)
from speciarl_verl.judge.verifier import Verdict, VerificationRequest, Verifier
from speciarl_verl.reward_settings import RewardSettings

__version__ = "0.1.0"

__all__ = [
    "CORRECT_CATEGORIES",
    "EVALUATION_LEVEL",
    "TRAINING_LEVEL",
    "Category",
    "RewardSettings",
    "Verdict",
    "VerificationRequest",
    "Verifier",
    "__version__",
    "best_category",
    "group_rewards",
    "normalize_label",
    "parse_answer",
    "score_group",
    "static_reward",
]
