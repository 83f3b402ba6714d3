"""Hugging Face ``datasets`` copies of a benchmark: a local ``save_to_disk`` folder, parquet files, or a hub id.

The copy needs an ``image`` column (``datasets.Image``) and a ``label`` column
(``datasets.ClassLabel``). Each ClassLabel name is matched to the official class list by
the dataset's naming rule, its listed synonyms and the name forms its adapter knows (so
``"001.Black_footed_Albatross"``, ``"Brewer's Blackbird"``, ``"abyssinian"``, ``"apple_pie"``
or Cars' ``"2000 AM General Hummer SUV"`` get the same ground truth, class id and parents as
the original layout). A copy whose names are all numbers is read by number only for a dataset
whose copies are known to do that (Flowers-102: ``"1"`` ... ``"102"`` are the official 1-based
label numbers, whatever order the copy lists them in, so ``"77"`` is ``passion flower``);
for the others, and for a number outside 1..N, a 0 or a number given twice, it is refused. A
name that matches no official class is refused with one line naming some of the unmatched
names, their count, and some of ours; with ``skip_bad`` the rows of such classes are skipped
and each is reported, so the build summary counts them. Image bytes are read lazily, one row
at a time, and are never decoded here.

Split names are the copy's own (e.g. ``ethz/food101`` calls the official test split
``validation``). A root that holds one split only (a ``Dataset.save_to_disk`` folder, one
parquet file) is read only if the split it records (``state.json``'s split, the split folder
of a ``DatasetDict``, or a file name such as ``train-00000-of-00001.parquet`` or
``test.parquet``) is the split asked for; one that records none is taken as that split.
Hierarchy columns of a copy are not read: parents come from the class name only (Pets'
species, Cars' make and model; none for FGVC variants).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter
from speciarl_verl.data.shipped_lists import class_names
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord

__all__ = ["looks_like_hf_copy", "match_class_names", "read_hf_source"]

#: How many names an error message quotes.
_QUOTED = 3
#: File names that are split names on their own (``test.parquet``; ``data/train/0000.parquet``).
_SPLIT_WORDS = frozenset({"train", "test", "validation", "val", "valid", "trainval", "dev"})
_SHARD = re.compile(r"^(?P<split>.+?)-\d+-of-\d+(?:-.*)?$")


def looks_like_hf_copy(path: Path) -> bool:
    """True for a ``save_to_disk`` folder or a parquet copy, as opposed to an extracted archive.

    A parquet copy is a ``.parquet`` file, or a folder with hub-style shards
    (``data/<split>-00000-of-00001.parquet``, ``<split>-*-of-*.parquet``, ``data/<split>.parquet``);
    a stray parquet file beside a raw layout does not count, nor does a parquet this package
    built (its ``.manifest.json`` beside it), such as ``data/shapes_train.parquet`` in a folder
    that is also a ``--root``.
    """
    path = Path(path)
    if path.is_file():
        return path.suffix == ".parquet"
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return True
    if not path.is_dir():
        return False
    shards = [*path.glob("*-of-*.parquet"), *path.glob("data/*.parquet")]
    return any(_recorded_split(shard) is not None and not _our_build(shard) for shard in shards)


def _our_build(parquet: Path) -> bool:
    """A parquet written by this package's builder: its manifest lies beside it."""
    return parquet.with_name(parquet.stem + ".manifest.json").exists()


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


def _recorded_split(path: Path) -> str | None:
    """The split a one-split root says it holds, or None if it records none.

    >>> _recorded_split(Path("copy/data/test-00000-of-00001.parquet")), _recorded_split(Path("x/train/0000.parquet"))
    ('test', 'train')
    >>> _recorded_split(Path("pets_copy.parquet")) is None
    True
    """
    if path.is_dir():  # a Dataset.save_to_disk folder
        try:
            recorded = json.loads((path / "state.json").read_text(encoding="utf-8")).get("_split")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded:
            return str(recorded)
        parent = path.parent / "dataset_dict.json"  # the split folder of a DatasetDict.save_to_disk
        try:
            splits = json.loads(parent.read_text(encoding="utf-8")).get("splits", [])
        except (OSError, ValueError, AttributeError):
            splits = []
        return path.name if path.name in splits else None
    shard = _SHARD.match(path.stem)
    if shard:
        return shard.group("split")
    if path.stem in _SPLIT_WORDS:
        return path.stem
    if path.stem.isdigit() and path.parent.name in _SPLIT_WORDS:
        return path.parent.name
    return None


