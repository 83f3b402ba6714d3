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
* every registered aggregation (``correctness``, ``specificity``, ``hm``, ...)
  of the image-weighted histogram of the scored answers: each image contributes the
  shares of its answers, so with one answer per image (greedy) or a fixed number per
  image, this is the share over all answers;
* ``ci``: percentile bootstrap interval of each aggregation, resampling images;
* ``best_of_n`` (when every image has several scored answers): the aggregations of the
  expected best-of-k histogram for k = 1, 2, 4, ..., N, N the fewest scored answers of an
  image (see :mod:`.pass_at_k`).

Each run also states the judge(s) that wrote its verdicts (``judges``: the verdict rows'
``judge`` with their counts) and its total ``undecided`` count.

``ood_mean`` averages over the out-of-domain sources (all sources except the
training domains): every aggregation is the plain mean over those sources,
except ``hm``, which is the harmonic mean of the averaged correctness and the
averaged specificity (0.742 and 0.846 give 0.7906; the paper prints 0.790). Its interval resamples each
source's images separately.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
from speciarl_verl.evaluation.pass_at_k import best_of_k_matrix, k_values
from speciarl_verl.evaluation.records import VerdictRecord

__all__ = ["ReportSettings", "RunVerdicts", "build_report", "metric_definitions"]


