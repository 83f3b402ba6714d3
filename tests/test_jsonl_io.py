"""The JSONL reader names the file, the line and what is wrong."""

from __future__ import annotations

import pytest

from speciarl_verl.cli_errors import UserInputError
from speciarl_verl.jsonl_io import check_field_type, read_jsonl, read_jsonl_objects


def test_lines_are_numbered_from_one_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \r\n[2]\r\n"three"')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, [2]), (5, "three")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"a": 1}\n{not json\n',
            ":2: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        ),
        (b'{"a": 1}\n{"a": 2} x\n', ":2: not valid JSON (Extra data at column 10)"),
        (
            b'{"a": 1}\n{"a": "caf\xe9"}\n',
            ":2: not UTF-8 text (byte 0xe9 at column 11); expected JSONL (one JSON object per line)",
        ),
    ],
)
def test_bad_lines_name_file_line_and_problem(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserInputError) as excinfo:
        list(read_jsonl(path))
    assert str(excinfo.value) == f"{path}{message}"
    assert isinstance(excinfo.value, ValueError)  # callers that catch ValueError keep working


def test_a_parquet_file_given_for_jsonl_is_named_as_such(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    with pytest.raises(UserInputError) as excinfo:
        list(read_jsonl(path))
    assert str(excinfo.value) == f"{path}: a parquet file; expected JSONL (one JSON object per line)"


def test_a_file_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(UserInputError, match=r"missing.jsonl: cannot read it \(No such file or directory\)"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    with pytest.raises(UserInputError, match=r": cannot read it \(Is a directory\)"):
        list(read_jsonl(tmp_path))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": 1}', ":1: missing field 'name'"),
        ('{"name": ["x"], "id": 1}', ":1: field 'name' must be a string, got a list ([\"x\"])"),
        ('{"name": "x", "id": true}', ":1: field 'id' must be an integer, got a boolean (true)"),
        ('{"name": "x", "id": 1.5}', ":1: field 'id' must be an integer, got a number (1.5)"),
        ("null", ":1: expected a JSON object, got null"),
    ],
)
def test_objects_with_required_fields(tmp_path, line, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(UserInputError) as excinfo:
        list(read_jsonl_objects(path, {"name": str, "id": int}))
    assert str(excinfo.value) == f"{path}{message}"


def test_valid_objects_pass_and_long_values_are_shortened(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"name": "x", "id": 3, "extra": null}\n')
    assert list(read_jsonl_objects(path, {"name": str, "id": (int, float)})) == [
        (1, {"name": "x", "id": 3, "extra": None})
    ]
    with pytest.raises(UserInputError) as excinfo:
        check_field_type("y" * 200, int, "f.jsonl:9: field 'id'")
    assert str(excinfo.value) == f"f.jsonl:9: field 'id' must be an integer, got a string (\"{'y' * 56}...)"
