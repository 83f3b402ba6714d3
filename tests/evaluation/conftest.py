"""Helpers for the evaluator tests: verdict rows and small files built in tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speciarl_verl.core.categories import Category
from speciarl_verl.evaluation.records import VerdictRecord


def make_verdicts(
    data_source: str, images: list[list[str | None]], prefix: str = "", judge: str = "offline"
) -> list[VerdictRecord]:
    """One verdict per answer: ``images[i][j]`` is answer j of image i (a wire label, ``"undecided"``,
    or None for an unparseable answer), written as ``speciarl eval judge`` writes it."""
    out = []
    for i, answers in enumerate(images):
        for j, label in enumerate(answers):
            if label is None:
                category, source, reason = None, "unparseable", "unparseable"
            elif label == "undecided":
                category, source, reason = None, "offline", "undecided"
            else:
                category, source, reason = Category(label), "offline", None
            out.append(
                VerdictRecord(
                    sample_id=f"{prefix}{data_source}/{i}",
                    data_source=data_source,
                    prediction_index=j,
                    category=category,
                    source=source,
                    judge=judge,
                    reason=reason,
                )
            )
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def verdict_factory():
    return make_verdicts


@pytest.fixture
def jsonl_writer():
    return write_jsonl


@pytest.fixture
def restore_aggregations():
    """Lets a test register aggregations; the registry is put back afterwards."""
    from speciarl_verl.evaluation import metrics

    saved = dict(metrics._AGGREGATIONS)
    yield
    metrics._AGGREGATIONS.clear()
    metrics._AGGREGATIONS.update(saved)
