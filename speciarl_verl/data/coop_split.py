"""CoOp split files (``split_zhou_<Name>.json``) for Flowers-102, Food-101 and Oxford Pets.

The file is a JSON object with the keys ``train``, ``val`` and ``test``; each holds rows
``[relpath, label, classname]`` where ``relpath`` is relative to the dataset's image folder
(``jpg/`` for Flowers, ``images/`` for Food and Pets) and ``label`` is 0-based in CoOp's
own class order. Classes are matched to the official list **by name** (CoOp sorts Food's
folders, so its indices 16/17 differ from the official order); CoOp's index is only
checked for consistency (one name per label).
"""

from __future__ import annotations

import json
from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter, relative_name
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord

__all__ = ["read_coop_split"]


def read_coop_split(
    adapter: DatasetAdapter, root: Path, split_file: Path, split: str, problems: ProblemLog
) -> list[SourceRecord]:
    """The records of ``split`` listed in the CoOp JSON ``split_file``, with images under ``root``.

    Example: ``read_coop_split(get_adapter("flowers102"), Path("oxford_flowers"),
    Path("oxford_flowers/split_zhou_OxfordFlowers.json"), "test", ProblemLog())``.
    """
    if adapter.coop_image_dir is None:
        raise DataSourceError(f"{adapter.name}: CoOp split files are supported for flowers102, food101, oxford_pets")
    try:
        content = json.loads(Path(split_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataSourceError(f"missing file: {split_file}") from None
    except json.JSONDecodeError as exc:
        raise DataSourceError(f"{split_file}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict) or split not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataSourceError(f"{split_file}: no split {split!r} (found {keys})")
    images = adapter.locate(root) / adapter.coop_image_dir
    by_name: dict[str, ClassInfo | None] = {}
    name_of_label: dict[int, str] = {}
    records = []
    for position, row in enumerate(content[split]):
        origin = f"{split_file} {split}[{position}]"
        if not (
            isinstance(row, list)
            and len(row) == 3
            and isinstance(row[0], str)
            and isinstance(row[1], int)
            and isinstance(row[2], str)
        ):
            problems.report(f"{origin}: expected [relpath, label, classname], got {row!r}", slot=position)
            continue
        relpath, label, name = row
        if name_of_label.setdefault(label, name) != name:
            problems.report(
                f"{origin}: label {label} is {name!r} here but {name_of_label[label]!r} earlier", slot=position
            )
            continue
        if name not in by_name:
            by_name[name] = adapter.class_for_name(name)
        cls = by_name[name]
        if cls is None:
            problems.report(f"{origin}: class {name!r} is not a {adapter.name} class", slot=position)
            continue
        path = images / relpath
        records.append(
            SourceRecord(
                data_source=adapter.name,
                split=split,
                image_id=Path(relpath).with_suffix("").as_posix(),
                cls=cls,
                source_file=relative_name(path, root),
                origin=origin,
                image_path=path,
                slot=position,
            )
        )
    return records
