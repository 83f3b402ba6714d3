"""Each adapter reads its dataset's real layout (written by conftest.py) and gets the traps right."""

from __future__ import annotations

import pytest

from speciarl_verl import normalize_label
from speciarl_verl.data.adapters import adapter_names, get_adapter, register_adapter
from speciarl_verl.data.adapters.cub200 import Cub200Adapter
from speciarl_verl.data.shipped_lists import class_names
from speciarl_verl.data.source_record import DataSourceError, ProblemLog


def read(name, root, split, skip_bad=False):
    problems = ProblemLog(skip_bad)
    return get_adapter(name).read_raw(root, split, problems), problems


def by_id(records):
    return {r.image_id: r for r in records}


def test_registry_lists_the_six_benchmarks_and_refuses_a_second_class_under_a_name():
    benchmarks = ["cub200", "fgvc_aircraft", "flowers102", "food101", "oxford_pets", "stanford_cars"]
    assert adapter_names() == [*benchmarks, "synthetic_shapes", "synthetic_shapes_hidden"]
    with pytest.raises(ValueError, match="already been registered"):
        register_adapter("cub200")(type("Other", (Cub200Adapter,), {}))
    with pytest.raises(ValueError, match="Unknown dataset: birds"):
        get_adapter("birds")


def test_cub_joins_on_image_id_and_cleans_class_names(cub_root):
    train, _ = read("cub200", cub_root, "train")
    test, _ = read("cub200", cub_root, "test")
    assert [r.image_id for r in train] == ["2", "3", "5"]
    assert [r.image_id for r in test] == ["1", "4"]
    records = by_id(train + test)
    # image 2 is the second line of images.txt although its file name sorts first
    assert (
        records["2"].source_file == "CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg"
    )
    assert records["2"].image_path.is_file()
    assert records["1"].cls.ground_truth == "Black footed Albatross"
    assert records["1"].cls.class_id == 0 and records["3"].cls.class_id == 1 and records["5"].cls.class_id == 8
    assert records["5"].cls.class_name == "009.Brewer_Blackbird"
    assert records["5"].cls.synonyms == ("Brewer's Blackbird",)
    assert all(r.cls.parents == () == r.cls.parent_levels for r in train + test)
    assert records["1"].cls.domain_nouns == ("bird", "birds")
    assert records["4"].origin.endswith("images.txt line 4")


def test_cub_ground_truth_rule_matches_the_label_normalisation_of_the_class_list():
    adapter = get_adapter("cub200")
    truths = [adapter.ground_truth(name) for name in class_names("cub200.txt")]
    assert truths[0] == "Black footed Albatross" and truths[140] == "Artic Tern"
    assert len({normalize_label(t) for t in truths}) == 200
    # a Hugging Face copy that spells classes like classes.txt finds the official class
    assert adapter.class_for_name("022.Chuck_will_Widow").class_id == 21


def test_fgvc_keeps_leading_zeros_labels_with_spaces_and_the_hierarchy(fgvc_root):
    train, _ = read("fgvc_aircraft", fgvc_root, "train")
    records = by_id(train)
    assert set(records) == {"0056978", "1025794"}
    bae = records["0056978"]
    assert bae.cls.ground_truth == "BAE 146-200" and bae.cls.class_id == 1
    assert bae.cls.parents == ("BAE 146", "British Aerospace") and bae.cls.parent_levels == ("close", "far")
    assert records["1025794"].cls.parents == ("Boeing 707", "Boeing")
    assert bae.source_file == "fgvc-aircraft-2013b/data/images/0056978.jpg"
    test, _ = read("fgvc_aircraft", fgvc_root, "test")
    hornet = by_id(test)["2201045"]
    # the family equals the variant, so only the manufacturer is a parent
    assert hornet.cls.ground_truth == "F/A-18" and hornet.cls.parents == ("McDonnell Douglas",)
    assert hornet.cls.parent_levels == ("far",)  # the maker keeps its level when the family is dropped
    trainval, _ = read("fgvc_aircraft", fgvc_root, "trainval")
    assert len(trainval) == 4


def test_flowers_reads_mat_files_with_one_based_ids(flowers_root):
    train, _ = read("flowers102", flowers_root, "train")
    assert [(r.image_id, r.cls.class_id, r.cls.ground_truth) for r in train] == [
        ("image_00001", 76, "passion flower"),
        ("image_00003", 0, "pink primrose"),
    ]
    test, _ = read("flowers102", flowers_root, "test")
    assert [r.cls.ground_truth for r in test] == ["pink primrose", "blackberry lily"]


def test_flowers_split_of_one_image_stays_a_list(flowers_root):
    # the squeeze_me pitfall: a (1, 1) id vector must not turn into a scalar
    import numpy as np
    from scipy.io import savemat

    base = flowers_root / "flowers-102"
    savemat(
        base / "setid.mat", {"trnid": np.array([[6]], np.uint16), "valid": np.array([[2]]), "tstid": np.array([[4]])}
    )
    train, _ = read("flowers102", flowers_root, "train")
    assert [r.image_id for r in train] == ["image_00006"]


def test_food_uses_the_official_class_order(food_root):
    train, _ = read("food101", food_root, "train")
    records = by_id(train)
    assert records["cheesecake/1001446"].cls.class_id == 1
    assert records["cheese_plate/1007057"].cls.class_id == 2
    assert records["cheese_plate/1007057"].cls.ground_truth == "cheese plate"
    assert records["apple_pie/1005649"].image_path.name == "1005649.jpg"


