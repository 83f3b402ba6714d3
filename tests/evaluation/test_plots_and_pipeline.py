"""End to end on recorded predictions: judge (offline, and the default LLM judge against the fake judge
server) -> report, through the CLI; the plots render."""

import io
import json

import pytest
from PIL import Image

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.method_score import METHOD_SCORES
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


CORRECT = ("generic", "less specific", "specific", "more specific")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """predictions -> speciarl eval judge (offline; and the default LLM judge, served by the fake judge)
    -> speciarl eval report, undecided answers left out (``report``) and counted as wrong (``as_wrong``)."""
    from speciarl_verl.offline_fixtures.fake_judge_server import FakeJudgeServer

    root = tmp_path_factory.mktemp("pipeline")
    predictions = recorded_predictions_path(root)
    judge = ["eval", "judge", "--predictions", str(predictions), "--no-progress"]
    offline = root / "offline.jsonl"
    assert speciarl([*judge, "--out", str(offline), "--judge", "offline"]) == 0
    llm = root / "llm.jsonl"
    with FakeJudgeServer() as server:
        settings = [f"llm.endpoints=[{server.url}]", f"cache.path={root / 'cache.sqlite'}"]
        assert speciarl([*judge, "--out", str(llm), *(x for s in settings for x in ("--judge-set", s))]) == 0
    report = ["eval", "report", "--verdicts", str(offline), "--verdicts", str(llm), "--train-domain", "cub200"]
    assert speciarl([*report, "--out", str(root / "report"), "--bootstrap", "200"]) == 0
    assert speciarl([*report, "--out", str(root / "as_wrong"), "--bootstrap", "0", "--undecided", "wrong"]) == 0
    return root, root / "report"


def decided_correctness(verdicts_path, source):
    """Correct answers / decided answers of ``source``, counted from the file."""
    decided = [
        row["category"] in CORRECT
        for row in map(json.loads, verdicts_path.read_text().splitlines())
        if row["data_source"] == source and row.get("reason") != "undecided"
    ]
    return sum(decided) / len(decided)


def decided_answers_per_image(verdicts_path, source):
    """How many decided answers each image of ``source`` has."""
    images = {}
    for row in map(json.loads, verdicts_path.read_text().splitlines()):
        if row["data_source"] == source:
            images.setdefault(row["sample_id"], 0)
            images[row["sample_id"]] += row.get("reason") != "undecided"
    return list(images.values())


def test_report_json_is_consistent_with_its_histograms(pipeline):
    root, out = pipeline
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"offline", "llm"}
    offline, llm = report["runs"]["offline"], report["runs"]["llm"]
    assert offline["judges"] == {"offline": 192}
    assert llm["judges"] == {"llm:meta-llama/Meta-Llama-3-70B-Instruct": 192}
    assert set(offline["per_source"]) == {
        "cub200",
        "fgvc_aircraft",
        "flowers102",
        "food101",
        "oxford_pets",
        "stanford_cars",
    }
    for source, block in offline["per_source"].items():
        counts = block["counts"]
        assert sum(counts.values()) == block["n"] == 4 * block["images"]
        assert block["undecided"] == counts["undecided"] > 0
        assert block["scored"]["answers"] == block["n"] - counts["undecided"]
        assert block["correctness"] == pytest.approx(decided_correctness(root / "offline.jsonl", source))
        # Best of k over the images with k decided answers, however few some other image has.
        decided = decided_answers_per_image(root / "offline.jsonl", source)
        assert block["best_of_n"]["k"] == [1, 2, 4]
        assert block["best_of_n"]["images"] == [sum(n >= k for n in decided) for k in (1, 2, 4)]
        assert block["best_of_n"]["correctness"][0] == pytest.approx(block["correctness"])  # k = 1: the plain share
    assert offline["undecided"] == sum(b["undecided"] for b in offline["per_source"].values())
    assert llm["undecided"] == 0  # the LLM judge decides every parsed answer
    # the method's average score, from each source's histogram, and its out-of-domain mean
    for run in (offline, llm):
        for block in run["per_source"].values():
            scored = {k: v for k, v in block["counts"].items() if k != "undecided"}
            expected = sum(METHOD_SCORES[k] * v for k, v in scored.items()) / sum(scored.values())
            assert block["method_score"] == pytest.approx(expected)
        sources = run["ood_mean"]["sources"]
        mean = sum(run["per_source"][s]["method_score"] for s in sources) / len(sources)
        assert run["ood_mean"]["method_score"] == pytest.approx(mean)
        assert run["ood_mean"]["ci"]["method_score"][0] <= mean <= run["ood_mean"]["ci"]["method_score"][1]
    ood = offline["ood_mean"]
    assert "cub200" not in ood["sources"] and len(ood["sources"]) == 5
    mean_correctness = sum(offline["per_source"][s]["correctness"] for s in ood["sources"]) / 5
    assert ood["correctness"] == pytest.approx(mean_correctness)
    assert ood["best_of_n"]["k"] == [1, 2, 4] and ood["best_of_n"]["images"][0] == sum(
        offline["per_source"][s]["scored"]["images"] for s in ood["sources"]
    )


