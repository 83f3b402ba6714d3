"""Turn verdict files into the numbers of a report (``report.json``).

For each run (one verdicts file) and each data source:

* ``n`` answers, ``images``, ``answers_per_image`` ([min, max]);
* ``counts``: the raw category histogram over all answers, ``undecided`` (answers no
  judge decided: the offline rule tier had no rule for them) and ``unparseable``
  included, always kept, so any other definition can be recomputed;
* ``undecided``: how many answers are undecided, and ``scored``: the answers and images
  the metrics are computed over. By default (``ReportSettings.undecided = "exclude"``)
  undecided answers are left out, so a metric is over what a judge decided, never a guess;
  ``undecided = "wrong"`` (or another category) counts them as that category instead;
* every registered aggregation (``correctness``, ``specificity``, ``hm``, the method's average
  score ``method_score`` of :mod:`.method_score`, ...) of the histogram of the source's scored
  answers, pooled over its images: each scored answer counts once, so an image with 4 scored
  answers weighs four times one with 1 (the definitions' "answers in the correct set / scored
  answers");
* ``ci``: percentile bootstrap interval of each aggregation: resample images, pool the
  scored answers of the resampled images, aggregate (a ratio estimator);
* ``best_of_n`` (when some image has several answers): for k = 1, 2, 4, ..., N (N the most
  answers an image has), the aggregations of the expected best-of-k histogram pooled over
  the images with at least k scored answers, each weighing n / k (n its scored answers), and
  their number (``images``; the values are ``None`` at a k no image reaches): k = 1 gives the
  plain metrics, k = N one best answer per image (see :mod:`.pass_at_k`).

Each run also states the judge(s) that wrote its verdicts (``judges``: the verdict rows'
``judge`` with their counts) and its total ``undecided`` count.

Parse modes: ``parse_modes`` counts the verdict rows by the mode that turned their response into
the answer the metrics use (``given`` when the predictions file gave the answer, or the verdicts
predate parse modes). ``unparseable_rate``, per source and for the whole run, is the share of
answers whose raw response gives no label under each mode (``first`` and ``strict``), over the
``answers`` whose verdict row carries that (``speciarl eval judge`` writes it when the prediction has
a response); a rate is ``None`` when no row carries it.

With answer metrics (the open-world metrics of :mod:`.owc_metrics`, ``ReportSettings.answer_metrics``),
each source also gets every such metric's image-weighted mean over all answers (undecided ones
included: these metrics do not use the category judge), its ``ci``, and ``unscored`` (answers
without a score, e.g. an LLM call that failed under ``failure_policy=skip``) when any.

``ood_mean`` averages over the out-of-domain sources (all sources except the
training domains): every aggregation is the plain mean over those sources,
except ``hm``, which is the harmonic mean of the averaged correctness and the
averaged specificity (0.742 and 0.846 give 0.7906; the paper prints 0.790). Its interval resamples each
source's images separately. Its ``best_of_n`` averages, at each k, the out-of-domain sources that
have a value there, and names them (``sources``) with their images (``images``).

Training domains given explicitly must each be a data source of some run (names match exactly):
a misspelt one would otherwise be averaged into the out-of-domain mean without a word.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speciarl_verl.core.answer_parsing import PARSE_MODES
from speciarl_verl.evaluation.bootstrap import percentile_interval, resampled_histograms
from speciarl_verl.evaluation.metrics import (
    EXCLUDE,
    HISTOGRAM_KEYS,
    SCORED_KEYS,
    UNDECIDED,
    CategorySets,
    aggregate_all,
    aggregation_names,
    apply_undecided,
    get_item_metric,
    harmonic_mean,
    histogram,
    undecided_policy,
)
from speciarl_verl.evaluation.owc_metrics import get_answer_metric
from speciarl_verl.evaluation.pass_at_k import k_values, pooled_best_of_k
from speciarl_verl.evaluation.records import VerdictRecord
from speciarl_verl.evaluation.report_definitions import GIVEN, metric_definitions

__all__ = [
    "DEFAULT_TRAIN_DOMAINS",
    "GIVEN",
    "ReportSettings",
    "RunVerdicts",
    "build_report",
    "metric_definitions",
    "unparseable_rates",
]

#: The training domain when none is given (the paper trains on CUB-200).
DEFAULT_TRAIN_DOMAINS: tuple[str, ...] = ("cub200",)


@dataclass(frozen=True)
class ReportSettings:
    """How a report is computed.

    ``train_domains``: data sources the model was trained on; every other source
    is out of domain. Given ones (``()`` for none) must each be a data source of the report,
    matched exactly, case included: :func:`build_report` refuses any other. ``None`` (the
    default) means :data:`DEFAULT_TRAIN_DOMAINS` where the report has it, unchecked, so a
    report of other sources alone needs no setting. ``undecided``: ``exclude`` (answers no judge
    decided are left out of the metrics) or a category label to count them as (``wrong``).
    ``replicates = 0`` turns the bootstrap off. ``answer_metrics``: registered answer metrics
    to report besides the category metrics (each run then carries their scores,
    :attr:`RunVerdicts.answer_scores`); ``answer_metric_settings``: what they ran with, copied
    into ``report.json``.

    >>> ReportSettings(undecided="Wrong", replicates=0).undecided
    'wrong'
    >>> ReportSettings().train_domains, ReportSettings().train_domains_given
    (('cub200',), False)
    >>> ReportSettings(train_domains="food101").train_domains
    ('food101',)
    """

    train_domains: tuple[str, ...] | None = None
    sets: CategorySets = field(default_factory=CategorySets)
    item_metric: str = "category"
    replicates: int = 1000
    confidence: float = 0.95
    seed: int = 0
    undecided: str = EXCLUDE
    answer_metrics: tuple[str, ...] = ()
    answer_metric_settings: Mapping[str, Any] | None = None
    #: Whether ``train_domains`` was given (and is checked against the report's data sources).
    train_domains_given: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        domains = self.train_domains
        object.__setattr__(self, "train_domains_given", domains is not None)
        if domains is None:
            domains = DEFAULT_TRAIN_DOMAINS
        elif isinstance(domains, str):
            domains = (domains,)
        object.__setattr__(self, "train_domains", tuple(domains))
        object.__setattr__(self, "undecided", undecided_policy(self.undecided))
        object.__setattr__(self, "answer_metrics", tuple(self.answer_metrics))
        clash = set(self.answer_metrics) & set(aggregation_names())
        if clash:
            raise ValueError(f"answer metric(s) {sorted(clash)} share a name with a category aggregation")
        for name in self.answer_metrics:
            get_answer_metric(name)
        if self.replicates < 0:
            raise ValueError(f"replicates must be >= 0, got {self.replicates}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        get_item_metric(self.item_metric)


@dataclass(frozen=True)
class RunVerdicts:
    """One run to report: a name, its verdicts and, for answer metrics, each answer's scores
    (``(sample_id, prediction_index)`` -> metric -> score, ``None`` for no score;
    :func:`~speciarl_verl.evaluation.owc_metrics.score_verdicts` computes them)."""

    name: str
    verdicts: Sequence[VerdictRecord]
    source_file: str | None = None
    answer_scores: Mapping[tuple[str, int], Mapping[str, float | None]] | None = None


def build_report(runs: Sequence[RunVerdicts], settings: ReportSettings | None = None) -> dict[str, Any]:
    """The full report as a JSON-ready dict: settings, definitions and one block per run."""
    settings = settings or ReportSettings()
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    if not runs:
        raise ValueError("no runs to report")
    if settings.train_domains_given:
        _check_train_domains(settings.train_domains, {v.data_source for run in runs for v in run.verdicts})
    return {
        "settings": {
            "train_domains": list(settings.train_domains),
            "item_metric": settings.item_metric,
            "bootstrap_replicates": settings.replicates,
            "confidence": settings.confidence,
            "seed": settings.seed,
            "undecided": settings.undecided,
            **_answer_settings(settings),
        },
        "definitions": metric_definitions(settings.sets, settings.undecided, settings.answer_metrics),
        "aggregations": aggregation_names(),
        "answer_metrics": list(settings.answer_metrics),
        "runs": {run.name: _run_block(run, settings) for run in runs},
    }


def _check_train_domains(domains: Sequence[str], sources: set[str]) -> None:
    """Refuse a training domain that is no data source of the report, in one line naming its sources.

    >>> _check_train_domains(["CUB200"], {"cub200", "food101"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: training domain 'CUB200' ... cub200, food101 (names match exactly; did you mean 'cub200'?)
    """
    for domain in domains:
        if domain in sources:
            continue
        near = sorted(s for s in sources if s.lower() == domain.lower() or domain.lower() in s.lower())
        hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
        raise ValueError(
            f"training domain {domain!r} (--train-domain) is not a data source of the verdicts; their sources: "
            f"{', '.join(sorted(sources)) or '(none)'} (names match exactly{hint})"
        )


def _answer_settings(settings: ReportSettings) -> dict[str, Any]:
    if not settings.answer_metrics:
        return {}
    described = dict(settings.answer_metric_settings or {})
    described["metrics"] = list(settings.answer_metrics)
    return {"answer_metrics": described}


def _check_answer_scores(run: RunVerdicts, names: Sequence[str]) -> None:
    if not names:
        return
    scores = run.answer_scores
    if scores is None:
        raise ValueError(
            f"run {run.name!r} has no answer scores for {list(names)}; compute them with "
            "speciarl_verl.evaluation.owc_metrics.score_verdicts"
        )
    for verdict in run.verdicts:
        row = scores.get(verdict.key)
        missing = [n for n in names if row is None or n not in row]
        if missing:
            raise ValueError(
                f"run {run.name!r}: sample {verdict.sample_id!r} answer {verdict.prediction_index} has no "
                f"score for {missing}"
            )


def _run_block(run: RunVerdicts, settings: ReportSettings) -> dict[str, Any]:
    if not run.verdicts:
        raise ValueError(f"run {run.name!r} ({run.source_file}) has no verdicts")
    _check_answer_scores(run, settings.answer_metrics)
    item_metric = get_item_metric(settings.item_metric)
    by_source: dict[str, dict[str, list[VerdictRecord]]] = defaultdict(lambda: defaultdict(list))
    for verdict in run.verdicts:
        by_source[verdict.data_source][verdict.sample_id].append(verdict)
    per_source: dict[str, dict[str, Any]] = {}
    draws: dict[str, dict[str, np.ndarray]] = {}
    for source in sorted(by_source):
        images = [sorted(rows, key=lambda v: v.prediction_index) for rows in by_source[source].values()]
        values = [[str(item_metric(v)) for v in rows] for rows in images]
        # One stream per source, so a source's intervals do not depend on which other sources the file has.
        rng = np.random.default_rng([settings.seed, zlib.crc32(source.encode("utf-8"))])
        block, draws[source] = _source_block(source, images, values, settings, rng)
        if settings.answer_metrics:
            assert run.answer_scores is not None  # checked above
            # A stream of its own, so adding answer metrics leaves the category intervals as they were.
            answer_rng = np.random.default_rng([settings.seed, zlib.crc32(source.encode("utf-8")), 1])
            answers, answer_draws = _answer_block(images, run.answer_scores, settings, answer_rng)
            _merge_answer_block(block, answers)
            draws[source].update(answer_draws)
        per_source[source] = block
    ood_sources = [s for s in per_source if s not in settings.train_domains]
    judges = Counter(v.judge or "unknown" for v in run.verdicts)
    modes = Counter(v.parse_mode or GIVEN for v in run.verdicts)
    return {
        "source_file": run.source_file,
        "judges": dict(sorted(judges.items(), key=lambda item: (-item[1], item[0]))),
        "parse_modes": dict(sorted(modes.items(), key=lambda item: (-item[1], item[0]))),
        "unparseable_rate": unparseable_rates(run.verdicts),
        "undecided": sum(block["undecided"] for block in per_source.values()),
        "per_source": per_source,
        "ood_mean": _ood_block(ood_sources, per_source, draws, settings),
    }


def unparseable_rates(verdicts: Iterable[VerdictRecord]) -> dict[str, Any]:
    """Under each parse mode, the share of ``verdicts`` whose response gives no label, and in
    ``counts`` how many; ``answers``: how many rows record it (``None`` rates when none does).

    >>> rows = [VerdictRecord("a", "cub200", i, None, parseable={"first": i > 0, "strict": i > 1}) for i in range(4)]
    >>> unparseable_rates(rows)
    {'answers': 4, 'first': 0.25, 'strict': 0.5, 'counts': {'first': 1, 'strict': 2}}
    """
    flags = [v.parseable for v in verdicts if v.parseable is not None]
    out: dict[str, Any] = {"answers": len(flags)}
    counts: dict[str, int] = {}
    for mode in PARSE_MODES:
        known = [row[mode] for row in flags if mode in row]
        counts[mode] = sum(not parses for parses in known)
        out[mode] = counts[mode] / len(known) if known else None
    out["counts"] = counts
    return out


def _keys_for(values: Iterable[Iterable[str]]) -> list[str]:
    extra = sorted({v for rows in values for v in rows} - set(HISTOGRAM_KEYS))
    return [*HISTOGRAM_KEYS, *extra]


def _scored(source: str, values: list[list[str]], policy: str) -> list[list[str]]:
    """Each image's values after the undecided policy; images with nothing left drop out."""
    scored = [kept for kept in (apply_undecided(rows, policy) for rows in values) if kept]
    if not scored:
        raise ValueError(
            f"every answer of {source!r} is undecided (the offline rule tier had no rule for any of them): judge "
            "them with `speciarl eval judge --judge llm` (or auto), or count them with `--undecided wrong`"
        )
    return scored


def _counts(values: Sequence[str], keys: Sequence[str]) -> list[float]:
    """One image's row of the pooled histogram: how many of its scored answers fall under each key."""
    counts = histogram(values)
    return [counts.get(key, 0.0) for key in keys]


def _aggregate_rows(rows: np.ndarray, keys: Sequence[str], sets: CategorySets) -> dict[str, np.ndarray]:
    results = [aggregate_all(dict(zip(keys, row, strict=True)), sets) for row in rows]
    return {name: np.array([r[name] for r in results]) for name in aggregation_names()}


def _intervals(samples: Mapping[str, np.ndarray], confidence: float) -> dict[str, list[float]]:
    return {name: list(percentile_interval(values, confidence)) for name, values in samples.items()}


def _source_block(
    source: str,
    images: list[list[VerdictRecord]],
    values: list[list[str]],
    settings: ReportSettings,
    rng: np.random.Generator,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    sizes = [len(v) for v in values]
    counts = {key: int(count) for key, count in histogram(v for rows in values for v in rows).items()}
    scored = _scored(source, values, settings.undecided)
    keys = _keys_for(scored)
    scored_sizes = [len(v) for v in scored]
    # Counts, not shares: the column sums are the source's pooled histogram, and the bootstrap's sums
    # over resampled rows are the pooled histograms of the resampled images.
    per_image = np.array([_counts(v, keys) for v in scored])
    pooled = dict(zip(keys, per_image.sum(axis=0), strict=True))
    block: dict[str, Any] = {
        "n": sum(sizes),
        "images": len(values),
        "answers_per_image": [min(sizes), max(sizes)],
        "counts": counts,
        "undecided": counts[UNDECIDED],
        "scored": {"answers": sum(scored_sizes), "images": len(scored)},
        "verdict_sources": dict(Counter(str(v.source) for rows in images for v in rows).most_common()),
        "unparseable_rate": unparseable_rates(v for rows in images for v in rows),
        **aggregate_all(pooled, settings.sets),
    }
    draws: dict[str, np.ndarray] = {}
    if settings.replicates:
        draws = _aggregate_rows(resampled_histograms(per_image, settings.replicates, rng), keys, settings.sets)
        block["ci"] = _intervals(draws, settings.confidence)
    if max(sizes) > 1 and set(keys) <= set(HISTOGRAM_KEYS):
        block["best_of_n"] = _best_of_n_block(scored, max(sizes), settings, rng)
    return block, draws


def _best_of_n_block(
    values: list[list[str]], n: int, settings: ReportSettings, rng: np.random.Generator
) -> dict[str, Any]:
    """Best of k for k up to ``n`` (the most answers an image has), each k over the images with k
    scored answers; ``None`` values where no image has them."""
    ks = k_values(n)
    names = aggregation_names()
    rows = {k: pooled_best_of_k(values, k) for k in ks}
    block: dict[str, Any] = {"k": ks, "images": [len(rows[k]) for k in ks], **{name: [] for name in names}}
    for k in ks:
        result = aggregate_all(dict(zip(SCORED_KEYS, rows[k].sum(axis=0), strict=True)), settings.sets)
        for name in names:
            block[name].append(result[name] if len(rows[k]) else None)
    block["counts_at_n"] = {key: float(v) for key, v in zip(SCORED_KEYS, rows[n].sum(axis=0), strict=True)}
    if settings.replicates and len(rows[n]):
        draws = _aggregate_rows(resampled_histograms(rows[n], settings.replicates, rng), SCORED_KEYS, settings.sets)
        block["ci_at_n"] = _intervals(draws, settings.confidence)
    return block


def _answer_block(
    images: Sequence[Sequence[VerdictRecord]],
    scores: Mapping[tuple[str, int], Mapping[str, float | None]],
    settings: ReportSettings,
    rng: np.random.Generator,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Image-weighted means of the answer metrics and their bootstrap draws.

    Per image and metric: the mean of its scored answers, and a weight of 1 (0 when none of its
    answers has a score). Resampling the rows of ``[weight * mean, weight]`` and dividing the
    sums gives the replicated means, with the same image draws for every metric.
    """
    names = settings.answer_metrics
    table = np.zeros((len(images), 2 * len(names)))
    unscored = dict.fromkeys(names, 0)
    for i, rows in enumerate(images):
        for j, name in enumerate(names):
            values = [scores[v.key][name] for v in rows]
            kept = [float(x) for x in values if x is not None]
            unscored[name] += len(values) - len(kept)
            if kept:
                table[i, j], table[i, len(names) + j] = float(np.mean(kept)), 1.0
    sums, weights = table[:, : len(names)].sum(axis=0), table[:, len(names) :].sum(axis=0)
    block: dict[str, Any] = {
        name: (float(sums[j] / weights[j]) if weights[j] else None) for j, name in enumerate(names)
    }
    draws: dict[str, np.ndarray] = {}
    if settings.replicates:
        resampled = resampled_histograms(table, settings.replicates, rng)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = resampled[:, : len(names)] / resampled[:, len(names) :]
        draws = {name: means[:, j] for j, name in enumerate(names)}
        block["ci"] = {
            name: list(percentile_interval(d[np.isfinite(d)], settings.confidence))
            for name, d in draws.items()
            if np.isfinite(d).any()
        }
    if any(unscored.values()):
        block["unscored"] = {name: count for name, count in unscored.items() if count}
    return block, draws


def _merge_answer_block(block: dict[str, Any], answers: Mapping[str, Any]) -> None:
    for key, value in answers.items():
        if key == "ci":
            block.setdefault("ci", {}).update(value)
        else:
            block[key] = value


def _macro(values: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Mean of every aggregation over sources; hm from the means of correctness and specificity."""
    out = {name: np.mean(np.asarray(per_source, dtype=float), axis=0) for name, per_source in values.items()}
    if "hm" in out and "correctness" in out and "specificity" in out:
        out["hm"] = np.vectorize(harmonic_mean)(out["correctness"], out["specificity"])
    return out


def _ood_block(
    sources: list[str],
    per_source: Mapping[str, Mapping[str, Any]],
    draws: Mapping[str, Mapping[str, np.ndarray]],
    settings: ReportSettings,
) -> dict[str, Any] | None:
    if not sources:
        return None
    names = aggregation_names()
    means = _macro({name: [per_source[s][name] for s in sources] for name in names})
    block: dict[str, Any] = {"sources": sources, **{name: float(means[name]) for name in names}}
    if settings.replicates:
        replicated = _macro({name: [draws[s][name] for s in sources] for name in names})
        block["ci"] = _intervals(replicated, settings.confidence)
    for name in settings.answer_metrics:
        values = [per_source[s][name] for s in sources]
        block[name] = None if any(v is None for v in values) else float(np.mean(values))
        if settings.replicates and block[name] is not None:
            stacked = np.mean([draws[s][name] for s in sources], axis=0)
            finite = stacked[np.isfinite(stacked)]
            if finite.size:
                block.setdefault("ci", {})[name] = list(percentile_interval(finite, settings.confidence))
    bon = _ood_best_of_n({s: per_source[s]["best_of_n"] for s in sources if "best_of_n" in per_source[s]}, names)
    if bon is not None:
        block["best_of_n"] = bon
    return block


def _ood_best_of_n(blocks: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any] | None:
    """At each k any out-of-domain source reports, the mean over the sources with a value there, with
    those sources (``sources``) and their images (``images``); ``None`` values where none has one."""
    if not blocks:
        return None
    ks = sorted({k for b in blocks.values() for k in b["k"]})
    out: dict[str, Any] = {"k": ks, "sources": [], "images": [], **{name: [] for name in names}}
    for k in ks:
        present = {s: b["k"].index(k) for s, b in blocks.items() if k in b["k"] and b["images"][b["k"].index(k)]}
        out["sources"].append(sorted(present))
        out["images"].append(sum(blocks[s]["images"][i] for s, i in present.items()))
        means = _macro({name: [blocks[s][name][i] for s, i in present.items()] for name in names}) if present else {}
        for name in names:
            out[name].append(float(means[name]) if present else None)
    return out
