"""End to end on recorded predictions: judge (offline) -> report, through the CLI; the plots render."""

import io
import json

import pytest
from PIL import Image

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.plots import PLOT_SIZES, heatmap_png
from speciarl_verl.evaluation.records import load_predictions
from speciarl_verl.evaluation.report_files import PLOT_FILES
from speciarl_verl.evaluation.report_tour import recorded_predictions_path, report_tour


def assert_png(data: bytes, name: str) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == PLOT_SIZES[name]
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20, f"{name} looks blank"


def test_shipped_recorded_predictions_are_valid_and_varied(tmp_path):
    records = load_predictions(recorded_predictions_path(tmp_path))
    assert len({r.data_source for r in records}) == 6
    assert len({r.sample_id for r in records}) >= 40
    assert sum(r.answer is None for r in records) >= 5  # malformed outputs are part of the sample
    assert any(r.answer == "None" for r in records)  # and abstentions


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """predictions -> speciarl eval judge -> speciarl eval report (twice: base and a second run)."""
    root = tmp_path_factory.mktemp("pipeline")
    predictions = recorded_predictions_path(root)
    verdicts = root / "base.jsonl"
    assert speciarl(["eval", "judge", "--predictions", str(predictions), "--out", str(verdicts), "--no-progress"]) == 0
    # A second "run": the same answers judged with undecided pairs filed as abstain.
    other = root / "other.jsonl"
    args = ["eval", "judge", "--predictions", str(predictions), "--out", str(other), "--judge", "offline"]
    assert speciarl([*args, "--judge-set", "deferred_outcome=abstain", "--no-progress"]) == 0
    out = root / "report"
    args = ["eval", "report", "--verdicts", str(verdicts), "--verdicts", str(other), "--out", str(out)]
    assert speciarl([*args, "--bootstrap", "200", "--train-domain", "cub200"]) == 0
    return root, out


def test_report_json_is_consistent_with_its_histograms(pipeline):
    _, out = pipeline
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"base", "other"}
    base = report["runs"]["base"]
    assert set(base["per_source"]) == {
        "cub200",
        "fgvc_aircraft",
        "flowers102",
        "food101",
        "oxford_pets",
        "stanford_cars",
    }
    for block in base["per_source"].values():
        counts = block["counts"]
        assert sum(counts.values()) == block["n"] == 4 * block["images"]
        correct = counts["generic"] + counts["less specific"] + counts["specific"] + counts["more specific"]
        assert block["correctness"] == pytest.approx(correct / block["n"])
        assert block["specificity"] == pytest.approx((counts["specific"] + counts["more specific"]) / correct)
        assert block["best_of_n"]["k"] == [1, 2, 4]
    ood = base["ood_mean"]
    assert "cub200" not in ood["sources"] and len(ood["sources"]) == 5
    mean_correctness = sum(base["per_source"][s]["correctness"] for s in ood["sources"]) / 5
    assert ood["correctness"] == pytest.approx(mean_correctness)
    # Filing undecided pairs as abstain instead of wrong moves answers between two non-correct categories.
    other = report["runs"]["other"]
    assert other["ood_mean"]["correctness"] == pytest.approx(ood["correctness"])
    assert sum(b["counts"]["abstain"] for b in other["per_source"].values()) > sum(
        b["counts"]["abstain"] for b in base["per_source"].values()
    )


def test_report_markdown_and_plots_are_written(pipeline):
    _, out = pipeline
    text = (out / "report.md").read_text()
    assert "## Metric definitions" in text and "## Side by side" in text and "### Best-of-N" in text
    for name, file_name in PLOT_FILES.items():
        assert f"]({file_name})" in text
        assert_png((out / file_name).read_bytes(), name)
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_heatmap_renders_at_its_size():
    matrix = [[5, 1, 0], [0, 3, 2], [1, 0, 7]]
    assert_png(heatmap_png(matrix, ["a", "b", "c"], "judge B", "judge A"), "agreement_heatmap")


def test_report_tour_returns_the_markdown_of_a_full_run(tmp_path):
    path = report_tour(tmp_path / "tour", bootstrap=50)
    assert path == tmp_path / "tour" / "report" / "report.md"
    text = path.read_text()
    assert "out-of-domain mean" in text and "recorded (offline judge)" in text
    assert (tmp_path / "tour" / "verdicts.jsonl").exists()
    # Running it again starts over rather than appending to old verdicts.
    assert report_tour(tmp_path / "tour", bootstrap=50).read_text() == text


def test_report_cli_names_bad_verdict_lines(tmp_path, capsys):
    bad = tmp_path / "verdicts.jsonl"
    bad.write_text('{"sample_id": "a", "data_source": "x", "prediction_index": 0, "category": "good"}\n')
    assert speciarl(["eval", "report", "--verdicts", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert f"{bad}:1: not a verdict category: 'good'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.json").exists()
