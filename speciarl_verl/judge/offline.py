"""The rule tier of the judge: decides only what it can decide exactly.

* the prediction equals the ground truth or a listed synonym after
  :func:`~speciarl_verl.core.label_normalization.normalize_label` -> *specific*;
* the prediction is a refusal ("None", "unknown", "I don't know", ...) -> *abstain*;
* the prediction is the domain noun of the data source ("bird" on CUB) -> *generic*;
* the prediction is a parent from the dataset's own hierarchy -> *less specific*;
* anything else is *deferred*: an LLM judge decides it, or, with no LLM
  configured, it becomes ``deferred_outcome`` (default *wrong*) and is counted
  under the verdict source ``deferred``.

A prediction is untrusted model output; nothing in it is interpreted beyond
the comparisons above.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from speciarl_verl.core.categories import Category
from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.judge.verifier import VerificationRequest

__all__ = ["ABSTENTIONS", "DOMAIN_NOUNS", "decide_offline"]

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

#: Nouns that name a whole benchmark domain, per data source.
DOMAIN_NOUNS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "cub200": frozenset({"bird", "birds", "songbird", "seabird"}),
        "fgvc_aircraft": frozenset(
            {"aircraft", "airplane", "aeroplane", "plane", "jet", "airliner", "commercial airliner"}
        ),
        "flowers102": frozenset({"flower", "flowers", "plant", "flowering plant"}),
        "food101": frozenset({"food", "dish", "meal", "cuisine"}),
        "oxford_pets": frozenset({"pet", "animal"}),
        "stanford_cars": frozenset({"car", "vehicle", "automobile", "motor vehicle"}),
        # the drawn task of speciarl_verl.data.adapters.synthetic_shapes (its DOMAIN_NOUN is "shape")
        "synthetic_shapes": frozenset({"shape", "shapes", "geometric shape", "figure"}),
    }
)


def decide_offline(request: VerificationRequest) -> Category | None:
    """The rule-tier verdict for ``request``, or ``None`` if the rules cannot decide it.

    >>> decide_offline(VerificationRequest("Black footed Albatross", "black-footed albatross"))
    <Category.SPECIFIC: 'specific'>
    >>> decide_offline(VerificationRequest("707-320", "Boeing 707", "fgvc_aircraft", parents=("Boeing 707", "Boeing")))
    <Category.LESS_SPECIFIC: 'less specific'>
    >>> decide_offline(VerificationRequest("Laysan Albatross", "gull", "cub200")) is None
    True
    """
    prediction = normalize_label(request.prediction)
    if prediction in {normalize_label(request.ground_truth), *map(normalize_label, request.synonyms)}:
        return Category.SPECIFIC
    if prediction in ABSTENTIONS:
        return Category.ABSTAIN
    if prediction in DOMAIN_NOUNS.get(request.data_source, frozenset()):
        return Category.GENERIC
    if prediction in {normalize_label(parent) for parent in request.parents}:
        return Category.LESS_SPECIFIC
    return None
