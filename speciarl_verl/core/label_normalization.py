"""Folding class labels for matching and for cache keys.

The fold must make spelling variants of one class equal ("Black-footed
Albatross", "black_footed albatross", "BLACK FOOTED ALBATROSS") while never
merging two classes of a benchmark ("737-800" vs "737-8", "F/A-18" vs "F-18").
So it folds case, accents on Latin letters, underscores, dashes, apostrophes and
stray punctuation, and keeps every letter and digit in order, together with the
characters that carry meaning in class names: ``/``, ``&``, ``+`` and a decimal
point between digits.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["normalize_for_judge", "normalize_label"]

_APOSTROPHES = frozenset("'\u2019\u02bc\u2018`\u00b4")
_KEPT_SYMBOLS = frozenset("/&+")


def _strip_latin_accents(text: str) -> str:
    # Decompose, then drop combining marks that sit on an ASCII letter (é -> e).
    # Marks on other scripts are kept: there they can distinguish letters.
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch) and out and out[-1].isascii() and out[-1].isalpha():
            continue
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


@lru_cache(maxsize=1 << 16)  # a pure function called with the same few thousand labels every step
def normalize_label(label: str) -> str:
    """Fold ``label`` to its matching key.

    * Unicode compatibility forms and case are folded, and accents on Latin
      letters dropped ("Crème Brûlée" -> "creme brulee");
    * underscores and every dash character become a space;
    * apostrophes are dropped ("colt's foot" -> "colts foot");
    * a ``.`` between two digits is kept, any other ``.`` becomes a space;
    * ``/``, ``&`` and ``+`` are kept; any other punctuation or symbol becomes a space;
    * whitespace runs collapse to one space; the ends are stripped.

    >>> normalize_label("Black-footed_Albatross")
    'black footed albatross'
    >>> normalize_label("F/A-18"), normalize_label("737-800"), normalize_label("737-8")
    ('f/a 18', '737 800', '737 8')
    >>> normalize_label("  St. Bernard ")
    'st bernard'
    """
    text = _strip_latin_accents(unicodedata.normalize("NFKC", label)).casefold()
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch.isalnum() or ch in _KEPT_SYMBOLS or unicodedata.combining(ch):
            out.append(ch)
        elif ch in _APOSTROPHES:
            continue
        elif ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            out.append(ch)
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def normalize_for_judge(text: str) -> str:
    """The method's cleaning of both strings before they reach the LLM judge.

    Every character that is not a letter, a digit, a dash or whitespace becomes a space
    (Unicode categories L*, N*, Pd); then lower case; whitespace runs collapse to one space
    and the ends are stripped. Unlike :func:`normalize_label` it keeps dashes and drops
    ``/``, ``&``, ``+`` and decimal points: it is what the judge reads, not a matching key.

    >>> normalize_for_judge("Black-footed Albatross"), normalize_for_judge("Anna's Hummingbird")
    ('black-footed albatross', 'anna s hummingbird')
    >>> normalize_for_judge("F/A-18"), normalize_for_judge("St. Bernard"), normalize_for_judge("A340-500")
    ('f a-18', 'st bernard', 'a340-500')
    """
    kept = [
        ch if ch.isspace() or unicodedata.category(ch)[0] in "LN" or unicodedata.category(ch) == "Pd" else " "
        for ch in text
    ]
    return " ".join("".join(kept).lower().split())
