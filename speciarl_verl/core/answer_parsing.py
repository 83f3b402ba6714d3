"""Pulling the final label out of a policy response.

The policy is asked to reason inside ``<think>…</think>`` and to put one label inside
``<answer>…</answer>``. Two readings of that block exist, selected by ``mode``:

* ``first`` (the default, the method's own reading): the first ``<answer>…</answer>`` pair,
  tags matched case-sensitively; anything after it, another block included, is ignored;
* ``strict``: exactly one opening and one closing tag, tag case ignored; a repeated,
  nested or unclosed block is unparseable.

Either way the text outside the block (``<think>`` included) is not inspected.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

__all__ = ["PARSE_MODES", "ParseMode", "parse_answer"]

ParseMode = Literal["first", "strict"]
PARSE_MODES: tuple[ParseMode, ...] = get_args(ParseMode)

_FIRST_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</answer>", re.IGNORECASE)


def _strict_block(text: str) -> str | None:
    opens = [m.end() for m in _OPEN_TAG.finditer(text)]
    closes = [m.start() for m in _CLOSE_TAG.finditer(text)]
    if len(opens) != 1 or len(closes) != 1 or closes[0] < opens[0]:
        return None
    return text[opens[0] : closes[0]]


def parse_answer(text: str, max_words: int | None = None, mode: ParseMode = "first") -> str | None:
    """Return the label in the ``<answer>…</answer>`` block of ``text``, or ``None`` if there is none.

    ``mode`` picks the block (see the module docstring). The label is the block's text with
    whitespace runs collapsed to one space and the ends stripped; an empty label gives
    ``None``; with ``max_words`` set, a label of more words than that gives ``None`` (a
    paragraph is not a label).

    ``None`` means "unparseable": the rollout receives the format penalty and never reaches
    the judge. A literal ``None`` answer is a valid label (the judge files it under *abstain*).

    >>> parse_answer("<think>grey wings</think><answer> Black-footed\\n Albatross </answer>")
    'Black-footed Albatross'
    >>> parse_answer("<answer>gull</answer><answer>tern</answer>")
    'gull'
    >>> parse_answer("<answer>gull</answer><answer>tern</answer>", mode="strict") is None
    True
    >>> parse_answer("<ANSWER>gull</ANSWER>") is None, parse_answer("<ANSWER>gull</ANSWER>", mode="strict")
    (True, 'gull')
    >>> parse_answer("<answer>  </answer>") is None
    True
    >>> parse_answer("<answer>a small grey bird with long wings</answer>", max_words=5) is None
    True
    """
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be None or >= 1, got {max_words}")
    if mode == "first":
        match = _FIRST_BLOCK.search(text)
        block = match.group(1) if match else None
    elif mode == "strict":
        block = _strict_block(text)
    else:
        raise ValueError(f"unknown parse mode {mode!r}; choose one of {', '.join(PARSE_MODES)}")
    if block is None:
        return None
    label = " ".join(block.split())
    if not label:
        return None
    if max_words is not None and len(label.split(" ")) > max_words:
        return None
    return label
