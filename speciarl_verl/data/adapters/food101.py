"""Food-101 (``food-101.tar.gz``).

Layout: ``food-101/{meta/classes.txt, meta/train.txt, meta/test.txt, images/<class>/<id>.jpg}``;
split lines are ``<class>/<id>`` without an extension. Splits: ``train`` and ``test``; or the
CoOp split with ``split_file=split_zhou_Food101.json``.

Ground truth: the class folder name with underscores turned into spaces (``apple_pie`` ->
``apple pie``; identical to ``meta/labels.txt`` up to case). ``class_id`` is the line index
in ``meta/classes.txt``, the official order in which ``cheesecake`` (16) comes before
``cheese_plate`` (17); CoOp and sorted-folder copies are matched by name, never by their
own index. No hierarchy: ``parents`` is empty. ``domain_nouns``: "food", "dish", "meal".
``image_id`` is ``<class>/<id>``.
"""

from __future__ import annotations

from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, read_lines, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.source_record import DataSourceError, ProblemLog, SourceRecord

__all__ = ["Food101Adapter"]

_WRAPPERS = ("food-101", "food101")


@register_adapter("food101")
class Food101Adapter(DatasetAdapter):
    name = "food101"
    splits = ("train", "test")
    class_list = "food101.txt"
    domain_nouns = ("food", "dish", "meal")
    coop_image_dir = "images"
    coop_split_file = "split_zhou_Food101.json"

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        base = find_layout_root(root, "meta/classes.txt", _WRAPPERS, self.name)
        folders = [line.strip() for line in read_lines(base / "meta" / "classes.txt") if line.strip()]
        if not folders:
            raise DataSourceError(f"{base / 'meta' / 'classes.txt'} lists no classes")
        classes = {folder: self.class_info(index, folder) for index, folder in enumerate(folders)}
        listing = base / "meta" / f"{split}.txt"
        records = []
        slot = -1  # counts the listed (non-blank) lines, the bad ones included
        for number, line in enumerate(read_lines(listing), start=1):
            entry = line.strip()
            if not entry:
                continue
            slot += 1
            origin = f"{listing} line {number}"
            folder, slash, _ = entry.partition("/")
            if not slash:
                problems.report(f"{origin}: expected '<class>/<id>', got {line!r}", slot=slot)
                continue
            if folder not in classes:
                problems.report(f"{origin}: class {folder!r} is not in meta/classes.txt", slot=slot)
                continue
            path = base / "images" / f"{entry}.jpg"
            records.append(
                SourceRecord(
                    data_source=self.name,
                    split=split,
                    image_id=entry,
                    cls=classes[folder],
                    source_file=relative_name(path, root),
                    origin=origin,
                    image_path=path,
                    slot=slot,
                )
            )
        return records

    def locate(self, root: Path) -> Path:
        return find_layout_root(root, self.coop_image_dir, _WRAPPERS, self.name)
