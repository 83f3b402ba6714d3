import json
from dataclasses import replace

import pytest

from speciarl_verl.core.categories import Category
from speciarl_verl.evaluation.records import PredictionRecord, load_predictions, load_verdicts


def prediction(**overrides):
    row = {
        "sample_id": "fgvc_aircraft/0056978",
        "data_source": "fgvc_aircraft",
        "ground_truth": "BAE 146-200",
        "prediction_index": 0,
        "response": "<think>four engines, high wing</think><answer>BAE 146</answer>",
    }
    row.update(overrides)
    return row


def test_answer_is_parsed_from_the_response_when_absent(tmp_path, jsonl_writer):
    path = jsonl_writer(
        tmp_path / "p.jsonl",
        [
            prediction(),
            prediction(prediction_index=1, response="no tags at all"),
            prediction(prediction_index=2, response="ignored", answer="Avro RJ85"),
            prediction(
                prediction_index=3,
                answer=None,
                parents=["BAE 146"],
                parent_levels=["close"],
                domain_nouns=["aircraft"],
                synonyms=["Avro RJ85"],
            ),
        ],
    )
    records = load_predictions(path)
    assert [r.answer for r in records] == ["BAE 146", None, "Avro RJ85", None]
    assert records[3].parents == ("BAE 146",) and records[3].synonyms == ("Avro RJ85",)
    assert records[3].parent_levels == ("close",) and records[3].domain_nouns == ("aircraft",)
    assert records[0].parent_levels == () == records[0].domain_nouns  # an older row: every parent far, no nouns


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (prediction(sample_id=""), "'sample_id' must be a non-empty string"),
        ({k: v for k, v in prediction().items() if k != "ground_truth"}, "missing key 'ground_truth'"),
        (prediction(prediction_index=-1), "'prediction_index' must be an integer >= 0"),
        (prediction(prediction_index=True), "'prediction_index' must be an integer >= 0"),
        ({k: v for k, v in prediction().items() if k != "response"}, "needs 'response'"),
        (prediction(answer=3), "'answer' must be a string or null"),
        (prediction(parents="BAE 146"), "'parents' must be a list of strings"),
        (prediction(parents=["BAE 146"], parent_levels=["near"]), r"'parent_levels' \['near'\] must give one of"),
        (prediction(parents=["BAE 146"], parent_levels=["close", "far"]), "for each of the 'parents'"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_bad_prediction_rows_name_file_and_line(tmp_path, jsonl_writer, bad_row, message):
    path = jsonl_writer(tmp_path / "p.jsonl", [prediction(prediction_index=5), bad_row])
    with pytest.raises(ValueError, match=message) as excinfo:
        load_predictions(path)
    assert str(excinfo.value).startswith(f"{path}:2: ")


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(prediction()) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{path}:3: not valid JSON"):
        load_predictions(path)


def test_repeated_answer_and_conflicting_sample_facts_are_refused(tmp_path, jsonl_writer):
    path = jsonl_writer(tmp_path / "dup.jsonl", [prediction(), prediction(response="<answer>x</answer>")])
    with pytest.raises(ValueError, match=rf"{path}:2: .*repeats line 1"):
        load_predictions(path)
    path = jsonl_writer(tmp_path / "gt.jsonl", [prediction(), prediction(prediction_index=1, ground_truth="A320")])
    with pytest.raises(ValueError, match=rf"{path}:2: .*but line 1 says"):
        load_predictions(path)


def test_verdict_rows_are_validated_with_file_and_line(tmp_path, jsonl_writer):
    good = {"sample_id": "a", "data_source": "cub200", "prediction_index": 0, "category": "Less Specific"}
    path = jsonl_writer(tmp_path / "v.jsonl", [good, dict(good, prediction_index=1, category=None)])
    records = load_verdicts(path)
    assert [r.category for r in records] == [Category.LESS_SPECIFIC, None]

    path = jsonl_writer(tmp_path / "bad.jsonl", [good, dict(good, prediction_index=1, category="kind of right")])
    with pytest.raises(ValueError, match=rf"^{path}:2: not a verdict category: 'kind of right'"):
        load_verdicts(path)
    path = jsonl_writer(tmp_path / "missing.jsonl", [{k: v for k, v in good.items() if k != "category"}])
    with pytest.raises(ValueError, match=rf"^{path}:1: missing key 'category'"):
        load_verdicts(path)
    path = jsonl_writer(tmp_path / "src.jsonl", [good, dict(good, prediction_index=1, data_source="food101")])
    with pytest.raises(ValueError, match=rf"^{path}:2: sample 'a' has data_source 'food101'"):
        load_verdicts(path)


def test_a_null_category_says_why_and_reads_back_the_same(tmp_path, jsonl_writer):
    base = {"sample_id": "a", "data_source": "cub200", "category": None}
    rows = [
        dict(base, prediction_index=0, source="offline", reason="undecided"),
        dict(base, prediction_index=1, source="unparseable", reason="unparseable"),
        dict(base, prediction_index=2, source="unparseable"),  # written before 'reason' existed
        dict(base, prediction_index=3, category="wrong", source="deferred"),  # an older offline run's placeholder
        dict(base, prediction_index=4, category="wrong", source="llm"),
    ]
    records = load_verdicts(jsonl_writer(tmp_path / "v.jsonl", rows))
    assert [r.outcome for r in records] == ["undecided", "unparseable", "unparseable", "undecided", "wrong"]
    again = load_verdicts(jsonl_writer(tmp_path / "again.jsonl", [r.to_json() for r in records]))
    assert again == records
    assert "reason" not in records[4].to_json()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"category": None, "reason": "skipped"}, "'reason' 'skipped' is only for a null category"),
        ({"category": "wrong", "reason": "undecided"}, "'reason' 'undecided' is only for a null category"),
        ({"category": None, "reason": 1}, "'reason' must be a string or null"),
    ],
)
def test_bad_reasons_are_refused(tmp_path, jsonl_writer, row, message):
    path = jsonl_writer(
        tmp_path / "v.jsonl", [{"sample_id": "a", "data_source": "cub200", "prediction_index": 0, **row}]
    )
    with pytest.raises(ValueError, match=message):
        load_verdicts(path)


