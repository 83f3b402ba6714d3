"""Policy prompts: the instruction the policy sees after the image, selectable by name.

``get_policy_prompt("general")`` is the training prompt; ``policy_prompt_names()`` lists
the built-ins (``general``, ``specific``, ``calibrated``, ``elimination``,
``high_precision``, ``max_correctness``, ``max_specificity``) and any registered with
``register_policy_prompt`` or loaded with ``load_policy_prompts``. No verl or torch import.
"""

from speciarl_verl.prompts import builtin_prompts  # noqa: F401 - importing registers the built-ins
from speciarl_verl.prompts.prompt_file import load_policy_prompts
from speciarl_verl.prompts.registry import (
    PolicyPrompt,
    get_policy_prompt,
    policy_prompt_names,
    register_policy_prompt,
)

#: The prompt SpeciaRL trains with.
DEFAULT_POLICY_PROMPT = "general"

__all__ = [
    "DEFAULT_POLICY_PROMPT",
    "PolicyPrompt",
    "get_policy_prompt",
    "load_policy_prompts",
    "policy_prompt_names",
    "register_policy_prompt",
]
