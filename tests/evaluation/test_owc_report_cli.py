"""``speciarl eval report --metrics spec,owc`` end to end on the shipped recorded predictions: offline
category verdicts, the tiny sentence encoder, the rule chunker and the fake inclusion judge; every data
source and the out-of-domain mean get every column, recomputed here from the verdict file."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from speciarl_verl.cli import main as speciarl
from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.evaluation.owc_metrics import OWC_METRICS
from speciarl_verl.evaluation.plots import PLOT_SIZES
from speciarl_verl.evaluation.report_files import OWC_PLOT_FILES
from speciarl_verl.evaluation.report_tour import recorded_predictions_path
from speciarl_verl.judge.llm_judge import judge_input
from speciarl_verl.judge.settings import LLMSettings
from support.fake_inclusion_judge import FakeInclusionJudge

SOURCES = {"cub200", "fgvc_aircraft", "flowers102", "food101", "oxford_pets", "stanford_cars"}


@pytest.fixture(scope="module")
def owc_report(tmp_path_factory):
    from speciarl_verl.offline_fixtures.tiny_sentence_encoder import build_tiny_sentence_encoder

    root = tmp_path_factory.mktemp("owc")
    model = build_tiny_sentence_encoder(root / "model")
    verdicts = root / "verdicts.jsonl"
    predictions = recorded_predictions_path(root)
    judge = ["eval", "judge", "--predictions", str(predictions), "--out", str(verdicts), "--judge", "offline"]
    assert speciarl([*judge, "--no-progress"]) == 0
    command = ["eval", "report", "--verdicts", str(verdicts), "--metrics", "spec,owc", "--bootstrap", "100"]
    command += ["--embedding-model", str(model), "--concept-pipeline", "rules"]
    with FakeInclusionJudge(accepted={"laysan albatross": {"albatross"}}) as server:
        inclusion = [f"llm.endpoints=[{server.url}]", "llm.model=fake", f"cache.path={root / 'inclusion.sqlite'}"]
        command += [x for setting in inclusion for x in ("--inclusion-judge-set", setting)]
        assert speciarl([*command, "--out", str(root / "report")]) == 0
        calls = server.calls
    return verdicts, root / "report", calls


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_source_and_the_ood_mean_have_every_open_world_column(owc_report):
    _, out, _ = owc_report
    report = json.loads((out / "report.json").read_text())
    assert report["answer_metrics"] == list(OWC_METRICS)
    run = next(iter(report["runs"].values()))
    assert set(run["per_source"]) == SOURCES
    for block in [*run["per_source"].values(), run["ood_mean"]]:
        for name in OWC_METRICS:
            assert isinstance(block[name], float)
            low, high = block["ci"][name]
            assert low <= block[name] <= high
    described = report["settings"]["answer_metrics"]
    assert described["concept_pipeline"] == "rules" and described["concept_reduction"] == "max"
    assert described["inclusion_judge"]["prompt"].startswith("owc_inclusion_v1 (")


def test_string_metrics_and_llm_inclusion_match_a_recount_from_the_verdict_file(owc_report):
    verdicts, out, _ = owc_report
    run = next(iter(json.loads((out / "report.json").read_text())["runs"].values()))
    for source in SOURCES:
        images = {}
        for row in rows_of(verdicts):
            if row["data_source"] == source:
                truth, answer = row["ground_truth"], row["answer"]
                em = answer is not None and normalize_label(truth) == normalize_label(answer)
                ti = answer is not None and normalize_label(truth) in normalize_label(answer)
                li = em or (
                    normalize_label(truth) == "laysan albatross" and normalize_label(answer or "") == "albatross"
                )
                images.setdefault(row["sample_id"], []).append((em, ti, li))
        expected = np.mean([np.mean(v, axis=0) for v in images.values()], axis=0)
        block = run["per_source"][source]
        got = [block["exact_match"], block["text_inclusion"], block["llm_inclusion"]]
        assert got == pytest.approx(expected.tolist())
    ood = [s for s in SOURCES if s != "cub200"]
    assert run["ood_mean"]["exact_match"] == pytest.approx(np.mean([run["per_source"][s]["exact_match"] for s in ood]))


def test_inclusion_asks_each_distinct_pair_once(owc_report):
    verdicts, _, calls = owc_report
    # distinct as the judge reads them (cleaned and cut as judge.llm says): "737-800" and "737 800" are two questions
    pairs = {judge_input(LLMSettings(), r["ground_truth"], r["answer"]) for r in rows_of(verdicts) if r["answer"]}
    assert calls == len(pairs)


def test_markdown_carries_the_columns_the_definitions_and_the_new_plot(owc_report):
    _, out, _ = owc_report
    text = (out / "report.md").read_text()
    assert "| Corr. | Spec. | HM | Score | EM | TI | LI | SS | CS |" in text
    for name in OWC_METRICS:
        assert f"- **{name}** (" in text
    file_name = OWC_PLOT_FILES["hm_vs_semantic_similarity"]
    assert f"]({file_name})" in text
    image = Image.open(io.BytesIO((out / file_name).read_bytes()))
    assert image.size == PLOT_SIZES["hm_vs_semantic_similarity"]


def test_spec_only_is_the_default_and_writes_no_open_world_column(tmp_path, owc_report):
    verdicts, _, _ = owc_report
    assert speciarl(["eval", "report", "--verdicts", str(verdicts), "--out", str(tmp_path), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["answer_metrics"] == [] and "exact_match" not in report["runs"]["verdicts"]["per_source"]["cub200"]
    assert not (tmp_path / OWC_PLOT_FILES["hm_vs_semantic_similarity"]).exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "spec,bleu"], "unknown metric or group 'bleu'"),
        (
            ["--metrics", "concept_similarity", "--concept-pipeline", "en_core_web_xx"],
            "'en_core_web_xx' is not installed",
        ),
        (["--metrics", "llm_inclusion", "--inclusion-judge-set", "failure_policy=mask"], "failure_policy='mask'"),
    ],
)
def test_bad_metric_options_are_one_line_and_exit_code_2(tmp_path, owc_report, capsys, extra, message):
    verdicts, _, _ = owc_report
    code = speciarl(["eval", "report", "--verdicts", str(verdicts), "--out", str(tmp_path), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