def test_undecided_answers_count_as_wrong_only_when_asked(pipeline):
    root, out = pipeline
    excluded = json.loads((out / "report.json").read_text())["runs"]["offline"]
    as_wrong = json.loads((root / "as_wrong" / "report.json").read_text())["runs"]["offline"]
    for source, block in as_wrong["per_source"].items():
        counts = block["counts"]
        correct = sum(counts[c] for c in CORRECT)
        assert counts == excluded["per_source"][source]["counts"]  # the histogram is the same either way
        assert block["correctness"] == pytest.approx(correct / block["n"])  # every answer counts
        assert block["specificity"] == pytest.approx((counts["specific"] + counts["more specific"]) / correct)
        assert block["correctness"] < excluded["per_source"][source]["correctness"]
        assert block["best_of_n"]["k"] == [1, 2, 4]
    assert "counted as `wrong`" in (root / "as_wrong" / "report.md").read_text()


def test_report_markdown_and_plots_are_written(pipeline):
    _, out = pipeline
    text = (out / "report.md").read_text()
    assert "## Metric definitions" in text and "## Side by side" in text and "### Best-of-N" in text
    assert "judged by `offline` (192); undecided answers: " in text
    assert "judged by `llm:meta-llama/Meta-Llama-3-70B-Instruct` (192); undecided answers: 0" in text
    assert "| wrong | undecided | unparseable |" in text
    assert "- **method_score** (Score): the method's average score" in text
    for name, file_name in PLOT_FILES.items():
        assert f"]({file_name})" in text
        assert_png((out / file_name).read_bytes(), name)
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_the_demos_best_of_n_plot_has_a_line_per_run(pipeline):
    """Issue 21, item 11: one fgvc_aircraft image has a single decided answer; the plot of the offline
    run still has its out-of-domain curve and draws without a warning."""
    import warnings

    from speciarl_verl.evaluation.plots import best_of_n_png

    _, out = pipeline
    report = json.loads((out / "report.json").read_text())
    report["runs"] = {"offline": report["runs"]["offline"]}  # the demo's run: offline judge only
    assert min(decided_answers_per_image(out.parent / "offline.jsonl", "fgvc_aircraft")) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty figure warns that its legend has no artists
        assert_png(best_of_n_png(report), "best_of_n")
    from speciarl_verl.evaluation.plots import best_of_n_curve

    for run in report["runs"].values():
        curve, what = best_of_n_curve(run)
        assert what == "out-of-domain mean" and curve["k"] == [1, 2, 4]


def test_a_report_without_a_best_of_n_curve_writes_no_empty_plot(tmp_path, verdict_factory):
    from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
    from speciarl_verl.evaluation.report_files import write_report

    verdicts = [*verdict_factory("food101", [["specific", "wrong"]]), *verdict_factory("cub200", [["wrong"] * 2])]
    settings = ReportSettings(train_domains=("food101", "cub200"), replicates=0)
    written = write_report(build_report([RunVerdicts("r", verdicts)], settings), tmp_path)
    assert "best_of_n" not in written and not (tmp_path / "best_of_n.png").exists()
    text = written["markdown"].read_text()
    assert "best-of-N plot not drawn, no run has a curve (`r`: no out-of-domain source" in text


def test_heatmap_renders_at_its_size():
    matrix = [[5, 1, 0], [0, 3, 2], [1, 0, 7]]
    assert_png(heatmap_png(matrix, ["a", "b", "c"], "judge B", "judge A"), "agreement_heatmap")


def test_report_tour_returns_the_markdown_of_a_full_run(tmp_path):
    path = report_tour(tmp_path / "tour", bootstrap=50)
    assert path == tmp_path / "tour" / "report" / "report.md"
    text = path.read_text()
    assert "out-of-domain mean" in text and "recorded (offline judge)" in text
    # 59: the rule tier leaves a manufacturer or car make alone (8 answers) and "jet"/"airliner" (3) to the LLM judge
    assert "judged by `offline` (192); undecided answers: 59" in text and "left out of every metric" in text
    assert (tmp_path / "tour" / "verdicts.jsonl").exists()
    # Running it again starts over rather than appending to old verdicts.
    assert report_tour(tmp_path / "tour", bootstrap=50).read_text() == text


def test_report_cli_names_bad_verdict_lines(tmp_path, capsys):
    bad = tmp_path / "verdicts.jsonl"
    bad.write_text('{"sample_id": "a", "data_source": "x", "prediction_index": 0, "category": "good"}\n')
    assert speciarl(["eval", "report", "--verdicts", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert f"{bad}:1: not a verdict category: 'good'" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.json").exists()
