"""Hugging Face ``datasets`` copies of a benchmark: a local ``save_to_disk`` folder, parquet files, or a hub id.

The copy needs an ``image`` column (``datasets.Image``) and a ``label`` column
(``datasets.ClassLabel``). Each ClassLabel name is matched to the official class list by
the dataset's naming rule (so ``"001.Black_footed_Albatross"``, ``"abyssinian"`` or
``"apple_pie"`` get the same ground truth, class id and parents as the original layout); a
name that matches no official class keeps the copy's own index and name. Image bytes are
read lazily, one row at a time, and are never decoded here.

Split names are the copy's own (e.g. ``ethz/food101`` calls the official test split
``validation``). Hierarchy columns of a copy are not read: parents come from the
class name only (Pets' species, Cars' make and model; none for FGVC variants).
"""

from __future__ import annotations

from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord

__all__ = ["looks_like_hf_copy", "read_hf_source"]


def looks_like_hf_copy(path: Path) -> bool:
    """True for a ``save_to_disk`` folder or a parquet copy, as opposed to an extracted archive.

    A parquet copy is a ``.parquet`` file, or a folder with hub-style shards
    (``data/<split>-00000-of-00001.parquet``, ``<split>-*-of-*.parquet``); a stray parquet
    file beside a raw layout does not count.
    """
    path = Path(path)
    if path.is_file():
        return path.suffix == ".parquet"
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return True
    return path.is_dir() and (any(path.glob("*-of-*.parquet")) or any(path.glob("data/*.parquet")))


def _parquet_files(path: Path, split: str) -> list[str]:
    if path.is_file():
        return [str(path)]
    patterns = (f"{split}-*.parquet", f"{split}.parquet", f"{split}/*.parquet", f"data/{split}-*.parquet")
    for pattern in patterns:
        files = sorted(path.glob(pattern))
        if files:
            return [str(f) for f in files]
    found = sorted(p.name for p in path.rglob("*.parquet"))
    raise DataSourceError(f"{path}: no parquet file for split {split!r} (looked for {patterns}; found {found})")


def _load(source: str | Path, split: str, cache_dir: str | None):
    import datasets

    path = Path(source)
    if not path.exists():
        if "/" in str(source) and not str(source).startswith((".", "/")):
            try:
                return datasets.load_dataset(str(source), split=split, cache_dir=cache_dir)  # a hub id
            except Exception as exc:  # hub, network and script errors of many types
                raise DataSourceError(
                    f"{source}: no such local folder or file, and loading it as a Hugging Face hub id failed "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        raise DataSourceError(f"missing dataset folder or file: {source}")
    if (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))
        if split not in loaded:
            raise DataSourceError(f"{path}: no split {split!r} (found {sorted(loaded)})")
        return loaded[split]
    if (path / "state.json").exists():
        return datasets.load_from_disk(str(path))  # one Dataset: it is the split asked for
    return datasets.load_dataset("parquet", data_files=_parquet_files(path, split), split="train", cache_dir=cache_dir)


def read_hf_source(
    adapter: DatasetAdapter,
    source: str | Path,
    split: str,
    problems: ProblemLog,
    image_column: str = "image",
    label_column: str = "label",
    cache_dir: str | None = None,
) -> list[SourceRecord]:
    """The records of ``split`` of a Hugging Face copy of ``adapter``'s dataset.

    Example: ``read_hf_source(get_adapter("stanford_cars"), "cars_hf", "test", ProblemLog())``
    for a folder written by ``DatasetDict.save_to_disk("cars_hf")``.
    """
    import datasets

    table = _load(source, split, cache_dir)
    for column in (image_column, label_column):
        if column not in table.column_names:
            raise DataSourceError(f"{source}: split {split!r} has no column {column!r} (has {table.column_names})")
    feature = table.features[label_column]
    if not isinstance(feature, datasets.ClassLabel):
        raise DataSourceError(f"{source}: column {label_column!r} is {feature}, not a ClassLabel with class names")
    table = table.select_columns([image_column, label_column]).cast_column(image_column, datasets.Image(decode=False))
    classes: dict[int, ClassInfo] = {}
    for index, name in enumerate(feature.names):
        classes[index] = adapter.class_for_name(name) or adapter.class_info(index, name)
    records = []
    for row, label in enumerate(table[label_column]):
        origin = f"{source} split {split!r} row {row}"
        if label is None or label not in classes:
            problems.report(f"{origin}: unknown class id {label!r} (0..{len(classes) - 1})")
            continue
        records.append(
            SourceRecord(
                data_source=adapter.name,
                split=split,
                image_id=f"{split}/{row}",
                cls=classes[label],
                source_file=f"hf:{split}/{row}",
                origin=origin,
                image_loader=_RowImage(table, row, image_column, origin),
            )
        )
    return records


class _RowImage:
    """Reads the encoded bytes of one row's image when called (bytes, or the file its path names)."""

    def __init__(self, table, row: int, column: str, origin: str) -> None:
        self.table, self.row, self.column, self.origin = table, row, column, origin

    def __call__(self) -> bytes:
        value = self.table[self.row][self.column] or {}
        if value.get("bytes"):
            return value["bytes"]
        path = value.get("path")
        if path and Path(path).is_file():
            return Path(path).read_bytes()
        raise DataSourceError(f"{self.origin}: no image bytes, and the image path {path!r} is not a file")
