"""Pulling the final label out of a policy response.

The policy is asked to reason inside ``<think>…</think>`` and to put exactly one
label inside ``<answer>…</answer>``. :func:`parse_answer` is strict about the
answer block and lenient about everything else.
"""

from __future__ import annotations

import re

__all__ = ["parse_answer"]

_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</answer>", re.IGNORECASE)


def parse_answer(text: str, max_words: int | None = None) -> str | None:
    """Return the label inside the single ``<answer>…</answer>`` block of ``text``.

    Rules:

    * exactly one opening and one closing ``answer`` tag (tag case ignored), the
      opening one first; a missing, unclosed, nested or repeated block gives ``None``;
    * the label is the text between the tags with whitespace runs collapsed to
      one space and the ends stripped; an empty label gives ``None``;
    * with ``max_words`` set, a label of more words than that gives ``None``
      (a paragraph is not a label);
    * text outside the block (the ``<think>`` part included) is not inspected.

    ``None`` means "unparseable": the rollout receives the format penalty and
    never reaches the judge. A literal ``None`` answer is a valid label (the
    judge files it under *abstain*).

    >>> parse_answer("<think>grey wings</think><answer> Black-footed\\n Albatross </answer>")
    'Black-footed Albatross'
    >>> parse_answer("<answer>gull</answer><answer>tern</answer>") is None
    True
    >>> parse_answer("<answer>  </answer>") is None
    True
    >>> parse_answer("<answer>a small grey bird with long wings</answer>", max_words=5) is None
    True
    """
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be None or >= 1, got {max_words}")
    opens = [m.end() for m in _OPEN_TAG.finditer(text)]
    closes = [m.start() for m in _CLOSE_TAG.finditer(text)]
    if len(opens) != 1 or len(closes) != 1 or closes[0] < opens[0]:
        return None
    label = " ".join(text[opens[0] : closes[0]].split())
    if not label:
        return None
    if max_words is not None and len(label.split(" ")) > max_words:
        return None
    return label
