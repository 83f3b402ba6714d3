"""The open-world classification metrics (Conti et al., ICCV 2025) over the evaluator's answers.

Each metric gives every answer a score in [0, 1] (cosines may dip below 0) from its ground truth
and its parsed answer; the report averages them like the category metrics (each image weighs
the same, per data source, out-of-domain mean, bootstrap intervals over images). They do not use
the category judge, so every answer is scored, undecided ones included; an unparseable answer
(no parsed label) scores 0 on each.

Built in (``--metrics owc`` selects them all):

* ``exact_match``: 1 when :func:`~speciarl_verl.core.label_normalization.normalize_label` of the
  answer equals that of the ground truth;
* ``text_inclusion``: 1 when ``normalize_label`` of the ground truth is a substring of that of
  the answer (the same folding as ``exact_match``, so an exact match is always included);
* ``llm_inclusion``: 1 when an LLM says the answer names the class, a synonym, a finer kind or a
  correct broader class (:mod:`.llm_inclusion`);
* ``semantic_similarity``: cosine of the L2-normalised mean-pooled sentence embeddings of the
  answer and the ground truth (:mod:`.sentence_embeddings`);
* ``concept_similarity``: the same cosine between the ground truth and each noun-phrase concept
  of the answer (:mod:`.noun_concepts`), reduced over the concepts by ``max`` (``mean``,
  ``median``, ``min`` selectable); an answer without a concept is compared as a whole.

A metric is a function ``score(pairs, context) -> list[float | None]`` registered with
:func:`register_answer_metric` (``None``: no score for that answer, e.g. an LLM call that failed
under ``failure_policy=skip``; the report leaves it out and counts it)::

    @register_answer_metric("word_overlap", "WO", "shared words / ground-truth words")
    def word_overlap(pairs, context):
        return [len(set(g.lower().split()) & set(p.lower().split())) / len(g.split()) for g, p in pairs]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.evaluation.records import VerdictRecord

__all__ = [
    "CONCEPT_REDUCTIONS",
    "OWC_METRICS",
    "AnswerMetric",
    "OwcContext",
    "OwcSettings",
    "answer_metric_names",
    "exact_match",
    "get_answer_metric",
    "owc_extra_problem",
    "parse_metric_selection",
    "register_answer_metric",
    "score_verdicts",
    "text_inclusion",
]

Pair = tuple[str, str]
AnswerScorer = Callable[[Sequence[Pair], "OwcContext"], Sequence[float | None]]

#: Reductions of the concept similarities of one answer.
CONCEPT_REDUCTIONS: Mapping[str, Callable[[np.ndarray], float]] = {
    "max": lambda v: float(np.max(v)),
    "mean": lambda v: float(np.mean(v)),
    "median": lambda v: float(np.median(v)),
    "min": lambda v: float(np.min(v)),
}


@dataclass(frozen=True)
class AnswerMetric:
    """A registered per-answer metric: its name, its column title and its definition for the report."""

    name: str
    title: str
    definition: str
    score: AnswerScorer


_ANSWER_METRICS: dict[str, AnswerMetric] = {}


def register_answer_metric(name: str, title: str, definition: str) -> Callable[[AnswerScorer], AnswerScorer]:
    """``@register_answer_metric(name, title, definition)`` on ``score(pairs, context)``."""

    def add(function: AnswerScorer) -> AnswerScorer:
        existing = _ANSWER_METRICS.get(name)
        if existing is not None and existing.score is not function:
            raise ValueError(f"answer metric {name!r} is already registered with another function")
        _ANSWER_METRICS[name] = AnswerMetric(name, title, definition, function)
        return function

    return add


def get_answer_metric(name: str) -> AnswerMetric:
    if name not in _ANSWER_METRICS:
        raise ValueError(f"Unknown answer metric: {name!r} (known: {', '.join(answer_metric_names())})")
    return _ANSWER_METRICS[name]


def answer_metric_names() -> list[str]:
    """Registered answer metrics, the open-world ones first in the protocol's order."""
    return [*(n for n in OWC_METRICS if n in _ANSWER_METRICS), *sorted(set(_ANSWER_METRICS) - set(OWC_METRICS))]


