"""The row check training runs before its first step, on real files written by our builder."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from speciarl_verl.cli import main
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
from speciarl_verl.data.row_check import SHOWN_ROWS, BadRowsError, check_file, check_files, check_rows


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A synthetic_shapes parquet of 12 rows (index 0..11), as `speciarl data build` writes it."""
    folder = tmp_path_factory.mktemp("rows")
    spec = SourceSpec("synthetic_shapes", ".", "train", subset=12)
    return build_parquet(spec, folder / "good.parquet", BuildOptions(seed=0, progress=False)).parquet


def rewrite(good, path, change, schema=None):
    """A copy of ``good`` with ``change(rows)`` applied to its rows (same schema unless one is given)."""
    table = pq.read_table(good)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema or table.schema), path)
    return path


def png_cut_short() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()[:40]  # the header survives, the image data does not


def set_truth(value):
    def change(row):
        row["reward_model"]["ground_truth"] = value

    return change


def set_images(value):
    def change(row):
        row["images"] = value

    return change


def set_bytes(value):
    def change(row):
        row["images"][0]["bytes"] = value

    return change


def set_prompt(value):
    def change(row):
        row["prompt"] = value

    return change


BAD_KINDS = {
    "truth-null": (set_truth(None), "no ground truth (reward_model.ground_truth is null)"),
    "truth-empty": (set_truth(""), "no ground truth (reward_model.ground_truth is '')"),
    "truth-blank": (set_truth("  "), "no ground truth (reward_model.ground_truth is '  ')"),
    "reward-model-null": (lambda row: row.update(reward_model=None), "no ground truth"),
    "no-image": (set_images([]), "no image"),
    "images-null": (set_images(None), "no image"),
    "bytes-null": (set_bytes(None), "image 0 has no bytes (null)"),
    "bytes-empty": (set_bytes(b""), "image 0 has no bytes (empty)"),
    "not-an-image": (set_bytes(b"GIF? no, plain text"), "image 0 unreadable (UnidentifiedImageError: "),
    "png-cut-short": (set_bytes(png_cut_short()), "image 0 unreadable ("),
    "prompt-null": (set_prompt(None), "no prompt (prompt is null)"),
    "prompt-empty": (set_prompt([]), "no prompt (prompt is empty)"),
    "prompt-no-text": (set_prompt([{"role": "user", "content": ""}]), "no prompt (prompt has no text)"),
}


def test_a_built_file_passes(good):
    assert check_rows(good) == []
    [checked] = check_files([good])
    assert checked.rows == 12 and checked.bad == () and checked.path == str(good)


@pytest.mark.parametrize("kind", BAD_KINDS, ids=list(BAD_KINDS))
def test_each_kind_of_bad_row_is_named_with_file_row_index_and_source(good, tmp_path, kind):
    change, problem = BAD_KINDS[kind]
    path = rewrite(good, tmp_path / f"{kind}.parquet", lambda rows: change(rows[7]))
    [bad] = check_rows(path)
    assert (bad.path, bad.row, bad.index, bad.data_source) == (str(path), 7, 7, "synthetic_shapes")
    assert len(bad.problems) == 1 and bad.problems[0].startswith(problem), bad.problems
    with pytest.raises(BadRowsError) as caught:
        check_files([path])
    message = str(caught.value)
    assert message.startswith(f"{path}: 1 of 12 rows are bad: row 7 (index 7, data_source 'synthetic_shapes'): ")
    assert problem in message and "\n" not in message
    assert caught.value.bad_rows == (bad,)


def test_a_row_with_several_problems_lists_them_all(good, tmp_path):
    def change(rows):
        set_truth(None)(rows[0])
        set_images([])(rows[0])

    [bad] = check_rows(rewrite(good, tmp_path / "two.parquet", change))
    assert bad.problems == ("no image", "no ground truth (reward_model.ground_truth is null)")


def test_many_bad_rows_are_listed_up_to_the_cap_with_the_total(good, tmp_path):
    def change(rows):
        for position in (1, 2, 4, 5, 6, 8, 9, 11):
            set_truth("")(rows[position])

    path = rewrite(good, tmp_path / "many.parquet", change)
    assert [bad.row for bad in check_rows(path)] == [1, 2, 4, 5, 6, 8, 9, 11]
    with pytest.raises(BadRowsError) as caught:
        check_files([path])
    message = str(caught.value)
    assert message.startswith(f"{path}: 8 of 12 rows are bad: row 1 (index 1, ")
    assert [f"row {n} (" in message for n in (1, 2, 4, 5, 6, 8, 9, 11)] == [True] * SHOWN_ROWS + [False] * 3
    assert "; ... and 3 more." in message


def test_every_bad_file_is_named_and_a_good_one_is_not(good, tmp_path):
    first = rewrite(good, tmp_path / "first.parquet", lambda rows: set_truth(None)(rows[3]))
    second = rewrite(good, tmp_path / "second.parquet", lambda rows: [set_images([])(row) for row in rows])
    with pytest.raises(BadRowsError) as caught:
        check_files([first, good, second], names=["hdfs://data/first.parquet", "good", "second"])
    message = str(caught.value)
    assert message.startswith("hdfs://data/first.parquet: 1 of 12 rows are bad: row 3 (index 3, ")
    assert "; second: 12 of 12 rows are bad: row 0 (index 0, " in message
    assert "good" not in message.replace("good.parquet", "")
    # five rows in all: the first file's one, then the second's rows 0 to 3
    assert "row 3 (index 3, data_source 'synthetic_shapes'): no image; ... and 8 more." in message
    assert "row 4 (" not in message


def test_a_file_without_the_ground_truth_column_refuses_every_row(good, tmp_path):
    table = pq.read_table(good).drop_columns(["reward_model", "extra_info", "data_source"])
    pq.write_table(table, tmp_path / "bare.parquet")
    bad = check_rows(tmp_path / "bare.parquet")
    assert [row.row for row in bad] == list(range(12))
    assert bad[0].problems == ("no reward_model column (the ground truth's)",)
    assert bad[0].describe() == "row 0: no reward_model column (the ground truth's)"  # no index, no source


def test_a_file_that_is_no_parquet_is_named(tmp_path):
    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"notes\.parquet: not a readable parquet file"):
        check_file(tmp_path / "notes.parquet")


def test_the_check_command_prints_ok_or_exits_2_with_the_same_message(good, tmp_path, capsys):
    assert main(["data", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"ok {good}: 12 rows\n"

    bad = rewrite(good, tmp_path / "bad.parquet", lambda rows: set_bytes(b"junk")(rows[10]))
    assert main(["data", "check", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    with pytest.raises(BadRowsError) as caught:
        check_files([bad])
    assert captured.out == "" and captured.err == f"speciarl data check: {caught.value}\n"
    assert f"{bad}: 1 of 12 rows are bad: row 10 (index 10, data_source 'synthetic_shapes'): image 0" in captured.err

    assert main(["data", "check", str(tmp_path / "missing.parquet")]) == 2
    assert capsys.readouterr().err == f"speciarl data check: {tmp_path / 'missing.parquet'}: no such file\n"
