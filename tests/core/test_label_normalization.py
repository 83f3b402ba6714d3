from importlib import resources

import pytest

from speciarl_verl import normalize_label


def class_names(file: str) -> list[str]:
    text = resources.files("speciarl_verl.data").joinpath("classnames").joinpath(file).read_text(encoding="utf-8")
    return text.splitlines()


def cub_ground_truth(raw: str) -> str:
    # "001.Black_footed_Albatross" -> "Black footed Albatross" (the id prefix ends at the first ".")
    return raw.split(".", 1)[1].replace("_", " ")


# (list file, expected size, how a class name becomes the ground-truth string)
CLASS_LISTS = [
    ("cub200.txt", 200, cub_ground_truth),
    ("fgvc_aircraft_variants.txt", 100, str),
    ("fgvc_aircraft_families.txt", 70, str),
    ("fgvc_aircraft_manufacturers.txt", 30, str),
    ("flowers102.txt", 102, str),
    ("food101.txt", 101, lambda s: s.replace("_", " ")),
    ("oxford_pets.txt", 37, lambda s: s.replace("_", " ")),
    ("stanford_cars.txt", 196, str),
]


@pytest.mark.parametrize(("file", "size", "to_label"), CLASS_LISTS)
def test_no_two_classes_of_a_benchmark_collide(file, size, to_label):
    names = class_names(file)
    assert len(names) == size == len(set(names))
    keys: dict[str, str] = {}
    for name in names:
        key = normalize_label(to_label(name))
        assert key, name
        assert key not in keys, f"{name!r} and {keys[key]!r} both normalise to {key!r}"
        keys[key] = name


@pytest.mark.parametrize(("file", "size", "to_label"), CLASS_LISTS)
def test_spelling_variants_of_every_class_fold_together(file, size, to_label):
    for name in class_names(file):
        label = to_label(name)
        key = normalize_label(label)
        for variant in (label.upper(), label.lower(), label.replace(" ", "_"), f"  {label}\n", label.replace("-", " ")):
            assert normalize_label(variant) == key, (label, variant)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Black-footed Albatross", "black footed albatross"),
        ("Black_footed_Albatross", "BLACK-FOOTED ALBATROSS"),
        ("colt's foot", "colts foot"),
        ("Crème brûlée", "creme brulee"),
        ("St. Bernard", "st bernard"),
        ("Chuck-will's-widow", "chuck wills widow"),
        ("Boeing 737\u2013800", "boeing 737-800"),  # en dash
    ],
)
def test_variants_fold(a, b):
    assert normalize_label(a) == normalize_label(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("737-800", "737-8"),
        ("F/A-18", "F-18"),
        ("F/A-18", "FA-18"),
        ("F-16A/B", "F-16A"),
        ("A340-300", "A340-3000"),
        ("DC-9-30", "DC-930"),
        ("1.5 litre", "15 litre"),
        ("Ram C/V Cargo Van Minivan 2012", "Ram CV Cargo Van Minivan 2012"),
    ],
)
def test_distinct_labels_stay_distinct(a, b):
    assert normalize_label(a) != normalize_label(b)


def test_slash_and_digits_survive():
    assert normalize_label("F/A-18") == "f/a 18"
    assert normalize_label("Tu-154") == "tu 154"


def test_non_latin_marks_are_kept():
    # Dropping the dakuten would turn ga into ka; only accents on Latin letters are folded.
    assert normalize_label("が") != normalize_label("か")
