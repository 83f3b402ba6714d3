import json

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.agreement import AgreementInputs, compare_verdicts
from speciarl_verl.evaluation.metrics import HISTOGRAM_KEYS


def hand_kappa(a, b):
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((a.count(label) / n) * (b.count(label) / n) for label in set(a) | set(b))
    return (observed - expected) / (1 - expected)


A = ["specific", "specific", "less specific", "generic", "wrong", "wrong", "abstain", None, "specific", "generic"]
B = [
    "specific",
    "less specific",
    "less specific",
    "generic",
    "wrong",
    "generic",
    "abstain",
    None,
    "more specific",
    "generic",
]


def test_confusion_kappa_and_top_disagreements(verdict_factory):
    a = verdict_factory("food101", [[label] for label in A])
    b = verdict_factory("food101", [[label] for label in B])
    b += verdict_factory("food101", [["wrong"]], prefix="only-b/")
    result = compare_verdicts(AgreementInputs("offline", a, "llm", b))
    assert (result["matched"], result["only_in_a"], result["only_in_b"]) == (10, 0, 1)
    matrix = result["confusion"]
    index = {label: i for i, label in enumerate(HISTOGRAM_KEYS)}
    assert matrix[index["specific"]][index["specific"]] == 1
    assert matrix[index["specific"]][index["less specific"]] == 1
    assert matrix[index["wrong"]][index["generic"]] == 1
    assert matrix[index["unparseable"]][index["unparseable"]] == 1
    assert sum(map(sum, matrix)) == 10
    assert result["agreement"] == pytest.approx(7 / 10)
    labels_a = ["unparseable" if x is None else x for x in A]
    labels_b = ["unparseable" if x is None else x for x in B]
    assert result["kappa"] == pytest.approx(hand_kappa(labels_a, labels_b))
    pairs = [(d["a"], d["b"], d["count"]) for d in result["top_disagreements"]]
    assert sorted(pairs) == sorted(
        [("specific", "less specific", 1), ("wrong", "generic", 1), ("specific", "more specific", 1)]
    )
    assert result["per_source"]["food101"]["n"] == 10


def test_most_frequent_disagreement_comes_first(verdict_factory):
    a = verdict_factory("cub200", [["generic"]] * 3 + [["wrong"]] + [["specific"]] * 2)
    b = verdict_factory("cub200", [["less specific"]] * 3 + [["abstain"]] + [["specific"]] * 2)
    top = compare_verdicts(AgreementInputs("a", a, "b", b))["top_disagreements"]
    assert (top[0]["a"], top[0]["b"], top[0]["count"]) == ("generic", "less specific", 3)
    assert len(top[0]["examples"]) == 3


def test_kappa_is_undefined_when_both_judges_use_one_label(verdict_factory):
    a = verdict_factory("cub200", [["wrong"]] * 4)
    result = compare_verdicts(AgreementInputs("a", a, "b", list(a)))
    assert result["agreement"] == 1.0 and result["kappa"] is None
    assert result["top_disagreements"] == []


def test_mismatched_files_are_refused(verdict_factory):
    a = verdict_factory("cub200", [["wrong"]])
    with pytest.raises(ValueError, match="share no"):
        compare_verdicts(AgreementInputs("a", a, "b", verdict_factory("food101", [["wrong"]], prefix="z")))
    moved = [v.__class__(**{**v.__dict__, "data_source": "food101"}) for v in a]
    with pytest.raises(ValueError, match="'cub200' in a but 'food101' in b"):
        compare_verdicts(AgreementInputs("a", a, "b", moved))


def test_agree_cli_writes_json_markdown_and_heatmap(tmp_path, verdict_factory, jsonl_writer):
    from PIL import Image

    from speciarl_verl.evaluation.plots import PLOT_SIZES

    a = jsonl_writer(tmp_path / "a.jsonl", [v.to_json() for v in verdict_factory("food101", [[x] for x in A])])
    b = jsonl_writer(tmp_path / "b.jsonl", [v.to_json() for v in verdict_factory("food101", [[x] for x in B])])
    out = tmp_path / "agree"
    assert speciarl(["eval", "agree", "--verdicts", str(a), "--verdicts", str(b), "--out", str(out)]) == 0
    result = json.loads((out / "agreement.json").read_text())
    assert (result["a"], result["b"], result["matched"]) == ("a", "b", 10)
    text = (out / "agreement.md").read_text()
    assert "Cohen's kappa" in text and "| specific | less specific | 1 |" in text
    assert Image.open(out / "agreement_heatmap.png").size == PLOT_SIZES["agreement_heatmap"]
    assert speciarl(["eval", "agree", "--verdicts", str(a), "--out", str(out)]) == 2