def test_food_class_list_ground_truths_are_distinct_after_normalisation():
    adapter = get_adapter("food101")
    names = class_names("food101.txt")
    assert names.index("cheesecake") == 16 and names.index("cheese_plate") == 17
    assert len({normalize_label(adapter.ground_truth(n)) for n in names}) == 101


def test_pets_reads_only_listed_images_with_species_parents(pets_root):
    trainval, _ = read("oxford_pets", pets_root, "trainval")
    records = by_id(trainval)
    assert set(records) == {"Abyssinian_1", "american_bulldog_10", "Sphynx_5"}  # beagle_1 is in no list
    assert records["Abyssinian_1"].cls.ground_truth == "Abyssinian"
    assert records["Abyssinian_1"].cls.parents == ("cat",)
    assert records["american_bulldog_10"].cls.ground_truth == "american bulldog"
    assert records["american_bulldog_10"].cls.parents == ("dog",)
    assert records["american_bulldog_10"].cls.parent_levels == ("far",)
    assert (
        "dog" in records["american_bulldog_10"].cls.domain_nouns and "dog" not in records["Sphynx_5"].cls.domain_nouns
    )
    assert records["Sphynx_5"].cls.class_id == 33


def test_pets_official_list_gives_species_by_capitalisation():
    adapter = get_adapter("oxford_pets")
    species = [adapter.parents(name) for name in class_names("oxford_pets.txt")]
    assert species.count(("cat",)) == 12 and species.count(("dog",)) == 25
    assert adapter.class_for_name("saint_bernard").synonyms == ("St. Bernard",)


def test_pets_rejects_a_class_id_that_contradicts_the_image_name(pets_root):
    listing = pets_root / "oxford-iiit-pet" / "annotations" / "trainval.txt"
    listing.write_text(listing.read_text().replace("american_bulldog_10 2 2 1", "american_bulldog_10 5 2 1"))
    with pytest.raises(DataSourceError, match=r"trainval.txt line 2: class id 5 is 'beagle'"):
        read("oxford_pets", pets_root, "trainval")


def test_cars_devkit_form_reads_struct_arrays_and_make_model_parents(cars_root):
    train, _ = read("stanford_cars", cars_root, "train")
    assert [(r.image_id, r.cls.ground_truth) for r in train] == [
        ("cars_train/00001", "Acura TL Type-S 2008"),
        ("cars_train/00002", "AM General Hummer SUV 2000"),
        ("cars_train/00003", "Ram C/V Cargo Van Minivan 2012"),
    ]
    assert train[0].cls.parents == ("Acura TL", "Acura")
    assert train[1].cls.parents == ("AM General Hummer", "AM General")
    assert train[2].cls.parents == ("Ram C/V", "Ram")
    assert {r.cls.parent_levels for r in train} == {("close", "far")}
    test, _ = read("stanford_cars", cars_root, "test")
    assert test[0].image_path == cars_root / "stanford_cars" / "cars_test" / "00001.jpg"
    assert test[0].cls.class_id == 2


def test_cars_whole_dataset_form(cars_whole_root):
    train, _ = read("stanford_cars", cars_whole_root, "train")
    test, _ = read("stanford_cars", cars_whole_root, "test")
    assert [r.image_id for r in train] == ["car_ims/000001", "car_ims/000002"]
    assert [r.cls.class_id for r in test] == [2, 1]


def test_every_car_class_has_a_make_and_model_that_prefix_its_name():
    adapter = get_adapter("stanford_cars")
    for name in class_names("stanford_cars.txt"):
        parents = adapter.parents(name)
        assert len(parents) == 2, name
        assert name.startswith(parents[0] + " ") and parents[0].startswith(parents[1] + " "), (name, parents)


@pytest.mark.parametrize(("dataset", "split"), [("cub200", "val"), ("oxford_pets", "train"), ("stanford_cars", "val")])
def test_unknown_split_names_the_choices(dataset, split, tmp_path):
    with pytest.raises(DataSourceError, match="unknown split"):
        get_adapter(dataset).read_raw(tmp_path, split, ProblemLog())


def test_missing_layout_names_what_was_looked_for(tmp_path):
    with pytest.raises(DataSourceError, match=r"no images.txt found under .*CUB_200_2011/images.txt"):
        read("cub200", tmp_path, "train")


def test_unknown_class_id_names_the_file_and_line_or_is_skipped(cub_root):
    labels = cub_root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("4 2", "4 999"))
    with pytest.raises(DataSourceError, match=r"image_class_labels.txt line 4: class id 999 \(image 4\)"):
        read("cub200", cub_root, "test")
    test, problems = read("cub200", cub_root, "test", skip_bad=True)
    assert [r.image_id for r in test] == ["1"]
    assert len(problems.problems) == 1 and "class id 999" in problems.problems[0]


@pytest.mark.parametrize(
    "dataset", ["cub200", "fgvc_aircraft", "flowers102", "food101", "oxford_pets", "stanford_cars"]
)
def test_every_official_class_name_maps_back_to_its_own_index(dataset):
    # also the naming rule of tests/core/test_label_normalization.py: "_" -> " " (CUB: after the "NNN." prefix)
    adapter = get_adapter(dataset)
    for index, name in enumerate(class_names(adapter.class_list)):
        info = adapter.class_for_name(name)
        assert info.class_id == index and info.class_name == name
        rule = name.split(".", 1)[1] if dataset == "cub200" else name
        assert normalize_label(info.ground_truth) == normalize_label(rule.replace("_", " "))
        assert normalize_label(info.ground_truth) not in {normalize_label(p) for p in info.parents}
        assert len(info.parent_levels) == len(info.parents) and info.domain_nouns
