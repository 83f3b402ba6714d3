"""Copies that name classes their own way, one-split copies, dropped list lines and the subset draw,
CUB's repeated ids and folder prefixes, and FGVC families that name a variant."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from speciarl_verl.cli import main
from speciarl_verl.core.categories import Category
from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet, list_records
from speciarl_verl.data.hf_source import read_hf_source
from speciarl_verl.data.shipped_lists import class_names
from speciarl_verl.data.source_record import DataSourceError, ProblemLog
from speciarl_verl.judge.offline import decide_offline
from speciarl_verl.judge.verifier import VerificationRequest

QUIET = BuildOptions(progress=False)


def hf_records(dataset, copy, split="train", skip_bad=False):
    problems = ProblemLog(skip_bad)
    return read_hf_source(get_adapter(dataset), copy, split, problems), problems


def rows(parquet):
    return pq.read_table(parquet).to_pylist()


# --- Hugging Face class names ------------------------------------------------------------------


def test_hf_class_names_that_match_no_class_are_refused_in_one_line(make_hf_copy):
    names = ["abyssinian", "unicorn", "griffin", "dragon", "phoenix"]
    copy = make_hf_copy("pets", names, {"train": [0, 1, 2, 3, 4, 0]})
    with pytest.raises(DataSourceError) as caught:
        hf_records("oxford_pets", copy)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{copy}: 4 of 5 class names match no oxford_pets class: 'unicorn', 'griffin', 'dragon', ..." in message
    assert "(expected names such as 'Abyssinian', 'american_bulldog', 'american_pit_bull_terrier', ...)" in message
    assert "--skip-bad" in message


def test_with_skip_bad_rows_of_unmatched_classes_are_skipped_and_counted(make_hf_copy, tmp_path, capsys):
    copy = make_hf_copy("pets", ["abyssinian", "unicorn", "sphynx"], {"train": [0, 1, 2, 1]})
    report = build_parquet(
        SourceSpec("oxford_pets", copy, "train"), tmp_path / "p.parquet", BuildOptions(skip_bad=True, progress=False)
    )
    assert [r["reward_model"]["ground_truth"] for r in rows(report.parquet)] == ["Abyssinian", "Sphynx"]
    assert len(report.skipped) == 2
    assert report.skipped[0] == f"{copy} split 'train' row 1: class 'unicorn' (label 1) is not a oxford_pets class"
    assert json.loads(report.manifest.read_text())["skipped"] == 2
    argv = ["data", "build", "--dataset", "oxford_pets", "--root", str(copy), "--split", "train", "--no-progress",
            "--out", str(tmp_path / "cli.parquet")]  # fmt: skip
    capsys.readouterr()  # what saving the copy printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 3 class names match no oxford_pets class: 'unicorn'" in err
    assert main([*argv, "--skip-bad"]) == 0
    assert "oxford_pets train (hf): 2 rows, 2 classes, 2 listed, 0 re-encoded, 2 skipped" in capsys.readouterr().out


def test_cub_copy_names_are_matched_through_the_synonym_list(make_hf_copy):
    names = ["Brewer's Blackbird", "001.Black_footed_Albatross", "Arctic Tern"]
    copy = make_hf_copy("cub", names, {"train": [0, 1, 2]})
    records, _ = hf_records("cub200", copy)
    assert [(r.cls.class_id, r.cls.class_name) for r in records] == [
        (8, "009.Brewer_Blackbird"),
        (0, "001.Black_footed_Albatross"),
        (140, "141.Artic_Tern"),
    ]


def test_flowers_copy_named_by_label_number_in_text_order_is_read_by_number(make_hf_copy, tmp_path):
    names = sorted(str(number) for number in range(1, 103))  # "1", "10", "100", "101", "102", "11", ...
    labels = [names.index("77"), names.index("1"), names.index("10")]
    copy = make_hf_copy("flowers", names, {"test": labels})
    records, _ = hf_records("flowers102", copy, "test")
    flowers = class_names("flowers102.txt")
    assert [(r.cls.class_id, r.cls.ground_truth) for r in records] == [
        (76, "passion flower"),
        (0, flowers[0]),
        (9, flowers[9]),
    ]
    report = build_parquet(SourceSpec("flowers102", copy, "test"), tmp_path / "f.parquet", QUIET)
    written = [r["reward_model"]["ground_truth"] for r in rows(report.parquet)]
    assert written == ["passion flower", "pink primrose", flowers[9]]


def test_numbered_names_outside_the_one_based_numbers_or_of_another_dataset_are_refused(make_hf_copy):
    zero_based = make_hf_copy("flowers0", [str(n) for n in range(102)], {"test": [0, 1]})
    expected = r"official 1-based class numbers 1\.\.102, each once, but these run 0\.\.101"
    with pytest.raises(DataSourceError, match=expected):
        hf_records("flowers102", zero_based, "test", skip_bad=True)
    numbered_birds = make_hf_copy("cub_numbers", ["1", "2", "3"], {"train": [0, 1, 2]})
    with pytest.raises(DataSourceError, match=r"3 of 3 class names match no cub200 class: '1', '2', '3' \(expected"):
        hf_records("cub200", numbered_birds)


def test_cars_copy_with_numbered_or_year_first_names_gets_the_official_class_and_make(make_hf_copy):
    names = ["0001_AM_General_Hummer_SUV_2000", "2008 Acura TL Type-S", "Ram C/V Cargo Van Minivan 2012"]
    copy = make_hf_copy("cars", names, {"test": [0, 1, 2]})
    records, _ = hf_records("stanford_cars", copy, "test")
    assert [(r.cls.class_id, r.cls.ground_truth, r.cls.parents) for r in records] == [
        (0, "AM General Hummer SUV 2000", ("AM General Hummer", "AM General")),
        (3, "Acura TL Type-S 2008", ("Acura TL", "Acura")),
        (173, "Ram C/V Cargo Van Minivan 2012", ("Ram C/V", "Ram")),
    ]


def test_two_copy_names_for_one_class_are_refused(make_hf_copy):
    copy = make_hf_copy("cub_twice", ["Brewer Blackbird", "Brewer's Blackbird"], {"train": [0, 1]})
    with pytest.raises(DataSourceError, match=r"'Brewer Blackbird' and \"Brewer's Blackbird\" both match cub200 class"):
        hf_records("cub200", copy, skip_bad=True)


# --- one-split copies and --split -------------------------------------------------------------


def test_a_one_split_copy_is_refused_for_another_split(make_hf_copy, hf_copy, tmp_path, capsys):
    train_only = make_hf_copy("pets_train", ["abyssinian", "sphynx"], {"train": [0, 1, 1]}, single=True)
    with pytest.raises(DataSourceError, match=r"holds the split 'train' only, but split 'test' was asked for"):
        hf_records("oxford_pets", train_only, "test", skip_bad=True)
    records, _ = hf_records("oxford_pets", train_only, "train")
    assert [r.cls.ground_truth for r in records] == ["Abyssinian", "Sphynx", "Sphynx"]
    # the split folder of a DatasetDict, and a hub-style parquet shard, name their split too
    expected = r"pets_hf/train: this copy holds the split 'train' only, but split 'test'"
    with pytest.raises(DataSourceError, match=expected):
        hf_records("oxford_pets", hf_copy / "pets_hf" / "train", "test")
    shard = hf_copy / "pets_parquet" / "data" / "train-00000-of-00001.parquet"
    with pytest.raises(DataSourceError, match=r"holds the split 'train' only, but split 'test' was asked for"):
        hf_records("oxford_pets", shard, "test")
    argv = ["data", "build", "--dataset", "oxford_pets", "--root", str(train_only), "--split", "test",
            "--no-progress", "--out", str(tmp_path / "p.parquet")]  # fmt: skip
    capsys.readouterr()  # what saving the copy printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'train' only, but split 'test' was asked for" in err
    assert not (tmp_path / "p.parquet").exists()


# --- the subset draw does not move when a list line is dropped ---------------------------------


@pytest.fixture
def long_food_root(food_root):
    """The Food-101 fixture with 12 train lines (the 3 images listed under 4 ids each)."""
    base = food_root / "food-101"
    entries = []
    for entry in [line for line in (base / "meta" / "train.txt").read_text().splitlines() if line]:
        folder, image = entry.split("/")
        for copy in range(4):
            name = f"{folder}/{image}{copy}"
            (base / "images" / f"{name}.jpg").write_bytes((base / "images" / f"{entry}.jpg").read_bytes())
            entries.append(name)
    (base / "meta" / "train.txt").write_text("\n".join(entries) + "\n")
    return food_root


def drawn_ids(report):
    return [r["extra_info"]["image_id"] for r in rows(report.parquet)]


def break_line(root, number):
    listing = root / "food-101" / "meta" / "train.txt"
    lines = listing.read_text().splitlines()
    dropped = lines[number - 1]
    lines[number - 1] = "no_such_class/1"
    listing.write_text("\n".join(lines) + "\n")
    return dropped


@pytest.mark.parametrize("sampler", ["reference", "per_source"])
def test_dropping_a_bad_line_changes_no_other_image_of_the_draw(long_food_root, cub_root, tmp_path, sampler):
    def build(name, subset=5):
        specs = [
            SourceSpec("food101", long_food_root, "train", subset=subset),
            SourceSpec("cub200", cub_root, "train", subset=2),
        ]
        options = BuildOptions(seed=3, sampler=sampler, skip_bad=True, progress=False)
        return build_parquet(specs, tmp_path / f"{name}.parquet", options)

    clean = drawn_ids(build("clean"))
    food, cub = clean[:5], clean[5:]
    listed = [r.image_id for r in list_records(SourceSpec("food101", long_food_root, "train"), ProblemLog())]
    outside = next(i for i, image_id in enumerate(listed) if image_id not in food)
    inside = listed.index(food[1])
    break_line(long_food_root, outside + 1)
    assert drawn_ids(build("outside")) == clean  # the same images, and the next source's draw is untouched
    dropped = break_line(long_food_root, inside + 1)
    after = build("inside")
    assert len(after.skipped) == 2 and "line" in after.skipped[0]
    if sampler == "reference":
        assert drawn_ids(after) == [i for i in food if i != dropped] + cub  # the method's images, only fewer
    else:
        kept = [i for i in food if i != dropped]
        assert drawn_ids(after)[:4] == kept and drawn_ids(after)[5:] == cub and len(drawn_ids(after)) == 7


def test_reference_draw_matches_the_methods_code_over_the_listed_lines(long_food_root, tmp_path):
    listed = [r.image_id for r in list_records(SourceSpec("food101", long_food_root, "train"), ProblemLog())]
    dropped = break_line(long_food_root, 2)
    expected = [listed[i] for i in random.Random(11).sample(range(len(listed)), 6) if listed[i] != dropped]
    report = build_parquet(
        SourceSpec("food101", long_food_root, "train", subset=6),
        tmp_path / "r.parquet",
        BuildOptions(seed=11, sampler="reference", skip_bad=True, progress=False),
    )
    assert drawn_ids(report) == expected


# --- CUB: repeated image ids, folder prefix vs label --------------------------------------------


def cub(root, split, skip_bad=False):
    problems = ProblemLog(skip_bad)
    return get_adapter("cub200").read_raw(root, split, problems), problems


def test_cub_image_id_listed_twice_is_reported_not_overwritten(cub_root, tmp_path):
    images = cub_root / "CUB_200_2011" / "images.txt"
    images.write_text(images.read_text() + "3 002.Laysan_Albatross/Laysan_Albatross_0044_784.jpg\n")
    with pytest.raises(DataSourceError, match=r"images.txt line 6: image id 3 is listed again \(lines 3, 6\)"):
        cub(cub_root, "train")
    train, problems = cub(cub_root, "train", skip_bad=True)
    assert [r.image_id for r in train] == ["2", "5"] and len(problems.problems) == 1
    test, problems = cub(cub_root, "test")  # image 3 is a train image: the test split is not concerned
    assert [r.image_id for r in test] == ["1", "4"]
    report = build_parquet(
        SourceSpec("cub200", cub_root, "train"), tmp_path / "c.parquet", BuildOptions(skip_bad=True, progress=False)
    )
    assert report.rows == 2 and len(report.skipped) == 1 and "listed again" in report.skipped[0]


def test_cub_label_listed_twice_is_reported(cub_root):
    labels = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text() + "2 2\n")
    expected = r"image_class_labels.txt line 6: image id 2 is listed again \(lines 5, 6\)"
    with pytest.raises(DataSourceError, match=expected):
        cub(cub_root, "train")


def test_cub_class_id_listed_twice_in_classes_txt_is_refused_even_when_skipping(cub_root):
    classes = cub_root / "CUB_200_2011" / "classes.txt"
    classes.write_text(classes.read_text() + "2 003.Sooty_Albatross\n")
    with pytest.raises(DataSourceError, match=r"classes.txt line 4: class id 2 is listed again \(lines 2, 4\)"):
        cub(cub_root, "train", skip_bad=True)


def test_cub_folder_prefix_that_disagrees_with_the_label_is_reported(cub_root):
    labels = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("3 2", "3 1"))
    message = (
        r"images.txt line 3: the folder of '002.Laysan_Albatross/Laysan_Albatross_0082_524.jpg' says class 2 but "
        r"image_class_labels.txt line 1 gives class 1 \(image 3\)"
    )
    with pytest.raises(DataSourceError, match=message):
        cub(cub_root, "train")
    train, problems = cub(cub_root, "train", skip_bad=True)
    assert [r.image_id for r in train] == ["2", "5"] and len(problems.problems) == 1


# --- FGVC: a family that names a variant is far ---------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "family", "maker"),
    [
        ("A321", "A320", "Airbus"),
        ("A318", "A320", "Airbus"),
        ("CRJ-900", "CRJ-700", "Canadair"),
        ("MD-87", "MD-80", "McDonnell Douglas"),
        ("ERJ 145", "Embraer ERJ 145", "Embraer"),
        ("ERJ 135", "Embraer ERJ 145", "Embraer"),
    ],
)
def test_fgvc_family_that_names_a_variant_is_far_and_left_to_the_llm(variant, family, maker):
    adapter = get_adapter("fgvc_aircraft")
    info = adapter.class_info(adapter.class_for_name(variant).class_id, variant, parents=(family, maker))
    assert info.parents == (family, maker) and info.parent_levels == ("far", "far")
    row = {
        "ground_truth": info.ground_truth,
        **{key: list(getattr(info, key)) for key in ("parents", "parent_levels", "domain_nouns", "synonyms")},
    }
    request = VerificationRequest.for_row(info.ground_truth, family, "fgvc_aircraft", row)
    assert decide_offline(request) is None  # not filed *less specific* without the LLM judge
    boeing = adapter.class_info(adapter.class_for_name("737-800").class_id, "737-800", ("Boeing 737", "Boeing"))
    assert boeing.parent_levels == ("close", "far")
    boeing_row = {"parents": list(boeing.parents), "parent_levels": list(boeing.parent_levels)}
    request = VerificationRequest.for_row("737-800", "Boeing 737", "fgvc_aircraft", boeing_row)
    assert decide_offline(request) is Category.LESS_SPECIFIC  # a true family still is


def test_fgvc_raw_layout_writes_a_far_family_for_a_sibling_named_family(fgvc_root):
    data = fgvc_root / "fgvc-aircraft-2013b" / "data"
    (data / "variants.txt").write_text((data / "variants.txt").read_text() + "A321\n")
    for level, label in (("variant", "A321"), ("family", "A320"), ("manufacturer", "Airbus")):
        path = data / f"images_{level}_train.txt"
        path.write_text(path.read_text() + f"0056978x {label}\n")
    (data / "images" / "0056978x.jpg").write_bytes((data / "images" / "0056978.jpg").read_bytes())
    records = get_adapter("fgvc_aircraft").read_raw(fgvc_root, "train", ProblemLog())
    a321 = next(r for r in records if r.cls.ground_truth == "A321")
    assert a321.cls.parents == ("A320", "Airbus") and a321.cls.parent_levels == ("far", "far")
    assert next(r for r in records if r.cls.ground_truth == "707-320").cls.parent_levels == ("close", "far")


def test_a_coop_split_draw_is_over_its_rows_so_a_dropped_row_moves_no_other(long_food_root, tmp_path):
    base = long_food_root / "food-101"
    entries = [line for line in (base / "meta" / "train.txt").read_text().splitlines() if line]
    labels = {name: label for label, name in enumerate(sorted({entry.split("/")[0] for entry in entries}))}
    coop = {"train": [[f"{entry}.jpg", labels[entry.split("/")[0]], entry.split("/")[0]] for entry in entries]}

    def build(name):
        split_file = tmp_path / f"{name}.json"
        split_file.write_text(json.dumps(coop))
        spec = SourceSpec("food101", long_food_root, "train", subset=4, split_file=split_file)
        options = BuildOptions(seed=5, sampler="reference", skip_bad=True, progress=False)
        return drawn_ids(build_parquet(spec, tmp_path / f"{name}.parquet", options))

    clean = build("clean")
    ids = [Path(row[0]).with_suffix("").as_posix() for row in coop["train"]]
    outside = next(i for i, image_id in enumerate(ids) if image_id not in clean)
    coop["train"][outside][2] = "no_such_class"
    assert build("outside") == clean
    inside = ids.index(clean[0])
    coop["train"][inside][2] = "no_such_class"
    assert build("inside") == clean[1:]
