"""Stanford Cars (196 classes), in either official packaging.

* Devkit form (torchvision, CoOp): ``devkit/cars_meta.mat`` (``class_names``),
  ``devkit/cars_train_annos.mat`` with ``cars_train/<fname>``, and
  ``cars_test_annos_withlabels.mat`` (at the root, or in ``devkit/``) with
  ``cars_test/<fname>``. Mirrors that nest ``cars_train/cars_train/`` are accepted.
* Whole-dataset form: ``cars_annos.mat`` (``annotations`` with ``relative_im_path``,
  ``class``, ``test``; ``class_names``) with ``car_ims/000001.jpg ...``.

The two forms number their images differently; a root is read in one form only (devkit
first). ``annotations`` is a MATLAB struct array read without ``squeeze_me``; each field is
unwrapped from its (1, 1) array. Splits: ``train`` and ``test``.

Ground truth: the ``cars_meta`` name as is (``AM General Hummer SUV 2000``,
``Ram C/V Cargo Van Minivan 2012``). ``parents``: ``[make + model, make]`` from the shipped
``stanford_cars_make_model.txt`` (``Acura TL Type-S 2008`` -> ``["Acura TL", "Acura"]``);
for a name not in that table only the make (``AM General``, ``Aston Martin``,
``Land Rover`` or else the first word). Make and model (the product line) is ``close``;
the make alone is ``far``, wherever it stands. ``domain_nouns``: "car", "vehicle" and
their variants. ``class_id`` is ``class - 1``; ``image_id`` is the image path without
extension (``cars_train/00001``).

Names from other sources (a Hugging Face ``ClassLabel``) are matched to the ``cars_meta``
list as spelled, or else with a leading class number dropped (``0001_AM_General_Hummer_SUV_2000``)
and a leading year moved to the end (CoOp's ``2000 AM General Hummer SUV``); the parents always
come from the matched official name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speciarl_verl.data.adapters.base import DatasetAdapter, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.shipped_lists import car_make_model
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord
from speciarl_verl.judge.verifier import ParentLevel

__all__ = ["StanfordCarsAdapter"]

_WRAPPERS = ("stanford_cars", "stanford-cars", "cars")
_NUMBER_PREFIX = re.compile(r"^\d+[\s_.-]+(?=\S)")
_LEADING_YEAR = re.compile(r"^((?:19|20)\d\d)[\s_]+(.+)$")


def _load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except FileNotFoundError:
        raise DataSourceError(f"missing file: {path}") from None
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataSourceError(f"{path}: cannot read MATLAB file: {exc}") from exc


def _value(field: object) -> object:
    """The single value inside a MATLAB (1, 1) cell/array, as a Python scalar or str."""
    array = np.asarray(field).ravel()
    if array.size != 1:
        raise ValueError(f"expected one value, got {array.size}")
    value = array[0]
    if isinstance(value, np.ndarray):  # a cell holding an array
        return _value(value)
    return value.item() if isinstance(value, np.generic) else value


def _class_names(path: Path) -> list[str]:
    content = _load_mat(path)
    if "class_names" not in content:
        raise DataSourceError(f"{path}: no variable 'class_names'")
    return [str(_value(cell)).strip() for cell in np.asarray(content["class_names"]).ravel()]


def _annotations(path: Path) -> np.ndarray:
    content = _load_mat(path)
    if "annotations" not in content:
        raise DataSourceError(f"{path}: no variable 'annotations'")
    return np.asarray(content["annotations"]).ravel()


@register_adapter("stanford_cars")
class StanfordCarsAdapter(DatasetAdapter):
    name = "stanford_cars"
    splits = ("train", "test")
    class_list = "stanford_cars.txt"
    domain_nouns = ("car", "cars", "vehicle", "automobile", "motor vehicle")

    def ground_truth(self, class_name: str) -> str:
        """``cars_meta`` names are used as spelled; only whitespace is tidied."""
        return " ".join(class_name.split())

    def parents(self, class_name: str) -> tuple[str, ...]:
        """``(make model, make)``, or ``(make,)`` for a class missing from the shipped table."""
        make, model = car_make_model(class_name)
        return (make,) if model is None else (f"{make} {model}", make)

    def name_forms(self, name: str) -> tuple[str, ...]:
        """``name``, then without a leading class number, each also with a leading year moved to the end.

        >>> StanfordCarsAdapter().name_forms("2000 AM General Hummer SUV")
        ('2000 AM General Hummer SUV', 'AM General Hummer SUV 2000', 'AM General Hummer SUV')
        >>> StanfordCarsAdapter().class_for_name("0001_AM_General_Hummer_SUV_2000").parents
        ('AM General Hummer', 'AM General')
        """
        forms = [name]
        unnumbered = _NUMBER_PREFIX.sub("", name)
        for form in dict.fromkeys((name, unnumbered)):
            year_first = _LEADING_YEAR.match(form.strip())
            if year_first:
                forms.append(f"{year_first.group(2)} {year_first.group(1)}")
            forms.append(form)
        return tuple(dict.fromkeys(forms))

    def parent_levels(self, parents: Sequence[str]) -> tuple[ParentLevel, ...]:
        """A make and model is ``close``; the make alone, the last parent, is ``far``.

        >>> StanfordCarsAdapter().parent_levels(["Acura TL", "Acura"]), StanfordCarsAdapter().parent_levels(["Acura"])
        (('close', 'far'), ('far',))
        """
        return tuple("far" if position == len(parents) - 1 else "close" for position in range(len(parents)))

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        root = Path(root)
        for base in (root, *(root / w for w in _WRAPPERS)):
            if (base / "devkit" / "cars_meta.mat").exists():
                return self._read_devkit(root, base, split, problems)
            if (base / "cars_annos.mat").exists():
                return self._read_whole(root, base, split, problems)
        raise DataSourceError(
            f"{self.name}: found neither devkit/cars_meta.mat nor cars_annos.mat under {root} "
            f"(or its {', '.join(_WRAPPERS)} subfolders)"
        )

    def _classes(self, names: list[str]) -> dict[int, ClassInfo]:
        return {number: self.class_info(number - 1, name) for number, name in enumerate(names, start=1)}

    def _read_devkit(self, root: Path, base: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        classes = self._classes(_class_names(base / "devkit" / "cars_meta.mat"))
        if split == "train":
            annos = base / "devkit" / "cars_train_annos.mat"
        else:
            annos = base / "cars_test_annos_withlabels.mat"
            if not annos.exists() and (base / "devkit" / "cars_test_annos_withlabels.mat").exists():
                annos = base / "devkit" / "cars_test_annos_withlabels.mat"
        folder = base / f"cars_{split}"
        if (folder / f"cars_{split}").is_dir():
            folder = folder / f"cars_{split}"
        records = []
        for position, entry in enumerate(_annotations(annos)):
            origin = f"{annos} annotations[{position}]"
            try:
                number, fname = int(_value(entry["class"])), str(_value(entry["fname"]))
            except (ValueError, KeyError, IndexError) as exc:
                problems.report(f"{origin}: needs a 'class' and an 'fname' field ({exc})", slot=position)
                continue
            if number not in classes:
                problems.report(f"{origin}: unknown class id {number} (1..{len(classes)}) for {fname}", slot=position)
                continue
            path = folder / fname
            image_id = f"cars_{split}/{Path(fname).stem}"
            records.append(self._record(root, split, path, classes[number], origin, image_id, position))
        return records

    def _read_whole(self, root: Path, base: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        annos = base / "cars_annos.mat"
        classes = self._classes(_class_names(annos))
        wanted = 1 if split == "test" else 0
        records = []
        slot = -1  # counts the annotations of this split; one whose split cannot be read has no place
        for position, entry in enumerate(_annotations(annos)):
            origin = f"{annos} annotations[{position}]"
            try:
                is_test = int(_value(entry["test"]))
            except (ValueError, KeyError, IndexError) as exc:
                problems.report(f"{origin}: needs 'class', 'relative_im_path' and 'test' fields ({exc})")
                continue
            if is_test != wanted:
                continue
            slot += 1
            try:
                number, relpath = int(_value(entry["class"])), str(_value(entry["relative_im_path"]))
            except (ValueError, KeyError, IndexError) as exc:
                problems.report(f"{origin}: needs 'class', 'relative_im_path' and 'test' fields ({exc})", slot=slot)
                continue
            if number not in classes:
                problems.report(f"{origin}: unknown class id {number} (1..{len(classes)}) for {relpath}", slot=slot)
                continue
            path = base / relpath
            image_id = Path(relpath).with_suffix("").as_posix()
            records.append(self._record(root, split, path, classes[number], origin, image_id, slot))
        return records

    def _record(
        self, root: Path, split: str, path: Path, cls: ClassInfo, origin: str, image_id: str, slot: int
    ) -> SourceRecord:
        return SourceRecord(
            data_source=self.name,
            split=split,
            image_id=image_id,
            cls=cls,
            source_file=relative_name(path, root),
            origin=origin,
            image_path=path,
            slot=slot,
        )