def test_undecided_is_the_word_speciarl_verify_writes():
    from speciarl_verl.evaluation.records import UNDECIDED
    from speciarl_verl.judge.cli import UNDECIDED as VERIFY_UNDECIDED

    assert UNDECIDED == VERIFY_UNDECIDED


def test_class_digest_and_judge_fingerprint_are_kept_and_older_rows_still_read(tmp_path, jsonl_writer):
    row = {"sample_id": "a", "data_source": "cub200", "prediction_index": 0, "category": "specific", "judge": "offline"}
    newer = dict(row, class_digest="0123456789abcdef", judge_fingerprint="fedcba9876543210")
    older = dict(row, sample_id="b")  # written before either key existed
    records = load_verdicts(jsonl_writer(tmp_path / "v.jsonl", [newer, older]))
    assert [(r.class_digest, r.judge_fingerprint) for r in records] == [
        ("0123456789abcdef", "fedcba9876543210"),
        (None, None),
    ]
    assert records[0].to_json()["judge_fingerprint"] == "fedcba9876543210"
    assert not {"class_digest", "judge_fingerprint"} & set(records[1].to_json())
    assert load_verdicts(jsonl_writer(tmp_path / "again.jsonl", [r.to_json() for r in records])) == records
    with pytest.raises(ValueError, match=r"v\.jsonl:1: 'judge_fingerprint' must be a string or null, got int"):
        load_verdicts(jsonl_writer(tmp_path / "v.jsonl", [dict(row, judge_fingerprint=7)]))


def test_the_class_digest_covers_each_class_field_and_only_those():
    base = PredictionRecord(
        "a", "fgvc_aircraft", "707-320", 0, "Boeing 707",
        parents=("Boeing 707", "Boeing"), parent_levels=("close", "far"), domain_nouns=("aircraft",), synonyms=("707",),
    )  # fmt: skip
    changed = [
        replace(base, parents=("Boeing 707", "Boeing Co.")),
        replace(base, parent_levels=("close", "close")),
        replace(base, domain_nouns=("aircraft", "plane")),
        replace(base, synonyms=()),
        replace(base, parents=("Boeing", "Boeing 707")),  # the order of parents matters (nearest first)
    ]
    assert len({base.class_digest, *(r.class_digest for r in changed)}) == 1 + len(changed)
    elsewhere = replace(base, sample_id="b", prediction_index=3, answer="bird", ground_truth="707-200")
    assert elsewhere.class_digest == base.class_digest  # the answer and ground truth are stored as they are