#: What ``--metrics owc`` stands for, in the order of the report's columns.
OWC_METRICS: tuple[str, ...] = (
    "exact_match",
    "text_inclusion",
    "llm_inclusion",
    "semantic_similarity",
    "concept_similarity",
)
_SPEC = "spec"
_OWC = "owc"


def parse_metric_selection(value: str) -> tuple[str, ...]:
    """The answer metrics a ``--metrics`` value asks for, in column order.

    ``spec`` (correctness, specificity, HM) is always in the report, since its verdicts are the
    report's input; ``owc`` adds every open-world metric; single metric names add themselves.

    >>> parse_metric_selection("spec"), parse_metric_selection("spec,owc")[:2]
    ((), ('exact_match', 'text_inclusion'))
    >>> parse_metric_selection("semantic_similarity, exact_match")
    ('exact_match', 'semantic_similarity')
    """
    chosen: set[str] = set()
    for part in (p.strip() for p in value.split(",")):
        if not part or part == _SPEC:
            continue
        if part == _OWC:
            chosen.update(OWC_METRICS)
        elif part in _ANSWER_METRICS:
            chosen.add(part)
        else:
            known = ", ".join([_SPEC, _OWC, *answer_metric_names()])
            raise ValueError(f"--metrics: unknown metric or group {part!r} (known: {known})")
    return tuple(n for n in answer_metric_names() if n in chosen)


_EXTRA_NEEDS = {
    "semantic_similarity": ("sentence_transformers",),
    "concept_similarity": ("sentence_transformers", "spacy"),
}


def owc_extra_problem(names: Iterable[str]) -> str | None:
    """Why the chosen metrics cannot run here (a library of the ``owc`` extra missing), or ``None``."""
    import importlib.util

    wanted = sorted({module for n in names for module in _EXTRA_NEEDS.get(n, ())})
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"the metric(s) {', '.join(n for n in names if n in _EXTRA_NEEDS)} need {', '.join(missing)}: install the "
        "owc extra (pip install 'speciarl-verl[owc]'), or report without them (--metrics spec)"
    )


