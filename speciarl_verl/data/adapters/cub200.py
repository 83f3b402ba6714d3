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
"""

from __future__ import annotations

import re
from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, read_lines, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.source_record import DataSourceError, ProblemLog, SourceRecord

__all__ = ["Cub200Adapter"]

_ID_PREFIX = re.compile(r"^\d+\.")


def _pairs(path: Path, problems: ProblemLog) -> dict[str, tuple[str, int]]:
    """``first column -> (rest of the line, line number)`` of a two-column CUB file."""
    out: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) != 2:
            problems.report(f"{path} line {number}: expected '<id> <value>', got {line!r}")
            continue
        out[parts[0]] = (parts[1].strip(), number)
    return out


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
        classes = {cid: name for cid, (name, _) in _pairs(base / "classes.txt", ProblemLog()).items()}
        labels = _pairs(base / "image_class_labels.txt", problems)
        flags = _pairs(base / "train_test_split.txt", problems)
        wanted = "1" if split == "train" else "0"
        records = []
        for image_id, (relpath, number) in _pairs(base / "images.txt", problems).items():
            origin = f"{base / 'images.txt'} line {number}"
            if image_id not in flags:
                problems.report(f"{origin}: image id {image_id} is not in train_test_split.txt")
                continue
            if flags[image_id][0] not in ("0", "1"):
                problems.report(f"{base / 'train_test_split.txt'} line {flags[image_id][1]}: flag must be 0 or 1")
                continue
            if flags[image_id][0] != wanted:
                continue
            if image_id not in labels:
                problems.report(f"{origin}: image id {image_id} is not in image_class_labels.txt")
                continue
            class_id, label_line = labels[image_id]
            if class_id not in classes:
                problems.report(
                    f"{base / 'image_class_labels.txt'} line {label_line}: class id {class_id} "
                    f"(image {image_id}) is not in classes.txt"
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
                )
            )
        if not classes:
            raise DataSourceError(f"{base / 'classes.txt'} lists no classes")
        return records
