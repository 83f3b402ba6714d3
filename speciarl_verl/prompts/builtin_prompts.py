"""The built-in policy prompts: the training prompt, "be specific", and five prompt-engineering baselines.

Every prompt is one task sentence (or a few) followed by a format rule: reasoning between
``<think>`` and ``</think>``, then one label between ``<answer>`` and ``</answer>``, with
``None`` allowed as an abstention except in ``max_specificity``. The answer tags are what
:func:`speciarl_verl.core.answer_parsing.parse_answer` reads.

| name | intent |
|---|---|
| ``general`` | classify the image (training default and default evaluation prompt) |
| ``specific`` | classify it, as precisely as possible |
| ``calibrated`` | correct first; fine-grained only when confident, otherwise a broader true label |
| ``elimination`` | list a few candidates, rule out those the image contradicts, keep the best |
| ``high_precision`` | never guess: a label only on visual evidence, else None |
| ``max_correctness`` | avoid wrong answers above all, even at the cost of being generic |
| ``max_specificity`` | always the finest label, never None |
"""

from __future__ import annotations

from speciarl_verl.prompts.registry import register_policy_prompt

__all__ = ["BUILTIN_PROMPT_TEXTS"]

_ANSWER_OR_NONE = (
    " Reason step by step between <think> and </think>. Then give your final answer between <answer> and"
    " </answer>: exactly one label, or None if you decline to answer. Use exactly this format."
)
_ANSWER_ALWAYS = (
    " Reason step by step between <think> and </think>. Then give your final answer between <answer> and"
    " </answer>: exactly one label; None is not an allowed answer. Use exactly this format."
)

#: Instruction text of each built-in prompt, by name.
BUILTIN_PROMPT_TEXTS: dict[str, str] = {
    "general": "What is shown in this image? Classify it." + _ANSWER_OR_NONE,
    "specific": "What is shown in this image? Classify it as precisely as you can." + _ANSWER_OR_NONE,
    "calibrated": (
        "What is shown in this image? Classify it. Being right matters more than being detailed: name a"
        " fine-grained class only when you are confident in it, and otherwise fall back to a broader class that"
        " you are sure is true. If you cannot give any correct label, answer None." + _ANSWER_OR_NONE
    ),
    "elimination": (
        "What is shown in this image? Classify it by elimination: write down at most three candidate labels,"
        " strike out every candidate that something visible in the image contradicts, and keep the best one"
        " left. If you cannot decide between the remaining candidates, give the most general label you are"
        " certain of; if you are certain of nothing, answer None." + _ANSWER_OR_NONE
    ),
    "high_precision": (
        "What is shown in this image? Classify it without guessing. Give a label only when what you can see"
        " backs it up, and then give the most specific label that the visual evidence supports. Whenever you"
        " are unsure, answer None." + _ANSWER_OR_NONE
    ),
    "max_correctness": (
        "What is shown in this image? Classify it, and above all do not be wrong: give the most cautious label"
        " you are confident is correct, even a broad one, and go fine-grained only when you are practically"
        " certain. Answer None only if you think no label at all would be correct." + _ANSWER_OR_NONE
    ),
    "max_specificity": (
        "What is shown in this image? Classify it at the finest level you can: always name the most specific"
        " class, never a broad one, and never decline. If several fine-grained classes seem possible, choose"
        " the single most likely one." + _ANSWER_ALWAYS
    ),
}

for _name, _text in BUILTIN_PROMPT_TEXTS.items():
    register_policy_prompt(_name, _text)
del _name, _text
