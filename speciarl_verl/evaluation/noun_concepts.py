"""Noun-phrase concepts of a free-text prediction, for the concept semantic similarity.

A prediction such as "a photo of a Laysan albatross over 2 waves" names several things; the
concept metric compares each of them with the ground truth. The concepts are noun phrases with
articles, numbers and words about the picture itself ("image", "photo", ...) left out.

Two ways to find the noun phrases, both through spaCy:

* a spaCy pipeline with a dependency parser (``en_core_web_sm`` by default, installed with
  ``python -m spacy download en_core_web_sm``): its ``doc.noun_chunks``;
* ``rules``: spaCy's blank English tokenizer and :func:`rule_noun_chunks`, which needs no model.
  The blank pipeline has neither tagger nor parser, so the chunks are found without parts of
  speech: a chunk is a maximal run of words that are not function words (articles,
  determiners, prepositions, conjunctions, pronouns, forms of *be*/*have* and a few verbs of
  description such as "shows" or "appears"), not punctuation and not numbers. "a Boeing 737-800
  with a trash can" gives "Boeing 737-800" and "trash can". It errs towards long chunks where a
  parser would split adjectives from a second noun ("large white bird" stays one chunk, as a
  parser would also have it).

Either way each chunk is then cleaned word by word (a *word* is a run of tokens without
whitespace between them, so "737-800" and "Black-footed" stay whole): articles, determiners,
single-token numbers ("2", "two", "1,000") and picture words are dropped, and a chunk with no
word left is dropped. A prediction with no concept at all is compared as a whole
(:meth:`ConceptExtractor.concepts_or_whole`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_CONCEPT_PIPELINE",
    "FUNCTION_WORDS",
    "RULES",
    "SKIPPED_WORDS",
    "ConceptExtractor",
    "clean_chunk",
    "rule_noun_chunks",
]

#: ``concept_pipeline`` value for the blank English pipeline with the rule chunker.
RULES = "rules"
#: The default: a small English pipeline with a parser, as the open-world protocol uses spaCy's noun chunks.
DEFAULT_CONCEPT_PIPELINE = "en_core_web_sm"

_ARTICLES_AND_DETERMINERS = frozenset(
    "a an the this that these those some any each every another either neither its their his her my your our "
    "such no".split()
)
#: Words about the picture rather than its content; never a concept.
SKIPPED_WORDS = frozenset(
    "image images photo photos photograph photographs picture pictures pic snapshot shot closeup close-up view "
    "scene illustration".split()
)
_PREPOSITIONS = frozenset(
    "of in on at with from by for to into onto over under near beside behind above below between among against "
    "through during without within about around like as across along upon atop next".split()
)
_OTHER_FUNCTION_WORDS = frozenset(
    "and or but nor both it they he she i we you them him me us which who whom what there here "
    "is are was were be been being am has have had does do did appears appear seems seem looks look shows show "
    "showing shown depicts depicting depicted contains containing features featuring likely probably possibly "
    "perhaps maybe very not yes".split()
)
#: Words that end a chunk of the rule chunker.
FUNCTION_WORDS = _ARTICLES_AND_DETERMINERS | _PREPOSITIONS | _OTHER_FUNCTION_WORDS


def _words(tokens: Iterable[Any]) -> list[list[Any]]:
    """Group tokens into words: runs without whitespace between them, edge punctuation split off."""
    words: list[list[Any]] = []
    current: list[Any] = []
    for token in tokens:
        current.append(token)
        if token.whitespace_:
            words.append(current)
            current = []
    if current:
        words.append(current)
    out: list[list[Any]] = []
    for word in words:
        start, end = 0, len(word)
        while start < end and word[start].is_punct:
            out.append([word[start]])  # a leading "(" or quote is a word of its own: it ends a chunk
            start += 1
        trailing = []
        while end > start and word[end - 1].is_punct:
            end -= 1
            trailing.insert(0, [word[end]])
        if start < end:
            out.append(word[start:end])
        out += trailing
    return out


def _word_text(word: Sequence[Any]) -> str:
    return "".join(token.text for token in word)


def _is_number(word: Sequence[Any]) -> bool:
    return len(word) == 1 and bool(word[0].like_num)


def _is_punctuation(word: Sequence[Any]) -> bool:
    return all(token.is_punct or token.is_space for token in word)


def rule_noun_chunks(doc: Any) -> list[str]:
    """Noun-phrase candidates of a tokenised ``doc`` without a parser (see the module docstring).

    ``doc`` is a spaCy ``Doc`` (any object whose tokens have ``text``, ``whitespace_``, ``is_punct``,
    ``is_space`` and ``like_num``). Example: with ``nlp = spacy.blank("en")``,
    ``rule_noun_chunks(nlp("a photo of a trash can, 2 birds"))`` is ``["photo", "trash can", "birds"]``
    (``clean_chunk`` then drops "photo").
    """
    chunks: list[str] = []
    current: list[str] = []
    for word in _words(doc):
        text = _word_text(word)
        if _is_punctuation(word) or _is_number(word) or text.lower() in FUNCTION_WORDS:
            if current:
                chunks.append(" ".join(current))
            current = []
        else:
            current.append(text)
    if current:
        chunks.append(" ".join(current))
    return chunks


def clean_chunk(words: Sequence[str]) -> str:
    """A chunk's words without articles, determiners, numbers and picture words, joined by spaces.

    >>> clean_chunk(["the", "two", "Laysan", "albatrosses", "photo"])
    'Laysan albatrosses'
    >>> clean_chunk(["the", "image"])
    ''
    """
    kept = [
        w
        for w in words
        if w.lower() not in _ARTICLES_AND_DETERMINERS and w.lower() not in SKIPPED_WORDS and not _looks_numeric(w)
    ]
    return " ".join(kept)


_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve dozen hundred thousand".split()
)


def _looks_numeric(word: str) -> bool:
    """A single number ("2", "1,000", "3.5", "two"); a code such as "737-800" or "A320" is not one."""
    bare = word.replace(",", "").replace(".", "")
    return bare.isdigit() or word.lower() in _NUMBER_WORDS


class ConceptExtractor:
    """Concepts of predictions with one spaCy pipeline, loaded on first use.

    ``pipeline``: :data:`RULES` (blank English, rule chunker) or the name or path of an installed spaCy
    pipeline with a parser (its ``noun_chunks``). Results are remembered per text for this object's
    life, since predictions repeat.

    Example: ``ConceptExtractor("rules").concepts(["a photo of a trash can"])`` is ``[["trash can"]]``.
    """

    def __init__(self, pipeline: str = DEFAULT_CONCEPT_PIPELINE, batch_size: int = 1000):
        if not pipeline.strip():
            raise ValueError("concept pipeline: expected 'rules' or a spaCy pipeline name, got an empty string")
        self.pipeline = pipeline
        self.batch_size = batch_size
        self._nlp: Any = None
        self._known: dict[str, list[str]] = {}

    def _load(self) -> Any:
        if self._nlp is None:
            import spacy

            if self.pipeline == RULES:
                self._nlp = spacy.blank("en")
            else:
                try:
                    nlp = spacy.load(self.pipeline, exclude=["ner", "lemmatizer", "textcat"])
                except OSError as error:
                    raise ValueError(
                        f"concept pipeline {self.pipeline!r} is not installed ({' '.join(str(error).split())[:200]}); "
                        f"install it (python -m spacy download {self.pipeline}) or use --concept-pipeline rules"
                    ) from error
                if not nlp.has_pipe("parser"):
                    raise ValueError(
                        f"concept pipeline {self.pipeline!r} has no dependency parser, so it has no noun chunks; "
                        "use a pipeline with a parser or --concept-pipeline rules"
                    )
                self._nlp = nlp
        return self._nlp

    def _chunks(self, doc: Any) -> list[str]:
        if self.pipeline == RULES:
            raw = [chunk.split() for chunk in rule_noun_chunks(doc)]
        else:
            raw = [[_word_text(w) for w in _words(chunk)] for chunk in doc.noun_chunks]
        cleaned = (clean_chunk(words) for words in raw)
        return list(dict.fromkeys(c for c in cleaned if c))  # first occurrence order, no repeats

    def forget(self) -> None:
        """Drop the remembered concepts, keep the loaded pipeline."""
        self._known = {}

    def concepts(self, texts: Sequence[str]) -> list[list[str]]:
        """The concepts of each text (possibly none)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        if missing:
            nlp = self._load()
            for text, doc in zip(missing, nlp.pipe(missing, batch_size=self.batch_size), strict=True):
                self._known[text] = self._chunks(doc)
        return [self._known[t] for t in texts]

    def concepts_or_whole(self, texts: Sequence[str]) -> list[list[str]]:
        """As :meth:`concepts`, but a text without a concept stands for itself (stripped), e.g. "737-800"."""
        return [found or [" ".join(text.split())] for text, found in zip(texts, self.concepts(texts), strict=True)]