@dataclass(frozen=True)
class OwcSettings:
    """How the model-based metrics run.

    ``embedding_model``: sentence-transformers name or folder; ``embedding_device``: ``None`` lets the
    library choose; ``concept_pipeline``: ``rules`` or an installed spaCy pipeline with a parser;
    ``concept_reduction``: one of :data:`CONCEPT_REDUCTIONS`; ``inclusion_judge``: mapping for
    :class:`~speciarl_verl.evaluation.llm_inclusion.InclusionJudgeSettings` (``None``: the shipped
    evaluation judge's endpoint, model and cache).

    >>> OwcSettings(concept_reduction="median").concept_reduction
    'median'
    """

    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_batch_size: int = 256
    embedding_device: str | None = None
    concept_pipeline: str = "en_core_web_sm"
    concept_reduction: str = "max"
    inclusion_judge: Mapping[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.concept_reduction not in CONCEPT_REDUCTIONS:
            raise ValueError(f"concept reduction {self.concept_reduction!r} is not one of {sorted(CONCEPT_REDUCTIONS)}")

    def inclusion_settings(self):
        """The inclusion judge's settings (default: the shipped evaluation judge's llm and cache sections)."""
        from speciarl_verl.evaluation.judging import default_judge_settings
        from speciarl_verl.evaluation.llm_inclusion import InclusionJudgeSettings

        if self.inclusion_judge is not None:
            return InclusionJudgeSettings.from_mapping(self.inclusion_judge)
        shipped = default_judge_settings()
        return InclusionJudgeSettings.from_mapping({"llm": shipped["llm"], "cache": shipped.get("cache")})

    def describe(self, names: Iterable[str]) -> dict[str, Any]:
        """What the chosen metrics ran with, for ``report.json`` → ``settings.answer_metrics``."""
        from speciarl_verl.evaluation.llm_inclusion import INCLUSION_PROMPT

        names = list(names)
        out: dict[str, Any] = {"metrics": names}
        if {"semantic_similarity", "concept_similarity"} & set(names):
            out["embedding_model"] = self.embedding_model
        if "concept_similarity" in names:
            out["concept_pipeline"] = self.concept_pipeline
            out["concept_reduction"] = self.concept_reduction
        if "llm_inclusion" in names:
            judge = self.inclusion_settings()
            out["inclusion_judge"] = {
                "model": judge.llm.model,
                "endpoints": list(judge.llm.endpoints),
                "prompt": f"{INCLUSION_PROMPT.name} ({INCLUSION_PROMPT.version})",
                "failure_policy": judge.failure_policy,
            }
        return out


class OwcContext:
    """The tools the metrics share during one report, each made on first use (the embedding model
    is loaded once for both similarity metrics, and its vectors are reused)."""

    def __init__(self, settings: OwcSettings | None = None):
        self.settings = settings or OwcSettings()
        self._encoder = None
        self._concepts = None
        self.inclusion_failed = 0

    @property
    def encoder(self):
        if self._encoder is None:
            from speciarl_verl.evaluation.sentence_embeddings import SentenceEncoder

            s = self.settings
            self._encoder = SentenceEncoder(s.embedding_model, s.embedding_batch_size, s.embedding_device)
        return self._encoder

    @property
    def concepts(self):
        if self._concepts is None:
            from speciarl_verl.evaluation.noun_concepts import ConceptExtractor

            self._concepts = ConceptExtractor(self.settings.concept_pipeline)
        return self._concepts


def _whitespace_folded(text: str) -> str:
    return " ".join(text.split())


@register_answer_metric(
    "exact_match",
    "EM",
    "1 when the answer equals the ground truth after label normalisation (case, accents, dashes, "
    "underscores, punctuation folded), else 0",
)
def exact_match(pairs: Sequence[Pair], context: OwcContext | None = None) -> list[float]:
    """Exact match after label normalisation, per ``(ground_truth, answer)`` pair.

    >>> exact_match([("Black-footed Albatross", "black footed albatross"), ("couch", "sofa")])
    [1.0, 0.0]
    """
    return [float(normalize_label(gt) == normalize_label(pred)) for gt, pred in pairs]


@register_answer_metric(
    "text_inclusion",
    "TI",
    "1 when the ground truth is a substring of the answer, both after the label normalisation of EM "
    "(case, accents, dashes, underscores, punctuation folded), else 0",
)
def text_inclusion(pairs: Sequence[Pair], context: OwcContext | None = None) -> list[float]:
    """Ground truth inside the answer, both folded by ``normalize_label`` as in :func:`exact_match`,
    per ``(ground_truth, answer)`` pair. A ground truth that folds to nothing is included only in an
    answer that does too (as ``exact_match`` scores it), so TI is never below EM.

    >>> text_inclusion([("can", "Trash can"), ("couch", "sofa"), ("Laysan Albatross", "a laysan albatross")])
    [1.0, 0.0, 1.0]
    >>> text_inclusion([("Black-footed Albatross", "black footed albatross seen from below")])
    [1.0]
    """
    scores = []
    for gt, pred in pairs:
        truth, answer = normalize_label(gt), normalize_label(pred)
        scores.append(float(truth in answer if truth else truth == answer))
    return scores


@register_answer_metric(
    "llm_inclusion",
    "LI",
    "1 when the LLM inclusion judge (temperature 0, replies constrained to 1/0) says the answer names the "
    "ground-truth class, a synonym, a finer kind or a correct broader class, else 0",
)
def llm_inclusion(pairs: Sequence[Pair], context: OwcContext) -> list[float | None]:
    from speciarl_verl.evaluation.llm_inclusion import LLMInclusionJudge

    async def run() -> list[float | None]:
        judge = LLMInclusionJudge(context.settings.inclusion_settings())
        try:
            return await judge.score(list(pairs))
        finally:
            context.inclusion_failed += judge.failed
            await judge.aclose()

    return asyncio.run(run()) if pairs else []


@register_answer_metric(
    "semantic_similarity",
    "SS",
    "cosine between the L2-normalised mean-pooled sentence embeddings of the answer and of the ground truth",
)
def semantic_similarity(pairs: Sequence[Pair], context: OwcContext) -> list[float]:
    if not pairs:
        return []
    truths = context.encoder.embed([_whitespace_folded(gt) for gt, _ in pairs])
    answers = context.encoder.embed([_whitespace_folded(pred) for _, pred in pairs])
    # float32 rounding can put a unit vector's cosine with itself a hair above 1
    return np.clip(np.einsum("ij,ij->i", truths, answers), -1.0, 1.0).astype(float).tolist()


@register_answer_metric(
    "concept_similarity",
    "CS",
    "the same cosine between the ground truth and each noun-phrase concept of the answer (articles, numbers, "
    "'image'/'photo'-like words left out; the whole answer when it has no concept), reduced by the concept "
    "reduction",
)
def concept_similarity(pairs: Sequence[Pair], context: OwcContext) -> list[float]:
    if not pairs:
        return []
    reduce = CONCEPT_REDUCTIONS[context.settings.concept_reduction]
    found = context.concepts.concepts_or_whole([pred for _, pred in pairs])
    flat = [c for concepts in found for c in concepts]
    vectors = context.encoder.embed(flat)
    truths = context.encoder.embed([_whitespace_folded(gt) for gt, _ in pairs])
    out: list[float] = []
    start = 0
    for row, concepts in enumerate(found):
        block = vectors[start : start + len(concepts)]
        out.append(reduce(np.clip(block @ truths[row], -1.0, 1.0)))
        start += len(concepts)
    return out


def score_verdicts(
    verdicts: Sequence[VerdictRecord],
    names: Sequence[str],
    context: OwcContext,
    where: str = "verdicts",
) -> dict[tuple[str, int], dict[str, float | None]]:
    """Every answer's score on each metric in ``names``, by ``(sample_id, prediction_index)``.

    Reads ``ground_truth`` and ``answer`` from the verdict rows (``speciarl eval judge`` writes both);
    a row without its ground truth is an error naming ``where``. Unparseable answers score 0.

    >>> v = VerdictRecord("a", "cub200", 0, None, ground_truth="Laysan Albatross", answer="laysan albatross")
    >>> score_verdicts([v], ["exact_match", "text_inclusion"], OwcContext())
    {('a', 0): {'exact_match': 1.0, 'text_inclusion': 1.0}}
    """
    metrics = [get_answer_metric(n) for n in names]
    for v in verdicts:
        if v.ground_truth is None:
            raise ValueError(
                f"{where}: sample {v.sample_id!r} answer {v.prediction_index} has no 'ground_truth'; the open-world "
                "metrics need the ground truth and the parsed answer in each verdict row (speciarl eval judge "
                "writes both)"
            )
    parsed = [v for v in verdicts if v.answer is not None]
    pairs = [(str(v.ground_truth), str(v.answer)) for v in parsed]
    scores: dict[tuple[str, int], dict[str, float | None]] = {v.key: dict.fromkeys(names, 0.0) for v in verdicts}
    for metric in metrics:
        values = list(metric.score(pairs, context))
        if len(values) != len(pairs):
            raise RuntimeError(f"answer metric {metric.name!r} returned {len(values)} scores for {len(pairs)} answers")
        for verdict, value in zip(parsed, values, strict=True):
            scores[verdict.key][metric.name] = None if value is None else float(value)
    return scores
