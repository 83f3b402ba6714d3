"""Pure helpers of benchmarks/miniature.py: verl's validation dump -> predictions, undecided check, table maths.

No training here: the rows are what verl's ``_write_generations`` writes (``input``, ``output``, ``gts``,
``score``, ``step``), the class fields come from a real synthetic shapes parquet row.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from speciarl_verl.core.categories import Category
from speciarl_verl.evaluation.judging import verification_request
from speciarl_verl.evaluation.records import PredictionRecord
from speciarl_verl.judge.offline import decide_offline

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "miniature.py"


@pytest.fixture(scope="module")
def miniature():
    spec = importlib.util.spec_from_file_location("miniature_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def classes():
    from speciarl_verl.data.adapters.synthetic_shapes import SPECIES, SyntheticShapesAdapter

    adapter = SyntheticShapesAdapter()
    return {
        s.name: {
            "parents": list(adapter.parents(s.class_name)),
            "parent_levels": ["close", "far"],
            "domain_nouns": list(adapter.domain_nouns),
            "synonyms": [],
        }
        for s in SPECIES
    }


def dump_row(truth: str, answer: str) -> dict:
    return {"input": "user ...", "output": f"<think>x</think><answer>{answer}</answer>", "gts": truth, "score": 0.0}


def test_dump_rows_become_judgeable_predictions_split_by_domain(miniature, classes):
    # two prompts (in-domain red circle, held-out yellow circle), two answers each, interleaved as verl repeats them
    rows = [
        dump_row("red circle", "red circle"),
        dump_row("red circle", "circle"),
        dump_row("yellow circle", "shape"),
        dump_row("yellow circle", "blue circle"),
    ]
    out = miniature.predictions_from_dump(rows, classes, val_n=2, prefix="speciarl_s0/step8")
    assert [(r["sample_id"], r["prediction_index"]) for r in out["test"]] == [
        ("speciarl_s0/step8/0", 0),
        ("speciarl_s0/step8/0", 1),
    ]
    assert [(r["sample_id"], r["ground_truth"]) for r in out["test_ood"]] == [
        ("speciarl_s0/step8/1", "yellow circle"),
        ("speciarl_s0/step8/1", "yellow circle"),
    ]
    # the rows load as the evaluator's predictions and the offline rule tier files them by the known hierarchy
    verdicts = []
    for split in ("test", "test_ood"):
        for i, row in enumerate(out[split]):
            record = PredictionRecord.from_json(json.loads(json.dumps(row)), f"{split}:{i}")
            verdicts.append(decide_offline(verification_request(record)))
    assert verdicts == [Category.SPECIFIC, Category.LESS_SPECIFIC, Category.GENERIC, None]


def test_dump_that_does_not_split_into_groups_is_refused(miniature, classes):
    rows = [dump_row("red circle", "circle")] * 3
    with pytest.raises(ValueError, match=r"val_kwargs\.n"):
        miniature.predictions_from_dump(rows, classes, val_n=2, prefix="r")
    mixed = [dump_row("red circle", "circle"), dump_row("blue square", "square")]
    with pytest.raises(ValueError, match="blue square"):
        miniature.predictions_from_dump(mixed, classes, val_n=2, prefix="r")
    with pytest.raises(ValueError, match="no evaluation parquet"):
        miniature.predictions_from_dump([dump_row("purple star", "star")], classes, val_n=1, prefix="r")


def test_undecided_answers_are_split_into_task_labels_and_other_text(miniature):
    verdicts = [
        {"category": None, "reason": "undecided", "answer": "Blue Circle"},
        {"category": None, "reason": "undecided", "answer": "square"},
        {"category": None, "reason": "undecided", "answer": "a red thing"},
        {"category": None, "reason": "unparseable", "answer": None},
        {"category": "generic", "answer": "shape"},
    ]
    assert miniature.undecided_breakdown(verdicts) == {"undecided": 3, "known": 2, "other": 1}


def test_result_line_averages_seeds_and_reports_the_correctness_drop(miniature):
    metrics = {
        "start": {"hm": [0.2, 0.4], "correctness": [0.9, 0.7]},
        "speciarl": {"hm": [0.5, 0.7], "correctness": [0.7, 0.7]},
        "binary": {"hm": [0.3, 0.3], "correctness": [0.8, 0.8]},
        "greedy": {"hm": [0.1, 0.2], "correctness": [0.4, 0.6]},
    }
    assert miniature.result_line(metrics, 2) == (
        "RESULT hm_start=0.300 hm_speciarl=0.600 hm_binary=0.300 hm_greedy=0.150 corr_drop_speciarl=0.100 seeds=2"
    )
    assert miniature.format_cell([0.2, 0.4]) == "0.300 ± 0.141"
    assert miniature.hm(0.0, 0.0) == 0.0


def test_step_curves_skip_the_validation_only_step_and_read_category_shares(miniature, tmp_path):
    lines = [
        {"step": 0, "data": {"val-core/synthetic_shapes/acc/mean@2": 0.1}},
        {"step": 1, "data": {"critic/score/mean": 0.25, "speciarl/category/specific": 0.5, "timing_s/step": 3.0}},
        {"step": 1, "data": {"speciarl/category/wrong": 0.25}},
        {"step": 2, "data": {"critic/score/mean": 0.5, "speciarl/category/generic": 1.0, "timing_s/step": 2.0}},
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    curves = miniature.step_curves(metrics)
    assert sorted(curves) == [1, 2]
    assert curves[1]["specific"] == 0.5 and curves[1]["wrong"] == 0.25 and curves[1]["generic"] == 0.0
    assert curves[2]["reward"] == 0.5 and curves[2]["step_s"] == 2.0


def test_curves_are_drawn_by_the_users_curves_code(miniature, tmp_path):
    """The benchmark's curve figure is ``speciarl eval curves``' code, one line per run (recorded CPU run)."""
    recorded = Path(__file__).parents[1] / "evaluation" / "data" / "tiny_cpu_run_metrics.jsonl"
    curves = miniature.step_curves(recorded)
    assert curves[2]["reward"] == curves[2]["reward_mean"] == 0.5
    runs = [
        miniature.Run(reward, seed, tmp_path / f"{reward}{seed}")
        for seed in (0, 1)
        for reward in ("speciarl", "binary")
    ]
    miniature.plot_curves({run.name: curves for run in runs}, runs, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
