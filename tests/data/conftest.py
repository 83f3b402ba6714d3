"""Tiny copies of each benchmark in the exact on-disk layout its authors distribute.

Every fixture writes a fresh layout under ``tmp_path`` (small JPEGs made with Pillow, the
official list files, ``.mat`` files written with scipy) and returns the folder a user would
pass as ``--root``: the folder that holds the extracted archive, so the adapters' search
for the archive folder is exercised too. Tests may damage their copy freely.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def image_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    """A small noisy picture, different for every seed."""
    rng = np.random.default_rng(seed)
    channels = len(mode)
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    picture = Image.fromarray(pixels.squeeze(), mode=mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


@pytest.fixture
def cub_root(tmp_path: Path) -> Path:
    """CUB_200_2011/ with 3 classes; images.txt not name-sorted within a class; labels listed out of order."""
    base = tmp_path / "CUB_200_2011"
    files = {
        1: "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
        2: "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
        3: "002.Laysan_Albatross/Laysan_Albatross_0082_524.jpg",
        4: "002.Laysan_Albatross/Laysan_Albatross_0044_784.jpg",
        5: "009.Brewer_Blackbird/Brewer_Blackbird_0028_2682.jpg",
    }
    for image_id, relpath in files.items():
        write(base / "images" / relpath, image_bytes(image_id))
    write(base / "images.txt", lines(*(f"{i} {p}" for i, p in files.items())))
    write(base / "image_class_labels.txt", lines("3 2", "1 1", "5 9", "4 2", "2 1"))
    write(base / "train_test_split.txt", lines("1 0", "2 1", "3 1", "4 0", "5 1"))
    write(
        base / "classes.txt", lines("1 001.Black_footed_Albatross", "2 002.Laysan_Albatross", "9 009.Brewer_Blackbird")
    )
    write(base / "bounding_boxes.txt", lines(*(f"{i} 60.0 27.0 325.0 304.0" for i in files)))
    write(base / "README", "CUB-200-2011\n")
    write(tmp_path / "attributes.txt", "")  # the stray top-level file of the archive
    return tmp_path


FGVC_IMAGES = {
    # id: (variant, family, manufacturer, split)
    "0056978": ("BAE 146-200", "BAE 146", "British Aerospace", "train"),
    "1025794": ("707-320", "Boeing 707", "Boeing", "train"),
    "0034309": ("F/A-18", "F/A-18", "McDonnell Douglas", "val"),
    "0062781": ("707-320", "Boeing 707", "Boeing", "val"),
    "0000123": ("BAE 146-200", "BAE 146", "British Aerospace", "test"),
    "2201045": ("F/A-18", "F/A-18", "McDonnell Douglas", "test"),
}


@pytest.fixture
def fgvc_root(tmp_path: Path) -> Path:
    """fgvc-aircraft-2013b/data/ with 3 variants (a space and a slash in the names) and 7-digit ids."""
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    write(data / "variants.txt", lines("707-320", "BAE 146-200", "F/A-18"))
    write(data / "families.txt", lines("BAE 146", "Boeing 707", "F/A-18"))
    write(data / "manufacturers.txt", lines("Boeing", "British Aerospace", "McDonnell Douglas"))
    for number, image_id in enumerate(FGVC_IMAGES, start=1):
        write(data / "images" / f"{image_id}.jpg", image_bytes(100 + number))
    splits = {"train": ("train",), "val": ("val",), "trainval": ("train", "val"), "test": ("test",)}
    for split, members in splits.items():
        chosen = [i for i, row in FGVC_IMAGES.items() if row[3] in members]
        write(data / f"images_{split}.txt", lines(*chosen))
        for level, column in (("variant", 0), ("family", 1), ("manufacturer", 2)):
            write(data / f"images_{level}_{split}.txt", lines(*(f"{i} {FGVC_IMAGES[i][column]}" for i in chosen)))
    write(data / "images_box.txt", lines(*(f"{i} 1 1 39 29" for i in FGVC_IMAGES)))
    write(tmp_path / "fgvc-aircraft-2013b" / "README.md", "FGVC-Aircraft 2013b\n")
    return tmp_path


@pytest.fixture
def flowers_root(tmp_path: Path) -> Path:
    """flowers-102/ with jpg/image_0000{1..6}.jpg, imagelabels.mat and setid.mat (1-based, shape (1, N))."""
    from scipy.io import savemat

    base = tmp_path / "flowers-102"
    for number in range(1, 7):
        write(base / "jpg" / f"image_{number:05d}.jpg", image_bytes(200 + number))
    savemat(base / "imagelabels.mat", {"labels": np.array([[77, 77, 1, 1, 102, 102]], dtype=np.uint8)})
    savemat(
        base / "setid.mat",
        {
            "trnid": np.array([[1, 3]], dtype=np.uint16),
            "valid": np.array([[2, 5]], dtype=np.uint16),
            "tstid": np.array([[4, 6]], dtype=np.uint16),
        },
    )
    names = {"1": "pink primrose", "77": "passion flower", "102": "blackberry lily"}
    write(base / "cat_to_name.json", json.dumps(names))
    coop = {
        "train": [["image_00003.jpg", 0, "pink primrose"], ["image_00001.jpg", 76, "passion flower"]],
        "val": [["image_00005.jpg", 101, "blackberry lily"]],
        "test": [["image_00004.jpg", 0, "pink primrose"], ["image_00006.jpg", 101, "blackberry lily"]],
    }
    write(base / "split_zhou_OxfordFlowers.json", json.dumps(coop, indent=4))
    return tmp_path


FOOD_SPLITS = {
    "train": ["apple_pie/1005649", "cheesecake/1001446", "cheese_plate/1007057"],
    "test": ["apple_pie/101251", "cheesecake/1004515", "cheese_plate/1012426"],
}


@pytest.fixture
def food_root(tmp_path: Path) -> Path:
    """food-101/ with 3 classes in the official order (cheesecake before cheese_plate), ids without .jpg."""
    base = tmp_path / "food-101"
    for number, entry in enumerate(FOOD_SPLITS["train"] + FOOD_SPLITS["test"]):
        write(base / "images" / f"{entry}.jpg", image_bytes(300 + number))
    write(base / "meta" / "classes.txt", lines("apple_pie", "cheesecake", "cheese_plate"))
    write(base / "meta" / "labels.txt", lines("Apple pie", "Cheesecake", "Cheese plate"))
    for split, entries in FOOD_SPLITS.items():
        write(base / "meta" / f"{split}.txt", lines(*entries))
        grouped: dict[str, list[str]] = {}
        for entry in entries:
            grouped.setdefault(entry.split("/")[0], []).append(entry)
        write(base / "meta" / f"{split}.json", json.dumps(grouped))
    # CoOp sorts the folders, so its labels put cheese_plate (1) before cheesecake (2) here.
    coop = {
        "train": [["apple_pie/1005649.jpg", 0, "apple_pie"], ["cheese_plate/1007057.jpg", 1, "cheese_plate"]],
        "val": [["cheesecake/1001446.jpg", 2, "cheesecake"]],
        "test": [["apple_pie/101251.jpg", 0, "apple_pie"], ["cheesecake/1004515.jpg", 2, "cheesecake"]],
    }
    write(base / "split_zhou_Food101.json", json.dumps(coop, indent=4))
    write(base / "README.txt", "Food-101\n")
    return tmp_path


@pytest.fixture
def pets_root(tmp_path: Path) -> Path:
    """oxford-iiit-pet/ with a PNG-in-.jpg RGBA cat, an unlisted image, a stray .mat and dot-file trimaps."""
    base = tmp_path / "oxford-iiit-pet"
    write(base / "images" / "Abyssinian_1.jpg", image_bytes(401))
    write(base / "images" / "Abyssinian_2.jpg", image_bytes(402, fmt="PNG", mode="RGBA"))  # PNG data, .jpg name
    write(base / "images" / "american_bulldog_10.jpg", image_bytes(403))
    write(base / "images" / "american_bulldog_11.jpg", image_bytes(404))
    write(base / "images" / "Sphynx_5.jpg", image_bytes(405))
    write(base / "images" / "beagle_1.jpg", image_bytes(406))  # in no list
    write(base / "images" / "Abyssinian_1.mat", b"MATLAB 5.0 stray file")
    header = [
        f"#{text}"
        for text in (
            "Image CLASS-ID SPECIES BREED ID",
            "ID: 1:37 Class ids",
            "SPECIES: 1:Cat 2:Dog",
            "BREED ID: 1-25:Cat 1:12:Dog",
            "All images with 1st letter as captial are cat images",
            "images with small first letter are dog images",
        )
    ]
    rows = [
        "Abyssinian_1 1 1 1",
        "Abyssinian_2 1 1 1",
        "american_bulldog_10 2 2 1",
        "american_bulldog_11 2 2 1",
        "Sphynx_5 34 1 12",
    ]
    write(base / "annotations" / "list.txt", lines(*header, *rows))
    write(base / "annotations" / "trainval.txt", lines(rows[0], rows[2], rows[4]))
    write(base / "annotations" / "test.txt", lines(rows[1], rows[3]))
    write(base / "annotations" / "trimaps" / "Abyssinian_1.png", image_bytes(407, fmt="PNG", mode="L"))
    write(base / "annotations" / "trimaps" / "._Abyssinian_1.png", b"\x00\x05\x16\x07")
    coop = {
        "train": [["Abyssinian_1.jpg", 0, "abyssinian"], ["american_bulldog_10.jpg", 1, "american_bulldog"]],
        "val": [["Sphynx_5.jpg", 33, "sphynx"]],
        "test": [["Abyssinian_2.jpg", 0, "abyssinian"], ["american_bulldog_11.jpg", 1, "american_bulldog"]],
    }
    write(base / "split_zhou_OxfordPets.json", json.dumps(coop, indent=4))
    return tmp_path


CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura TL Type-S 2008", "Ram C/V Cargo Van Minivan 2012"]


def car_annotations(entries: list[tuple[int, str]], with_class: bool = True) -> np.ndarray:
    """A devkit ``annotations`` struct array: (1, N), fields bbox_x1..bbox_y2, class, fname; integer types vary.

    ``with_class=False`` gives the unlabelled ``cars_test_annos.mat`` of the devkit (no class field).
    """
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", *(("class",) if with_class else ()), "fname")
    array = np.zeros((1, len(entries)), dtype=[(name, "O") for name in fields])
    for position, (number, fname) in enumerate(entries):
        boxes = (
            np.array([[39]], np.uint8),
            np.array([[116]], np.uint8),
            np.array([[569]], np.uint16),
            np.array([[375]], np.uint16),
        )
        label = (np.array([[number]], dtype=np.uint8 if position % 2 else np.uint16),) if with_class else ()
        array[0, position] = (*boxes, *label, np.array([fname]))
    return array


def class_name_cell(names: list[str]) -> np.ndarray:
    cell = np.empty((1, len(names)), dtype=object)
    for position, name in enumerate(names):
        cell[0, position] = name
    return cell


@pytest.fixture
def cars_root(tmp_path: Path) -> Path:
    """stanford_cars/ in the devkit form; cars_train/ and cars_test/ reuse the same 5-digit names."""
    from scipy.io import savemat

    base = tmp_path / "stanford_cars"
    for number in range(1, 4):
        write(base / "cars_train" / f"{number:05d}.jpg", image_bytes(500 + number))
        write(base / "cars_test" / f"{number:05d}.jpg", image_bytes(510 + number))
    (base / "devkit").mkdir()
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": class_name_cell(CAR_CLASSES)})
    savemat(
        base / "devkit" / "cars_train_annos.mat",
        {"annotations": car_annotations([(2, "00001.jpg"), (1, "00002.jpg"), (3, "00003.jpg")])},
    )
    savemat(
        base / "devkit" / "cars_test_annos.mat",
        {"annotations": car_annotations([(0, "00001.jpg"), (0, "00002.jpg"), (0, "00003.jpg")], with_class=False)},
    )
    savemat(
        base / "cars_test_annos_withlabels.mat",
        {"annotations": car_annotations([(3, "00001.jpg"), (3, "00002.jpg"), (1, "00003.jpg")])},
    )
    write(base / "devkit" / "README.txt", "Cars devkit\n")
    return tmp_path


@pytest.fixture
def cars_whole_root(tmp_path: Path) -> Path:
    """The whole-dataset form: car_ims/000001.jpg ... with cars_annos.mat (relative_im_path, class, test)."""
    from scipy.io import savemat

    base = tmp_path / "stanford_cars"
    dtype = [(name, "O") for name in ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")]
    rows = [(1, 0), (2, 0), (3, 1), (2, 1)]
    annotations = np.zeros((1, len(rows)), dtype=dtype)
    for position, (number, is_test) in enumerate(rows):
        fname = f"car_ims/{position + 1:06d}.jpg"
        write(base / fname, image_bytes(600 + position))
        box = [np.array([[v]], dtype=np.uint16) for v in (112, 7, 853, 717)]
        annotations[0, position] = (
            np.array([fname]),
            *box,
            np.array([[number]], dtype=np.uint8),
            np.array([[is_test]], dtype=np.uint8),
        )
    savemat(base / "cars_annos.mat", {"annotations": annotations, "class_names": class_name_cell(CAR_CLASSES)})
    return tmp_path


@pytest.fixture
def hf_copy(tmp_path: Path) -> Path:
    """A Hugging Face DatasetDict (image + ClassLabel label) saved with save_to_disk and as parquet files.

    Class names follow the timm Pets copy: lower case with underscores, in official order.
    """
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["abyssinian", "american_bulldog", "sphynx"])}
    )
    splits = {
        "train": {"image": [{"bytes": image_bytes(700 + i), "path": None} for i in range(4)], "label": [0, 1, 2, 1]},
        "test": {"image": [{"bytes": image_bytes(710 + i), "path": None} for i in range(2)], "label": [2, 0]},
    }
    copy = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(rows, features=features) for name, rows in splits.items()}
    )
    copy.save_to_disk(str(tmp_path / "pets_hf"))
    for name, split in copy.items():
        split.to_parquet(str(tmp_path / "pets_parquet" / "data" / f"{name}-00000-of-00001.parquet"))
    return tmp_path


@pytest.fixture(scope="session")
def tiny_vl_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint (weights, tokenizer, processor), built once per session."""
    from speciarl_verl.offline_fixtures.tiny_qwen_vl import build_tiny_qwen25_vl
    from speciarl_verl.prompts import get_policy_prompt, policy_prompt_names

    corpus = [get_policy_prompt(name).text for name in policy_prompt_names()]
    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny-qwen25-vl"), corpus=corpus)


@pytest.fixture
def make_hf_copy(tmp_path: Path):
    """A factory: ``make_hf_copy(name, class_names, {split: labels}, single=False)`` saves an HF copy under tmp_path.

    ``single=True`` saves the one split given as a plain ``Dataset`` (``state.json`` records its
    split), the layout of ``load_dataset(..., split=...).save_to_disk``; otherwise a ``DatasetDict``.
    """
    import datasets

    def make(name: str, names: list[str], splits: dict[str, list[int]], single: bool = False) -> Path:
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
        parts = {
            split: datasets.Dataset.from_dict(
                {"image": [{"bytes": image_bytes(800 + i), "path": None} for i in range(len(labels))], "label": labels},
                features=features,
                split=split,
            )
            for split, labels in splits.items()
        }
        target = tmp_path / name
        if single:
            (part,) = parts.values()
            part.save_to_disk(str(target))
        else:
            datasets.DatasetDict(parts).save_to_disk(str(target))
        return target

    return make
