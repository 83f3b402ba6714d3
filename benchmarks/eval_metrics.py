"""Throughput of the embedding-based open-world metrics (semantic and concept similarity) on the CPU.

Builds 10,000 predictions over the shipped class lists of the six benchmarks (one ground truth per
prediction, drawn over ~730 classes), shaped like a model's answers: the class itself, a sibling
class, a coarser word, an abstention, or a short sentence around a class name (most of which are
distinct strings). Then scores them with ``semantic_similarity`` and ``concept_similarity`` through
:func:`speciarl_verl.evaluation.owc_metrics.score_verdicts`, as ``speciarl eval report --metrics owc``
does, with a fresh :class:`OwcContext` (so every text is embedded, once); loading the model and the
spaCy pipeline is done before the clock starts and reported apart.

Default model: the tiny random sentence-transformers model of the tests (built here, offline);
``--embedding-model`` names another (``sentence-transformers/all-MiniLM-L6-v2`` needs the hub or a
local copy). ``--torch-threads`` (default 1) sets torch's intra-op threads: the tiny model's
matrices are too small to share out, and on a shared 2-core machine a second thread spins against
the other processes (5,000 texts took 18 s with 2 threads and 1.5 s with 1 at load 4.4). The last
line is exactly ``RESULT predictions_per_s=<x>``.

    python benchmarks/eval_metrics.py
    python benchmarks/eval_metrics.py --embedding-model /models/all-MiniLM-L6-v2 --predictions 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib import resources

import numpy as np

_LISTS = ("cub200", "fgvc_aircraft_variants", "flowers102", "food101", "oxford_pets", "stanford_cars")
_COARSE = ("bird", "airplane", "flower", "dish", "dog", "cat", "car", "albatross", "sedan", "jet")
_OPENERS = ("a photo of a", "this is a", "the image shows a", "I think it is a", "a close-up of a", "probably a")
_TAILS = ("", "", "in flight", "on a plate", "next to a tree", "at the airport", "on the grass", "2 of them")


def class_names() -> list[str]:
    names = []
    for name in _LISTS:
        text = resources.files("speciarl_verl.data").joinpath("classnames", f"{name}.txt").read_text("utf-8")
        for line in text.splitlines():
            label = line.strip().split(".", 1)[-1] if name == "cub200" else line.strip()
            if label:
                names.append(label.replace("_", " "))
    return names


def synthetic_predictions(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (ground truth, answer) pairs; about half the answers are sentences."""
    rng = np.random.default_rng(seed)
    names = class_names()
    pairs = []
    for _ in range(count):
        truth = names[rng.integers(len(names))]
        kind = rng.random()
        if kind < 0.25:
            answer = truth
        elif kind < 0.40:
            answer = names[rng.integers(len(names))]
        elif kind < 0.50:
            answer = _COARSE[rng.integers(len(_COARSE))]
        elif kind < 0.53:
            answer = "None"
        else:
            subject = truth if rng.random() < 0.6 else names[rng.integers(len(names))]
            answer = f"{_OPENERS[rng.integers(len(_OPENERS))]} {subject} {_TAILS[rng.integers(len(_TAILS))]}".strip()
        pairs.append((truth, answer))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--embedding-model", help="sentence-transformers name or folder (default: tiny random model)")
    parser.add_argument("--concept-pipeline", default="rules")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    args = parser.parse_args()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    from speciarl_verl.evaluation.owc_metrics import OwcContext, OwcSettings, score_verdicts
    from speciarl_verl.evaluation.records import VerdictRecord

    with tempfile.TemporaryDirectory() as tmp:
        model = args.embedding_model
        if model is None:
            from speciarl_verl.offline_fixtures.tiny_sentence_encoder import build_tiny_sentence_encoder

            model = str(build_tiny_sentence_encoder(tmp, corpus=class_names()))
        pairs = synthetic_predictions(args.predictions)
        verdicts = [
            VerdictRecord(f"s{i}", "bench", 0, None, ground_truth=truth, answer=answer, reason="undecided")
            for i, (truth, answer) in enumerate(pairs)
        ]
        settings = OwcSettings(
            embedding_model=model,
            embedding_batch_size=args.batch_size,
            embedding_device="cpu",
            concept_pipeline=args.concept_pipeline,
        )
        names = ["semantic_similarity", "concept_similarity"]
        started = time.perf_counter()
        context = OwcContext(settings)
        score_verdicts(verdicts[:8], names, context)  # loads the model and the pipeline
        load_s = time.perf_counter() - started
        context.encoder.forget()  # nothing embedded or parsed yet when the clock starts
        context.concepts.forget()
        started = time.perf_counter()
        scores = score_verdicts(verdicts, names, context)
        elapsed = time.perf_counter() - started

    distinct_answers = len({a for _, a in pairs})
    distinct_truths = len({t for t, _ in pairs})
    semantic = np.array([s["semantic_similarity"] for s in scores.values()])
    print(f"model: {args.embedding_model or 'tiny random sentence-transformers model (test stand-in)'}")
    print(f"predictions: {len(pairs)} ({distinct_answers} distinct answers, {distinct_truths} distinct ground truths)")
    print(f"torch threads: {args.torch_threads or 'default'}; embedding batch size {args.batch_size}")
    print(f"model + pipeline load: {load_s:.2f} s (not timed below)")
    print(f"semantic + concept similarity: {elapsed:.2f} s; mean semantic similarity {semantic.mean():.3f}")
    print(f"RESULT predictions_per_s={len(pairs) / elapsed:.0f}")


if __name__ == "__main__":
    main()