@dataclass(frozen=True)
class ReportSettings:
    """How a report is computed.

    ``train_domains``: data sources the model was trained on; every other source
    is out of domain. ``undecided``: ``exclude`` (answers no judge decided are left out of
    the metrics) or a category label to count them as (``wrong``). ``replicates = 0`` turns
    the bootstrap off.

    >>> ReportSettings(undecided="Wrong", replicates=0).undecided
    'wrong'
    """

    train_domains: tuple[str, ...] = ("cub200",)
    sets: CategorySets = field(default_factory=CategorySets)
    item_metric: str = "category"
    replicates: int = 1000
    confidence: float = 0.95
    seed: int = 0
    undecided: str = EXCLUDE

    def __post_init__(self) -> None:
        object.__setattr__(self, "undecided", undecided_policy(self.undecided))
        if self.replicates < 0:
            raise ValueError(f"replicates must be >= 0, got {self.replicates}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        get_item_metric(self.item_metric)


@dataclass(frozen=True)
class RunVerdicts:
    """One run to report: a name and its verdicts."""

    name: str
    verdicts: Sequence[VerdictRecord]
    source_file: str | None = None


def metric_definitions(sets: CategorySets, undecided: str = EXCLUDE) -> dict[str, Any]:
    """The definitions in force, written into the report."""
    if undecided == EXCLUDE:
        scored = "undecided answers (no judge decided them) are left out of every metric; their count is reported"
    else:
        scored = f"undecided answers (no judge decided them) are counted as {undecided!r}; their count is reported"
    return {
        **sets.describe(),
        "undecided": scored,
        "correctness": "answers in the correct set / scored answers (abstain, wrong and unparseable are not correct)",
        "specificity": "answers in the specific set / answers in the correct set (0 when none is correct)",
        "hm": "2 * correctness * specificity / (correctness + specificity), 0 when both are 0",
        "weighting": "each image weighs the same: it contributes the shares of its own answers",
        "best_of_n": "expected histogram of the best of k scored answers per image under the evaluation order "
        "(more specific > specific > less specific > generic > abstain > wrong > unparseable), "
        "via the unbiased pass@k estimator; N is the fewest scored answers of an image; at k = N with every "
        "answer scored it is the best answer per image",
        "ood_mean": "mean over out-of-domain sources of each metric; hm = harmonic mean of the mean correctness "
        "and the mean specificity",
        "interval": "percentile bootstrap over images (per source; stratified by source for ood_mean)",
    }


def build_report(runs: Sequence[RunVerdicts], settings: ReportSettings | None = None) -> dict[str, Any]:
    """The full report as a JSON-ready dict: settings, definitions and one block per run."""
    settings = settings or ReportSettings()
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    if not runs:
        raise ValueError("no runs to report")
    return {
        "settings": {
            "train_domains": list(settings.train_domains),
            "item_metric": settings.item_metric,
            "bootstrap_replicates": settings.replicates,
            "confidence": settings.confidence,
            "seed": settings.seed,
            "undecided": settings.undecided,
        },
        "definitions": metric_definitions(settings.sets, settings.undecided),
        "aggregations": aggregation_names(),
        "runs": {run.name: _run_block(run, settings) for run in runs},
    }


def _run_block(run: RunVerdicts, settings: ReportSettings) -> dict[str, Any]:
    if not run.verdicts:
        raise ValueError(f"run {run.name!r} ({run.source_file}) has no verdicts")
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
        per_source[source] = block
    ood_sources = [s for s in per_source if s not in settings.train_domains]
    judges = Counter(v.judge or "unknown" for v in run.verdicts)
    return {
        "source_file": run.source_file,
        "judges": dict(sorted(judges.items(), key=lambda item: (-item[1], item[0]))),
        "undecided": sum(block["undecided"] for block in per_source.values()),
        "per_source": per_source,
        "ood_mean": _ood_block(ood_sources, per_source, draws, settings),
    }


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


def _shares(values: Sequence[str], keys: Sequence[str]) -> list[float]:
    counts = histogram(values)
    return [counts.get(key, 0.0) / len(values) for key in keys]


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
    per_image = np.array([_shares(v, keys) for v in scored])
    weighted = dict(zip(keys, per_image.sum(axis=0), strict=True))
    block: dict[str, Any] = {
        "n": sum(sizes),
        "images": len(values),
        "answers_per_image": [min(sizes), max(sizes)],
        "counts": counts,
        "undecided": counts[UNDECIDED],
        "scored": {"answers": sum(scored_sizes), "images": len(scored)},
        "verdict_sources": dict(Counter(str(v.source) for rows in images for v in rows).most_common()),
        **aggregate_all(weighted, settings.sets),
    }
    draws: dict[str, np.ndarray] = {}
    if settings.replicates:
        draws = _aggregate_rows(resampled_histograms(per_image, settings.replicates, rng), keys, settings.sets)
        block["ci"] = _intervals(draws, settings.confidence)
    if min(scored_sizes) > 1 and set(keys) <= set(HISTOGRAM_KEYS):
        block["best_of_n"] = _best_of_n_block(scored, min(scored_sizes), settings, rng)
    return block, draws


def _best_of_n_block(
    values: list[list[str]], n: int, settings: ReportSettings, rng: np.random.Generator
) -> dict[str, Any]:
    ks = k_values(n)
    rows = {k: best_of_k_matrix(values, k) for k in ks}
    results = [aggregate_all(dict(zip(SCORED_KEYS, rows[k].sum(axis=0), strict=True)), settings.sets) for k in ks]
    block: dict[str, Any] = {"k": ks, **{name: [r[name] for r in results] for name in aggregation_names()}}
    block["counts_at_n"] = {key: float(v) for key, v in zip(SCORED_KEYS, rows[n].sum(axis=0), strict=True)}
    if settings.replicates:
        draws = _aggregate_rows(resampled_histograms(rows[n], settings.replicates, rng), SCORED_KEYS, settings.sets)
        block["ci_at_n"] = _intervals(draws, settings.confidence)
    return block


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
    with_bon = [per_source[s].get("best_of_n") for s in sources]
    if all(with_bon):
        common = sorted(set.intersection(*(set(b["k"]) for b in with_bon)))
        picked = {
            name: [[b[name][b["k"].index(k)] for k in common] for b in with_bon] for name in names
        }  # name -> source -> k
        bon = _macro(picked)
        block["best_of_n"] = {"k": common, **{name: [float(x) for x in bon[name]] for name in names}}
    return block
