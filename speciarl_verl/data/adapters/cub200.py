"""CUB-200-2011 (``CUB_200_2011.tgz``).

Layout: ``CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt,
classes.txt, images/<NNN.Class_Name>/<File>.jpg}``. The four text files are joined on
``image_id`` (``images.txt`` is not sorted by file name within a class, so nothing is
zipped by position). Splits: ``train`` (``is_training_image`` 1) and ``test`` (0).

Ground truth: the class name after its first ``.``, underscores turned into spaces:
``001.Black_footed_Albatross`` -> ``Black footed Albatross``, ``141.Artic_Tern`` ->
``Artic Tern`` (the dataset's spelling is kept; ``synonyms.txt`` adds ``Arctic Tern`` and
the possessive forms such as ``Brewer's Blackbird``). CUB ships no hierarchy, so
``parents`` is empty (a family word such as "albatross" is left to the LLM judge).
``domain_nouns``: "bird", "birds". ``class_id`` is ``classes.txt``'s id minus one; ``image_id`` is
the CUB image id.

Checks (each a bad row: refused, or skipped and counted with ``skip_bad``): an image id given
twice in ``images.txt``, ``image_class_labels.txt`` or ``train_test_split.txt`` (the image is
dropped: which line is right cannot be told), and an ``images.txt`` path whose class folder
prefix ``NNN.`` is not the image's class id in ``image_class_labels.txt``. Only images of the
split being read are reported, except for lines too malformed to belong to any image. A
class id given twice in ``classes.txt`` is always refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, read_lines, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.source_record import DataSourceError, ProblemLog, SourceRecord

__all__ = ["Cub200Adapter"]

_ID_PREFIX = re.compile(r"^\d+\.")


def _pairs(path: Path, problems: ProblemLog) -> tuple[dict[str, tuple[str, int]], dict[str, list[tuple[str, int]]]]:
    """The ``first column -> (rest of the line, line number)`` of a two-column CUB file, first line
    of each id, and the ``(value, line number)`` of each later line that repeats an id."""
    out: dict[str, tuple[str, int]] = {}
    repeats: dict[str, list[tuple[str, int]]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) != 2:
            problems.report(f"{path} line {number}: expected '<id> <value>', got {line!r}")
            continue
        key, value = parts[0], parts[1].strip()
        if key in out:
            repeats.setdefault(key, []).append((value, number))
        else:
            out[key] = (value, number)
    return out, repeats


def _repeat_problem(path: Path, key: str, first: int, repeats: list[tuple[str, int]], what: str = "image id") -> str:
    lines = ", ".join(str(number) for _, number in repeats)
    return f"{path} line {repeats[0][1]}: {what} {key} is listed again (lines {first}, {lines})"


def _read_classes(path: Path) -> dict[str, str]:
    """``class id -> class name`` of ``classes.txt``; an empty list or a repeated id is an error."""
    rows, repeats = _pairs(path, ProblemLog())
    if not rows:
        raise DataSourceError(f"{path} lists no classes")
    if repeats:  # no row of a split: the class list itself is wrong, whatever --skip-bad says
        class_id, later = next(iter(repeats.items()))
        raise DataSourceError(_repeat_problem(path, class_id, rows[class_id][1], later, "class id"))
    return {class_id: name for class_id, (name, _) in rows.items()}


@register_adapter("cub200")
class Cub200Adapter(DatasetAdapter):
    name = "cub200"
    splits = ("train", "test")
    class_list = "cub200.txt"
    domain_nouns = ("bird", "birds")

    def ground_truth(self, class_name: str) -> str:
        """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"`` (a name without prefix also works)."""
        return super().ground_truth(_ID_PREFIX.sub("", class_name.strip()))

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        base = find_layout_root(root, "images.txt", ("CUB_200_2011",), self.name)
        classes = _read_classes(base / "classes.txt")
        labels_file, flags_file = base / "image_class_labels.txt", base / "train_test_split.txt"
        labels, label_repeats = _pairs(labels_file, problems)
        flags, flag_repeats = _pairs(flags_file, problems)
        images, image_repeats = _pairs(base / "images.txt", problems)
        wanted = "1" if split == "train" else "0"
        records = []
        slot = -1  # counts the images of this split (first line of each id), the bad ones included
        for image_id, (relpath, number) in images.items():
            origin = f"{base / 'images.txt'} line {number}"
            if image_id not in flags:
                problems.report(f"{origin}: image id {image_id} is not in train_test_split.txt")
                continue
            flag, flag_line = flags[image_id]
            if flag not in ("0", "1"):  # the image's split cannot be told
                problems.report(f"{flags_file} line {flag_line}: flag must be 0 or 1")
                continue
            if wanted not in {flag, *(value for value, _ in flag_repeats.get(image_id, ()))}:
                continue
            slot += 1
            if image_id in flag_repeats:
                problems.report(_repeat_problem(flags_file, image_id, flag_line, flag_repeats[image_id]), slot=slot)
                continue
            if image_id in image_repeats:
                message = _repeat_problem(base / "images.txt", image_id, number, image_repeats[image_id])
                problems.report(message, slot=slot)
                continue
            if image_id not in labels:
                problems.report(f"{origin}: image id {image_id} is not in image_class_labels.txt", slot=slot)
                continue
            class_id, label_line = labels[image_id]
            if image_id in label_repeats:
                problems.report(_repeat_problem(labels_file, image_id, label_line, label_repeats[image_id]), slot=slot)
                continue
            if class_id not in classes:
                problems.report(
                    f"{labels_file} line {label_line}: class id {class_id} (image {image_id}) is not in classes.txt",
                    slot=slot,
                )
                continue
            folder = _ID_PREFIX.match(relpath.split("/", 1)[0])
            if folder and int(folder.group(0)[:-1]) != int(class_id):
                problems.report(
                    f"{origin}: the folder of {relpath!r} says class {int(folder.group(0)[:-1])} but "
                    f"{labels_file.name} line {label_line} gives class {class_id} (image {image_id})",
                    slot=slot,
                )
                continue
            records.append(
                SourceRecord(
                    data_source=self.name,
                    split=split,
                    image_id=image_id,
                    cls=self.class_info(int(class_id) - 1, classes[class_id]),
                    source_file=relative_name(base / "images" / relpath, root),
                    origin=origin,
                    image_path=base / "images" / relpath,
                    slot=slot,
                )
            )
        return records
