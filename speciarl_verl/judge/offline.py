"""The rule tier of the judge: decides only what it can decide exactly.

* the prediction equals the ground truth or a listed synonym after
  :func:`~speciarl_verl.core.label_normalization.normalize_label` -> *specific*;
* the prediction is a refusal ("None", "unknown", "I don't know", ...) -> *abstain*;
* the prediction is one of the request's domain nouns (``"bird"`` on CUB, ``"dog"``
  for a dog breed) -> *generic*;
* the prediction is a ``close`` parent from the dataset's own hierarchy (an
  aircraft's family, a car's make and model) -> *less specific*;
* anything else is *deferred*, farther ancestors included (an aircraft's
  manufacturer, a car's make alone): the method's judge prompt files a closely
  related coarser label as *less specific* and a broad kind as *generic*, and
  only an LLM judge can tell which a farther name is. With no LLM configured a
  deferred pair becomes ``deferred_outcome`` (default *wrong*) and is counted
  under the verdict source ``deferred``.

Everything the rules know about a class arrives in the request (parents, their
levels, domain nouns, synonyms), written into each row by the dataset adapter;
this module holds no dataset knowledge.

A prediction is untrusted model output; nothing in it is interpreted beyond
the comparisons above.
"""

from __future__ import annotations

from speciarl_verl.core.categories import Category
from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.judge.verifier import VerificationRequest

__all__ = ["ABSTENTIONS", "decide_offline"]

#: Normalised refusals.
ABSTENTIONS: frozenset[str] = frozenset(
    normalize_label(text)
    for text in (
        "none",
        "unknown",
        "i don't know",
        "i do not know",
        "don't know",
        "not sure",
        "unsure",
        "no idea",
        "cannot tell",
        "can't tell",
        "cannot determine",
        "can't determine",
        "unclear",
        "n/a",
    )
)


def decide_offline(request: VerificationRequest) -> Category | None:
    """The rule-tier verdict for ``request``, or ``None`` if the rules cannot decide it.

    >>> decide_offline(VerificationRequest("Black footed Albatross", "black-footed albatross"))
    <Category.SPECIFIC: 'specific'>
    >>> family = VerificationRequest("707-320", "Boeing 707", parents=("Boeing 707", "Boeing"),
    ...                              parent_levels=("close", "far"))
    >>> decide_offline(family)
    <Category.LESS_SPECIFIC: 'less specific'>
    >>> decide_offline(VerificationRequest("707-320", "Boeing", parents=family.parents,
    ...                                    parent_levels=family.parent_levels)) is None
    True
    >>> decide_offline(VerificationRequest("Samoyed", "Dog", domain_nouns=("dog", "animal")))
    <Category.GENERIC: 'generic'>
    """
    prediction = normalize_label(request.prediction)
    if prediction in {normalize_label(request.ground_truth), *map(normalize_label, request.synonyms)}:
        return Category.SPECIFIC
    if prediction in ABSTENTIONS:
        return Category.ABSTAIN
    if prediction in {normalize_label(noun) for noun in request.domain_nouns}:
        return Category.GENERIC
    if prediction in {normalize_label(parent) for parent in request.close_parents}:
        return Category.LESS_SPECIFIC
    return None
