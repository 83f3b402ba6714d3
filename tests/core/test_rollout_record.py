"""The per-rollout record: rendering into reward_extra_info and reading it back."""

import itertools

import pytest

from speciarl_verl import Category
from speciarl_verl.core.rollout_record import (
    RECORD_KEYS,
    STATUSES,
    MissingRecordError,
    RolloutRecord,
    read_record_fields,
    record_info,
)

C = Category
CATEGORY_KEYS = [f"cat_{c.slug}" for c in Category]


def possible_records():
    """Every status with every verdict it can carry, a noised category, and the group fields set or not."""
    for status in STATUSES:
        verdicts = list(Category) if status == "judged" else [None]
        for verdict, noised, grouped in itertools.product(verdicts, (False, True), (False, True)):
            category = None if verdict is None else (C.ABSTAIN if noised else verdict)
            yield RolloutRecord(
                status=status,
                answer=None if status == "unparseable" else "gull",
                verdict=verdict,
                verdict_source=None if verdict is None else "llm",
                category=category,
                noised=noised,
                overlong_penalty=-0.25,
                acc=1,
                judge_latency_s=0.5 if verdict else None,
                judge_error="HTTP 503" if status == "judge_error" else None,
                group_best=C.SPECIFIC if grouped else None,
                group_size=10 if grouped else None,
                masked=grouped and status == "judge_error",
                image_id="Laridae_0042" if grouped else None,
                judge_attempts=None if status == "unparseable" else 2,
            )


def test_a_judged_record_renders_every_key_in_order():
    info = record_info(
        "judged", "gull", C.GENERIC, "cache", C.LESS_SPECIFIC, True, -0.5, 1, 0.2, None, C.SPECIFIC, 8,
        image_id="Laridae_0042", judge_attempts=2,
    )  # fmt: skip
    assert list(info) == list(RECORD_KEYS)
    assert info == {
        "acc": 1.0,
        "status": "judged",
        "answer": "gull",
        "verdict": "generic",
        "verdict_source": "cache",
        "category": "less specific",
        "level": 3,
        "noised": 1.0,
        "parse_failed": 0.0,
        "judge_failed": 0.0,
        "correct": 1.0,
        **{key: float(key == "cat_generic") for key in CATEGORY_KEYS},
        "judge_latency_s": 0.2,
        "judge_attempts": 2,
        "judge_error": None,
        "overlong_penalty": -0.5,
        "group_best": "specific",
        "group_size": 8,
        "masked": 0.0,
        "image_id": "Laridae_0042",
    }
    assert type(info["acc"]) is float


def test_unparseable_and_failed_rollouts_count_in_every_rate_with_their_own_flag():
    unparseable = record_info("unparseable", None, None, None, None, False, 0.0, -1.0)
    failed = record_info("judge_error", "gull", None, None, None, False, 0.0, 0.0, judge_error="HTTP 503")
    assert (unparseable["level"], unparseable["correct"], unparseable["parse_failed"]) == (-1, 0.0, 1.0)
    assert all(unparseable[key] == 0.0 for key in CATEGORY_KEYS)
    # verl counts a validation answer without acc as 0 in acc, so every rate has every answer in its
    # denominator: a failed judge counts 0 in acc, correct and cat_*, and 1 in judge_failed
    assert (failed["acc"], failed["correct"], failed["judge_failed"], failed["judge_error"]) == (
        0.0,
        0.0,
        1.0,
        "HTTP 503",
    )
    assert all(failed[key] == 0.0 for key in CATEGORY_KEYS)
    for info in (unparseable, failed):
        assert sum(info[key] for key in CATEGORY_KEYS) + info["parse_failed"] + info["judge_failed"] == 1.0


def test_the_record_and_the_fast_renderer_agree_and_read_back():
    for record in possible_records():
        info = record.to_extra_info()
        assert tuple(info) == RECORD_KEYS  # every possible record carries the same keys, in one order
        fields = [getattr(record, name) for name in RolloutRecord.__dataclass_fields__]
        assert record_info(*fields) == info
        assert RolloutRecord.from_extra_info(info) == record
        assert read_record_fields(info) == (*fields[:7], float(record.acc), *fields[8:])


def test_each_rendering_is_a_dict_of_its_own():
    first = record_info("judged", "gull", C.GENERIC, "cache", C.GENERIC, False, 0.0, 1.0)
    first["cat_generic"] = 7.0
    first["status"] = "tampered"
    second = record_info("judged", "gull", C.GENERIC, "cache", C.GENERIC, False, 0.0, 1.0)
    assert (second["cat_generic"], second["status"]) == (1.0, "judged")


def test_impossible_records_are_refused():
    with pytest.raises(ValueError, match="verdict exactly when it was judged"):
        record_info("judged", "gull", None, None, None, False, 0.0, 0.0)
    with pytest.raises(ValueError, match="verdict exactly when it was judged"):
        RolloutRecord("unparseable", None, C.WRONG, None, None, False, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown rollout status 'maybe'"):
        record_info("maybe", "gull", None, None, None, False, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown rollout status"):
        read_record_fields({**record_info("unparseable", None, None, None, None, False, 0.0, -1.0), "status": ["x"]})


def test_reading_folds_label_spelling_and_names_what_is_wrong():
    info = record_info("judged", "gull", C.LESS_SPECIFIC, "llm", C.LESS_SPECIFIC, False, 0.0, 1.0)
    fields = read_record_fields({**info, "verdict": " Less  Specific", "category": "LESS SPECIFIC"})
    assert fields[2] is C.LESS_SPECIFIC
    assert fields[4] is C.LESS_SPECIFIC
    with pytest.raises(ValueError, match="not a verdict category: 'very specific'"):
        read_record_fields({**info, "category": "very specific"})
    incomplete = {key: value for key, value in info.items() if key not in ("acc", "noised")}
    with pytest.raises(MissingRecordError, match=r"trajectory u1_3_0 .*missing \['acc', 'noised'\]"):
        read_record_fields(incomplete, where="trajectory u1_3_0")
