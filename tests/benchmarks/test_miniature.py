"""Pure helpers of benchmarks/miniature.py and miniature_eval.py: verl's validation dump -> predictions by split
and visibility, undecided check, table maths, the pre-registered hypotheses.

No training here: the rows are what verl's ``_write_generations`` writes (``input``, ``output``, ``gts``,
``score``, ``step``), the evaluation rows come from a real synthetic_shapes_hidden parquet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from speciarl_verl.core.categories import Category
from speciarl_verl.evaluation.judging import verification_request
from speciarl_verl.evaluation.records import PredictionRecord
from speciarl_verl.judge.offline import decide_offline


@pytest.fixture(scope="module")
def mini_eval(miniature):
    return sys.modules["miniature_eval"]  # the sibling module miniature.py imports


@pytest.fixture(scope="module")
def eval_rows():
    """Rows of a real evaluation parquet: two in-domain and one held-out image of the hidden task, built here."""
    import tempfile

    import pyarrow.parquet as pq

    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for split, picks in (("test", (2, 3)), ("test_ood", (0,))):
            out = build_parquet(
                SourceSpec("synthetic_shapes_hidden", ".", split), Path(tmp) / f"{split}.parquet",
                BuildOptions(seed=0, progress=False),
            )  # fmt: skip
            table = pq.read_table(out.parquet, columns=["data_source", "reward_model", "extra_info"]).to_pylist()
            by_image = sorted(table, key=lambda row: (row["extra_info"]["class_id"], row["extra_info"]["source_file"]))
            rows += [by_image[i] for i in picks]
    return rows


def dump_row(row: dict, answer: str) -> dict:
    """One answer as verl dumps it: its record names the image (``image_id``)."""
    return {
        "input": "user ...",
        "output": f"<think>x</think><answer>{answer}</answer>",
        "gts": row["reward_model"]["ground_truth"],
        "score": 0.0,
        "image_id": row["extra_info"]["image_id"],
    }


def test_dumped_answers_become_judgeable_predictions_by_split_and_visibility_in_any_order(mini_eval, eval_rows):
    # three images (two in-domain, one held-out), two answers each, in an order of verl's choosing
    truths = [row["reward_model"]["ground_truth"] for row in eval_rows]
    family = eval_rows[0]["extra_info"]["parents"][0]
    rows = [
        dump_row(eval_rows[2], "pink circle"),
        dump_row(eval_rows[0], truths[0]),
        dump_row(eval_rows[1], "shape"),
        dump_row(eval_rows[0], family),
        dump_row(eval_rows[2], "pink circle"),
        dump_row(eval_rows[1], "None"),
    ]
    out = mini_eval.predictions_from_dump(rows, eval_rows, val_n=2, prefix="speciarl_s0/step8")
    visibilities = [row["extra_info"]["visibility"] for row in eval_rows]
    images = [row["extra_info"]["image_id"] for row in eval_rows]
    assert visibilities[:2] == ["faint", "hidden"]  # image numbers 2 and 3 of a class
    assert [(r["sample_id"], r["prediction_index"]) for r in out["test"]] == [
        (f"speciarl_s0/step8/{images[0]}", 0),
        (f"speciarl_s0/step8/{images[0]}", 1),
        (f"speciarl_s0/step8/{images[1]}", 0),
        (f"speciarl_s0/step8/{images[1]}", 1),
    ]
    assert [r["response"] for r in out["test"]] == [
        rows[1]["output"],
        rows[3]["output"],
        rows[2]["output"],
        rows[5]["output"],
    ]
    assert [r["sample_id"] for r in out["test/faint"]] == [f"speciarl_s0/step8/{images[0]}"] * 2
    assert [r["sample_id"] for r in out["test/hidden"]] == [f"speciarl_s0/step8/{images[1]}"] * 2
    ood_part = f"test_ood/{visibilities[2]}"
    assert sorted(out) == sorted({"test", "test_ood", "test/faint", "test/hidden", ood_part})
    assert [r["ground_truth"] for r in out["test_ood"]] == [truths[2]] * 2
    # the rows load as the evaluator's predictions and the offline rule tier files them by the known hierarchy
    verdicts = []
    for part in ("test", "test_ood"):
        for i, row in enumerate(out[part]):
            record = PredictionRecord.from_json(json.loads(json.dumps(row)), f"{part}:{i}")
            verdicts.append(decide_offline(verification_request(record)))
    expected_ood = Category.SPECIFIC if truths[2] == "pink circle" else None
    assert verdicts == [
        Category.SPECIFIC,
        Category.LESS_SPECIFIC,
        Category.GENERIC,
        Category.ABSTAIN,
        expected_ood,
        expected_ood,
    ]


def test_a_dump_that_does_not_answer_every_image_val_n_times_is_refused(mini_eval, eval_rows):
    complete = [dump_row(row, "circle") for row in eval_rows for _ in range(2)]
    with pytest.raises(ValueError, match=r"1 evaluation images lack 2 answers"):
        mini_eval.predictions_from_dump(complete[:-1], eval_rows, val_n=2, prefix="r")
    stranger = {**complete[0], "image_id": "purple_star_0001"}
    with pytest.raises(ValueError, match=r"purple_star_0001.*in no evaluation row"):
        mini_eval.predictions_from_dump([stranger, *complete], eval_rows, val_n=2, prefix="r")
    unnamed = {key: value for key, value in complete[0].items() if key != "image_id"}
    with pytest.raises(ValueError, match="names no image"):
        mini_eval.predictions_from_dump([unnamed, *complete[1:]], eval_rows, val_n=2, prefix="r")
    other_truth = {**complete[0], "gts": "blue cross"}
    with pytest.raises(ValueError, match="'blue cross'"):
        mini_eval.predictions_from_dump([other_truth, *complete[1:]], eval_rows, val_n=2, prefix="r")


def test_undecided_answers_are_split_into_task_labels_and_other_text(mini_eval):
    verdicts = [
        {"category": None, "reason": "undecided", "answer": "Blue Circle"},
        {"category": None, "reason": "undecided", "answer": "square"},
        {"category": None, "reason": "undecided", "answer": "a red thing"},
        {"category": None, "reason": "unparseable", "answer": None},
        {"category": "generic", "answer": "shape"},
    ]
    labels = mini_eval.hierarchy_labels("synthetic_shapes")
    assert mini_eval.undecided_breakdown(verdicts, labels) == {"undecided": 3, "known": 2, "other": 1}
    hidden = mini_eval.hierarchy_labels("synthetic_shapes_hidden")
    assert hidden["pink triangle"] == "species" and "pink triangle" not in labels


def test_result_lines_average_seeds(mini_eval):
    def arm(hm, corr, hidden_corr, ood_hm):
        return {
            "test": {"hm": hm, "correctness": corr},
            "test/hidden": {"correctness": hidden_corr},
            "test_ood": {"hm": ood_hm},
        }

    metrics = {
        "start": arm([0.2, 0.4], [0.9, 0.7], [0.8, 0.8], [0.1, 0.1]),
        "speciarl": arm([0.5, 0.7], [0.7, 0.7], [0.8, 0.7], [0.3, 0.2]),
        "binary": arm([0.3, 0.3], [0.8, 0.8], [0.4, 0.2], [0.1, 0.0]),
        "greedy": arm([0.1, 0.2], [0.4, 0.6], [0.7, 0.7], [0.2, 0.2]),
    }
    assert mini_eval.result_line_shapes(metrics, 2) == (
        "RESULT hm_start=0.300 hm_speciarl=0.600 hm_binary=0.300 hm_greedy=0.150 corr_drop_speciarl=0.100 seeds=2"
    )
    assert mini_eval.result_line_hidden(metrics, 2) == (
        "RESULT hm_start=0.300 hm_speciarl=0.600 hm_binary=0.300 hm_greedy=0.150 corr_hidden_start=0.800 "
        "corr_hidden_speciarl=0.750 corr_hidden_binary=0.300 ood_hm_speciarl=0.250 ood_hm_binary=0.050 seeds=2"
    )
    assert mini_eval.format_cell([0.2, 0.4]) == "0.300 ± 0.141"
    assert mini_eval.hm(0.0, 0.0) == 0.0


def hypothesis_metrics(changes=None):
    """Two seeds where every pre-registered hypothesis holds on the means; ``changes`` overrides one figure."""
    base = {
        ("start", "test/hidden", "correctness"): [0.80, 0.80],
        ("speciarl", "test/hidden", "correctness"): [0.78, 0.80],
        ("binary", "test/hidden", "correctness"): [0.50, 0.60],
        ("speciarl", "test", "hm"): [0.60, 0.62],
        ("binary", "test", "hm"): [0.50, 0.55],
        ("speciarl", "test_ood", "hm"): [0.30, 0.30],
        ("binary", "test_ood", "hm"): [0.10, 0.10],
        ("greedy", "test_ood", "hm"): [0.20, 0.20],
        ("start", "test/clear", "specificity"): [0.20, 0.20],
        ("speciarl", "test/clear", "specificity"): [0.78, 0.80],
        ("binary", "test/clear", "specificity"): [0.80, 0.80],
    }
    base.update(changes or {})
    metrics: dict = {arm: {} for arm in ("start", "speciarl", "binary", "greedy")}
    for part in ("test", "test/hidden", "test/clear", "test_ood"):
        for arm in metrics:
            metrics[arm][part] = {name: [0.5, 0.5] for name in ("correctness", "specificity", "hm")}
    for (arm, part, name), values in base.items():
        metrics[arm][part][name] = values
    return metrics


def test_the_pre_registered_hypotheses_are_judged_on_the_means_with_their_tolerance(mini_eval):
    def verdicts(metrics):
        return {name: (held, seeds) for name, held, seeds, _ in mini_eval.hypotheses(metrics)}

    assert verdicts(hypothesis_metrics()) == {"H1": (True, 2), "H2": (True, 2), "H3": (True, 2), "H4": (True, 2)}
    # H1 fails when SpeciaRL loses more than the tolerance on hidden images, or when binary does not lose it
    key = ("speciarl", "test/hidden", "correctness")
    assert verdicts(hypothesis_metrics({key: [0.70, 0.74]}))["H1"] == (False, 0)
    assert verdicts(hypothesis_metrics({("binary", "test/hidden", "correctness"): [0.78, 0.74]}))["H1"] == (False, 1)
    # H3 needs SpeciaRL above both baselines out of domain
    assert verdicts(hypothesis_metrics({("greedy", "test_ood", "hm"): [0.35, 0.25]}))["H3"] == (False, 1)
    # H4: a rise 0.04 below binary's still holds, 0.1 below does not
    assert verdicts(hypothesis_metrics({("speciarl", "test/clear", "specificity"): [0.76, 0.76]}))["H4"][0]
    assert not verdicts(hypothesis_metrics({("speciarl", "test/clear", "specificity"): [0.70, 0.70]}))["H4"][0]
    # H2 is strict
    assert verdicts(hypothesis_metrics({("speciarl", "test", "hm"): [0.50, 0.55]}))["H2"] == (False, 0)


def test_tables_and_plot_cover_every_part(mini_eval, tmp_path):
    parts = ("test", "test/hidden", "test_ood")
    metrics = {
        arm: {part: {key: [0.4, 0.6] for key in ("correctness", "specificity", "hm", "unparseable")} for part in parts}
        for arm in ("start", "speciarl", "binary", "greedy")
    }
    table = mini_eval.table_markdown(metrics, parts, 2)
    assert "in-domain test, hidden species, 2 seed(s)" in table and table.count("| speciarl | 0.500 ± 0.141") == 3
    mini_eval.plot_points(metrics, parts, tmp_path / "points.png", "title")
    assert (tmp_path / "points.png").read_bytes()[:4] == b"\x89PNG"


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
