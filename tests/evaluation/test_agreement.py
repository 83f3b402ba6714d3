import dataclasses
import json

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.agreement import LABELS, AgreementInputs, compare_verdicts


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
    result = compare_verdicts(AgreementInputs("offline", a, "llm", b))
    assert (result["matched"], result["compared"], result["unparseable"], result["undecided"]) == (10, 9, 1, 0)
    assert result["labels"] == list(LABELS) and "unparseable" not in LABELS and "undecided" not in LABELS
    matrix = result["confusion"]
    index = {label: i for i, label in enumerate(LABELS)}
    assert matrix[index["specific"]][index["specific"]] == 1
    assert matrix[index["specific"]][index["less specific"]] == 1
    assert matrix[index["wrong"]][index["generic"]] == 1
    assert sum(map(sum, matrix)) == 9  # the unparseable answer is no verdict of either judge
    assert result["agreement"] == pytest.approx(6 / 9)
    decided = [i for i, x in enumerate(A) if x is not None]
    assert result["kappa"] == pytest.approx(hand_kappa([A[i] for i in decided], [B[i] for i in decided]))
    pairs = [(d["a"], d["b"], d["count"]) for d in result["top_disagreements"]]
    assert sorted(pairs) == sorted(
        [("specific", "less specific", 1), ("wrong", "generic", 1), ("specific", "more specific", 1)]
    )
    assert result["per_source"]["food101"]["n"] == 9


def test_agreement_counts_only_answers_both_judges_decided(verdict_factory):
    """The reviewer's case: four unparseable answers "agreed on" made 0.70 / kappa 0.60 of 0.50 / kappa 0.33."""
    judged_a = ["specific"] * 3 + ["wrong"] * 3
    judged_b = ["specific"] * 3 + ["generic"] * 3
    a = verdict_factory("cub200", [[x] for x in judged_a + [None] * 4])
    b = verdict_factory("cub200", [[x] for x in judged_b + [None] * 4])
    result = compare_verdicts(AgreementInputs("a", a, "b", b))
    assert (result["matched"], result["compared"], result["unparseable"]) == (10, 6, 4)
    assert result["agreement"] == pytest.approx(0.50)
    assert result["kappa"] == pytest.approx(1 / 3)
    assert result["per_source"]["cub200"] == {"n": 6, "agreement": pytest.approx(0.5), "kappa": pytest.approx(1 / 3)}
    assert hand_kappa(judged_a + ["unparseable"] * 4, judged_b + ["unparseable"] * 4) == pytest.approx(0.60)

    # undecided answers are left out too, counted by the judge that left them
    a = verdict_factory("cub200", [[x] for x in [*judged_a, "undecided", "undecided", "wrong", None]])
    b = verdict_factory("cub200", [[x] for x in [*judged_b, "undecided", "specific", "undecided", None]])
    result = compare_verdicts(AgreementInputs("a", a, "b", b))
    assert (result["compared"], result["unparseable"], result["undecided"]) == (6, 1, 3)
    assert (result["undecided_a"], result["undecided_b"]) == (2, 2)
    assert result["agreement"] == pytest.approx(0.50) and result["kappa"] == pytest.approx(1 / 3)


def test_no_answer_decided_by_both_is_refused(verdict_factory):
    a = verdict_factory("cub200", [[None], ["undecided"]])
    b = verdict_factory("cub200", [[None], ["wrong"]])
    with pytest.raises(ValueError, match="share no answer both judges decided"):
        compare_verdicts(AgreementInputs("a", a, "b", b))


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
    with pytest.raises(ValueError, match=r"^a: verdict 1: sample 'cub200/0' answer 0 has no verdict in b"):
        compare_verdicts(AgreementInputs("a", a, "b", verdict_factory("food101", [["wrong"]], prefix="z")))
    moved = [dataclasses.replace(v, data_source="food101") for v in a]
    with pytest.raises(ValueError, match="'food101' in b but 'cub200' in a"):
        compare_verdicts(AgreementInputs("a", a, "b", moved))


def test_files_that_judged_other_answers_are_refused_naming_file_and_line(
    tmp_path, verdict_factory, jsonl_writer, capsys
):
    def answered(labels, answers):
        verdicts = verdict_factory("cub200", labels)
        return [dataclasses.replace(v, answer=x).to_json() for v, x in zip(verdicts, answers, strict=True)]

    labels = [["specific"], ["wrong"], ["generic"]]
    a = jsonl_writer(tmp_path / "a.jsonl", answered(labels, ["Laysan albatross", "gull", "bird"]))
    b = jsonl_writer(tmp_path / "b.jsonl", answered(labels, ["Laysan albatross", "tern", "bird"]))
    out = tmp_path / "agree"
    assert speciarl(["eval", "agree", "--verdicts", str(a), "--verdicts", str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"{b}:2: sample 'cub200/1' answer 0 reads 'tern' in b but 'gull' in a ({a}:2)" in err
    assert not (out / "agreement.json").exists()

    # a key in one file only: the first one names its own file and line (blank lines counted)
    short = tmp_path / "short.jsonl"
    short.write_text("\n" + "".join(json.dumps(row) + "\n" for row in answered(labels[:2], ["x", "y"])))
    full = jsonl_writer(tmp_path / "full.jsonl", answered(labels, ["x", "y", "z"]))
    assert speciarl(["eval", "agree", "--verdicts", str(short), "--verdicts", str(full), "--out", str(out)]) == 2
    assert f"{full}:3: sample 'cub200/2' answer 0 has no verdict in short" in capsys.readouterr().err
    assert speciarl(["eval", "agree", "--verdicts", str(full), "--verdicts", str(short), "--out", str(out)]) == 2
    assert f"{full}:3: sample 'cub200/2' answer 0 has no verdict in short" in capsys.readouterr().err
    # a different answer text (only its case here) names both lines
    short.write_text("\n" + "".join(json.dumps(row) + "\n" for row in answered(labels[:2], ["x", "Y"])))
    assert speciarl(["eval", "agree", "--verdicts", str(short), "--verdicts", str(full), "--out", str(out)]) == 2
    assert f"{full}:2: sample 'cub200/1' answer 0 reads 'y' in full but 'Y' in short ({short}:3)" in (
        capsys.readouterr().err
    )
    assert speciarl(["eval", "agree", "--verdicts", str(full), "--verdicts", str(full), "--out", str(out)]) == 0


def test_agree_cli_writes_json_markdown_and_heatmap(tmp_path, verdict_factory, jsonl_writer):
    from PIL import Image

    from speciarl_verl.evaluation.plots import PLOT_SIZES

    a = jsonl_writer(tmp_path / "a.jsonl", [v.to_json() for v in verdict_factory("food101", [[x] for x in A])])
    b = jsonl_writer(tmp_path / "b.jsonl", [v.to_json() for v in verdict_factory("food101", [[x] for x in B])])
    out = tmp_path / "agree"
    assert speciarl(["eval", "agree", "--verdicts", str(a), "--verdicts", str(b), "--out", str(out)]) == 0
    result = json.loads((out / "agreement.json").read_text())
    assert (result["a"], result["b"], result["matched"], result["compared"]) == ("a", "b", 10, 9)
    text = (out / "agreement.md").read_text()
    assert "Cohen's kappa" in text and "| specific | less specific | 1 |" in text
    assert "left out: 1 unparseable, 0 undecided" in text
    assert Image.open(out / "agreement_heatmap.png").size == PLOT_SIZES["agreement_heatmap"]
    assert speciarl(["eval", "agree", "--verdicts", str(a), "--out", str(out)]) == 2
