"""``speciarl eval curves`` on verl's file-logger output (a recorded CPU run, see data/README.md)."""

import csv
import json
import math
from pathlib import Path

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.curves import COLUMNS, step_curves

RECORDED = Path(__file__).parent / "data" / "tiny_cpu_run_metrics.jsonl"


def test_recorded_cpu_run_gives_one_row_per_training_step_with_verls_values(tmp_path):
    data = {}
    for line in RECORDED.read_text().splitlines():
        record = json.loads(line)
        data.setdefault(record["step"], {}).update(record["data"])
    curves = step_curves(RECORDED)
    assert sorted(curves) == [1, 2]
    for step, row in curves.items():
        assert row["reward_mean"] == data[step]["critic/score/mean"]
        assert row["generic"] == data[step]["speciarl/category/generic"]
        expected = data[step]["speciarl/groups_zero_variance"] / data[step]["speciarl/groups_total"]
        assert row["zero_variance_share"] == pytest.approx(expected)
        assert row["judge_offline_share"] == data[step]["speciarl/judge/offline_share"]
        assert math.isnan(row["judge_latency_p50_s"])  # the offline judge logs no latency

    out = tmp_path / "curves"
    assert speciarl(["eval", "curves", "--metrics", str(RECORDED), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"] and list(rows[0]) == ["step", *COLUMNS]
    assert float(rows[1]["reward_mean"]) == pytest.approx(data[2]["critic/score/mean"])
    markdown = (out / "curves.md").read_text()
    assert "| step | reward_mean |" in markdown and "latency" not in markdown  # columns without values are left out
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_gpu_style_lines_merge_per_step_and_skip_validation_only_steps(tmp_path):
    lines = [
        {"step": 0, "data": {"val-core/cub200/acc/mean@1": 0.1}},
        {"step": 1, "data": {"critic/score/mean": 0.4, "speciarl/judge/latency_p95_s": 1.5}},
        {"step": 1, "data": {"speciarl/category/specific": 0.5, "speciarl/groups_total": 4.0,
                             "speciarl/groups_zero_variance": 1.0}},
    ]  # fmt: skip
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    curves = step_curves(metrics)
    assert list(curves) == [1]
    assert curves[1]["specific"] == 0.5 and curves[1]["zero_variance_share"] == 0.25
    assert curves[1]["judge_latency_p95_s"] == 1.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"step": 1, "data": {"critic/score/mean": 0.4}}\n{"step": "x", "data": {}}\n', "metrics.jsonl:2: step"),
        ('{"step": 0, "data": {"val-core/x/acc/mean@1": 0.1}}\n', "no training step"),
        ("[1, 2]\n", "metrics.jsonl:1: not a verl file-logger line"),
    ],
)
def test_bad_metrics_files_are_one_line_naming_the_file(tmp_path, capsys, content, message):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(content)
    assert speciarl(["eval", "curves", "--metrics", str(metrics), "--out", str(tmp_path / "c")]) == 2
    assert message in capsys.readouterr().err


def test_curves_out_must_be_a_folder(tmp_path, capsys):
    taken = tmp_path / "taken.png"
    taken.write_text("")
    assert speciarl(["eval", "curves", "--metrics", str(RECORDED), "--out", str(taken)]) == 2
    assert "--out" in capsys.readouterr().err
