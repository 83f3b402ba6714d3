"""The built-in policy prompts: the training prompt, "be specific", and five prompt-engineering baselines.

Every prompt is a task instruction followed by the same format rule, in the method's layout:
reasoning between ``<think>`` and ``</think>``, then a single label between ``<answer>`` and
``</answer>`` (``None`` to abstain, except under ``max_specificity``), stated once more as the
literal layout ``<think> ... </think> <answer> ... </answer>``. The answer tags are what
:func:`speciarl_verl.core.answer_parsing.parse_answer` reads.

| name | intent (the method's prompt of the same role) |
|---|---|
| ``general`` | classify the image (the training prompt and default evaluation prompt) |
| ``specific`` | classify the image, being specific ("Be specific" baseline) |
| ``calibrated`` | correct first; fine-grained only when confident, otherwise a broader true label; None if nothing is |
| ``elimination`` | up to three candidates, drop what the image contradicts, keep the best; else the broadest sure one |
| ``high_precision`` | never guess: None when unsure; a label only on visual evidence, the finest it supports |
| ``max_correctness`` | avoid wrong answers above all: the most cautious label held correct, even a generic one |
| ``max_specificity`` | always the finest label, never None; the single most likely if several fit |
| ``open_general`` | this package's earlier ``general``: an open question and step-by-step reasoning |
| ``open_specific`` | this package's earlier ``specific`` |

The ``open_*`` prompts are kept for comparison with runs made before the method's wording was adopted.
"""

from __future__ import annotations

from speciarl_verl.prompts.registry import register_policy_prompt

__all__ = ["BUILTIN_PROMPT_TEXTS", "LAYOUT"]

#: The response layout every built-in prompt spells out.
LAYOUT = "<think> ... </think> <answer> ... </answer>"

_LABEL_OR_NONE = (
    " Think it through inside the think tags first, then put your final answer inside the answer tags: a"
    " single label, or None if you abstain. Keep strictly to this layout: " + LAYOUT
)
_LABEL_ALWAYS = (
    " Think it through inside the think tags first, then put your final answer inside the answer tags: a"
    " single label; None is not an allowed answer. Keep strictly to this layout: " + LAYOUT
)
_OPEN_LABEL_OR_NONE = (
    " Reason step by step between <think> and </think>. Then give your final answer between <answer> and"
    " </answer>: exactly one label, or None if you decline to answer. Use exactly this format: " + LAYOUT
)

#: Instruction text of each built-in prompt, by name.
BUILTIN_PROMPT_TEXTS: dict[str, str] = {
    "general": "Classify the image." + _LABEL_OR_NONE,
    "specific": "Classify the image, and be specific." + _LABEL_OR_NONE,
    "calibrated": (
        "Classify the image. Being right matters more than being detailed: name a fine-grained class only when"
        " you are confident in it, and otherwise fall back to a broader class that you are sure is true. If no"
        " label you could give would be correct, answer None." + _LABEL_OR_NONE
    ),
    "elimination": (
        "Classify the image by elimination: write down at most three candidate labels, strike out every"
        " candidate that something visible in the image contradicts, and keep the best one left. If you cannot"
        " decide between the remaining candidates, give the most general label you are certain of; if you are"
        " certain of nothing, answer None." + _LABEL_OR_NONE
    ),
    "high_precision": (
        "Classify the image without guessing. Whenever you are unsure, answer None. Give a label only when what"
        " you can see backs it up, and then the most specific label that the visual evidence supports." + _LABEL_OR_NONE
    ),
    "max_correctness": (
        "Classify the image, and above all do not be wrong: give the most cautious label you are confident is"
        " correct, even a broad one, and go fine-grained only when you are practically certain. Answer None only"
        " if you think no label at all would be correct." + _LABEL_OR_NONE
    ),
    "max_specificity": (
        "Classify the image at the finest level you can: always name the most specific class, never a broad"
        " one, and never decline. If several fine-grained classes seem possible, choose the single most likely"
        " one." + _LABEL_ALWAYS
    ),
    "open_general": "What is shown in this image? Classify it." + _OPEN_LABEL_OR_NONE,
    "open_specific": "What is shown in this image? Classify it as precisely as you can." + _OPEN_LABEL_OR_NONE,
}

for _name, _text in BUILTIN_PROMPT_TEXTS.items():
    register_policy_prompt(_name, _text)
del _name, _text