def _check_recorded_split(path: Path, split: str) -> None:
    recorded = _recorded_split(path)
    if recorded is not None and recorded != split:
        raise DataSourceError(
            f"{path}: this copy holds the split {recorded!r} only, but split {split!r} was asked for "
            f"(pass --split {recorded}, or point --root at the copy that holds {split!r})"
        )


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
        _check_recorded_split(path, split)
        return datasets.load_from_disk(str(path))  # one Dataset: it is the split asked for
    if path.is_file():
        _check_recorded_split(path, split)
    return datasets.load_dataset("parquet", data_files=_parquet_files(path, split), split="train", cache_dir=cache_dir)


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_QUOTED])
    return shown + (", ..." if len(names) > _QUOTED else "")


def match_class_names(
    adapter: DatasetAdapter, names: Sequence[str], source: str | Path
) -> tuple[dict[int, ClassInfo], list[int]]:
    """The official class of each of a copy's class ``names`` (by index), and the indices that match none.

    Raises :class:`DataSourceError` for numbered names the dataset does not read by number
    (see the module docstring) and for two names that match one class.

    >>> from speciarl_verl.data.adapters import get_adapter
    >>> matched, unmatched = match_class_names(get_adapter("flowers102"), ["1", "10", "77"], "copy")
    >>> [(matched[i].class_id, matched[i].ground_truth) for i in range(3)], unmatched
    ([(0, 'pink primrose'), (9, 'globe thistle'), (76, 'passion flower')], [])
    """
    names = [str(name) for name in names]
    official = class_names(adapter.class_list) if adapter.class_list else ()
    if adapter.numbered_class_names and names and all(name.strip().isdigit() for name in names):
        numbers = [int(name) for name in names]
        repeated = sorted({number for number in numbers if numbers.count(number) > 1})
        if min(numbers) < 1 or max(numbers) > len(official) or repeated:
            raise DataSourceError(
                f"{source}: the class names are numbers ({_quoted(names)}); a {adapter.name} copy's numbers "
                f"are read as the official 1-based class numbers 1..{len(official)}, each once, but these run "
                f"{min(numbers)}..{max(numbers)}" + (f" and repeat {repeated[:_QUOTED]}" if repeated else "")
            )
        return {i: adapter.class_info(n - 1, official[n - 1]) for i, n in enumerate(numbers)}, []
    matched: dict[int, ClassInfo] = {}
    unmatched: list[int] = []
    first_name: dict[int, str] = {}
    for index, name in enumerate(names):
        info = adapter.class_for_name(name)
        if info is None:
            unmatched.append(index)
            continue
        earlier = first_name.setdefault(info.class_id, name)
        if earlier != name:
            raise DataSourceError(
                f"{source}: the class names {earlier!r} and {name!r} both match {adapter.name} class "
                f"{info.class_name!r}; a copy must name each class once"
            )
        matched[index] = info
    return matched, unmatched


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
    names = list(feature.names)
    classes, unmatched = match_class_names(adapter, names, source)
    if unmatched and not problems.skip_bad:
        ours = class_names(adapter.class_list) if adapter.class_list else ()
        problems.report(  # raises
            f"{source}: {len(unmatched)} of {len(names)} class names match no {adapter.name} class: "
            f"{_quoted([names[i] for i in unmatched])} (expected names such as {_quoted(ours)})"
        )
    records = []
    for row, label in enumerate(table[label_column]):
        origin = f"{source} split {split!r} row {row}"
        if label is None or not 0 <= label < len(names):
            problems.report(f"{origin}: unknown class id {label!r} (0..{len(names) - 1})", slot=row)
            continue
        if label not in classes:
            problems.report(f"{origin}: class {names[label]!r} (label {label}) is not a {adapter.name} class", slot=row)
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
                slot=row,
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
