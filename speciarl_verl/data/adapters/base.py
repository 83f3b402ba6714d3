"""The contract every dataset adapter fulfils, and the small file helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.data.shipped_lists import class_names, synonyms_of
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord
from speciarl_verl.judge.verifier import ParentLevel

__all__ = ["DatasetAdapter", "dedupe_parents", "find_layout_root", "read_lines", "relative_name"]

#: ``_name_index`` per adapter class (the shipped lists never change while the process runs).
_NAME_INDEX: dict[type, dict[str, int]] = {}


class DatasetAdapter(ABC):
    """Reads one benchmark in the layout its authors distribute.

    Subclasses set ``name`` (the ``data_source`` string), ``splits`` (the split names of
    the official layout), ``class_list`` (the shipped class-name file) and, if the CoOp
    split JSON exists for the dataset, ``coop_image_dir`` (the folder its paths are
    relative to) and ``coop_split_file`` (the JSON's usual name). They implement
    :meth:`read_raw` and, where the naming rule is not "underscores become spaces",
    :meth:`ground_truth` and :meth:`parents`.

    What the judge's rule tier knows of a class is declared here too, and written into
    every row: ``domain_nouns`` (the words for the whole benchmark's domain, filed
    *generic*; :meth:`domain_nouns_of` may add words per class) and
    :meth:`parent_levels` (which parents are ``close``, i.e. may be filed *less specific*
    without asking the LLM judge). A new dataset needs no change to the judge.
    """

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    class_list: ClassVar[str]
    coop_image_dir: ClassVar[str | None] = None
    coop_split_file: ClassVar[str | None] = None
    domain_nouns: ClassVar[tuple[str, ...]] = ()
    #: True where copies are known to name the classes by the official 1-based class number
    #: (Flowers-102, whose official files name no class): a Hugging Face copy whose class
    #: names are all such numbers is then read by number, see :mod:`speciarl_verl.data.hf_source`.
    numbered_class_names: ClassVar[bool] = False
    #: False for a dataset whose images are made, not read (``--root`` is ignored): ``--source auto``
    #: then never takes the root for a Hugging Face copy, whatever parquet files lie there.
    reads_root: ClassVar[bool] = True

    @abstractmethod
    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        """The records of ``split`` from the extracted archive at ``root`` (or a folder above it)."""

    def ground_truth(self, class_name: str) -> str:
        """The natural name of a class from the dataset's own spelling of it."""
        return " ".join(class_name.replace("_", " ").split())

    def parents(self, class_name: str) -> tuple[str, ...]:
        """Coarser names of a class that follow from its name alone (nearest first)."""
        return ()

    def parent_levels(self, parents: Sequence[str]) -> tuple[ParentLevel, ...]:
        """The level of each of ``parents`` (nearest first, before duplicates are dropped).

        By default the nearest parent is ``close`` and the others ``far``; a dataset whose
        nearest parent is a broad kind (Pets' "cat"/"dog") or may be missing (a car's model)
        overrides this.

        >>> from speciarl_verl.data.adapters import get_adapter
        >>> get_adapter("fgvc_aircraft").parent_levels(["Boeing 737", "Boeing"])
        ('close', 'far')
        """
        return tuple("close" if position == 0 else "far" for position in range(len(parents)))

    def domain_nouns_of(self, parents: Sequence[str]) -> tuple[str, ...]:
        """The domain nouns of a class with these ``parents``: :attr:`domain_nouns` unless overridden."""
        return self.domain_nouns

    def class_info(self, class_id: int, class_name: str, parents: Sequence[str] | None = None) -> ClassInfo:
        """A :class:`ClassInfo` by this dataset's rules; ``parents`` overrides :meth:`parents`."""
        truth = self.ground_truth(class_name)
        found = self.parents(class_name) if parents is None else tuple(parents)
        kept = dedupe_parents(truth, found, self.parent_levels(found))
        return ClassInfo(
            class_id=class_id,
            class_name=class_name,
            ground_truth=truth,
            parents=tuple(name for name, _ in kept),
            synonyms=synonyms_of(self.name, truth),
            parent_levels=tuple(level for _, level in kept),
            domain_nouns=self.domain_nouns_of(found),
        )

    def name_forms(self, name: str) -> tuple[str, ...]:
        """The spellings of a foreign class name to try against the official list, ``name`` itself first.

        A dataset whose copies are known to rewrite its names (Stanford Cars' year-first or
        number-prefixed names) overrides this to undo the rewriting.
        """
        return (name,)

    def class_for_name(self, name: str) -> ClassInfo | None:
        """Match a class name from another source (HF ``ClassLabel``, CoOp JSON) to the official list.

        Names are compared after this dataset's naming rule and label normalisation, so
        ``"abyssinian"`` finds Pets' ``"Abyssinian"`` and ``"001.Black_footed_Albatross"``
        finds CUB's class 0; the synonyms of ``synonyms.txt`` are tried too (``"Brewer's
        Blackbird"`` finds CUB's ``009.Brewer_Blackbird``), an official name winning over a
        synonym, and so are the spellings of :meth:`name_forms`. Returns None for a name that
        is none of these.

        >>> from speciarl_verl.data.adapters import get_adapter
        >>> get_adapter("cub200").class_for_name("Brewer's Blackbird").class_name
        '009.Brewer_Blackbird'
        """
        index = self._name_index()
        for form in self.name_forms(name):
            class_id = index.get(normalize_label(self.ground_truth(form)))
            if class_id is not None:
                return self.class_info(class_id, class_names(self.class_list)[class_id])
        return None

    def _name_index(self) -> dict[str, int]:
        """Matching key -> class id, for the official names and then their synonyms."""
        cached = _NAME_INDEX.get(type(self))
        if cached is None:
            official = [normalize_label(self.ground_truth(name)) for name in class_names(self.class_list)]
            cached = {key: class_id for class_id, key in reversed(list(enumerate(official)))}
            for class_id, name in enumerate(class_names(self.class_list)):
                for synonym in synonyms_of(self.name, self.ground_truth(name)):
                    cached.setdefault(normalize_label(self.ground_truth(synonym)), class_id)
            _NAME_INDEX[type(self)] = cached
        return cached

    def locate(self, root: Path) -> Path:
        """The folder under ``root`` that CoOp split paths are relative to (the parent of ``coop_image_dir``)."""
        raise DataSourceError(f"{self.name}: no CoOp split file format is defined for this dataset")

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            coop = ""
            if self.coop_split_file and split in ("train", "val", "test"):
                coop = f" ({split!r} is a split of the CoOp split file: add --split-file {self.coop_split_file})"
            raise DataSourceError(
                f"{self.name}: unknown split {split!r} for the official layout; choose from "
                f"{', '.join(self.splits)}{coop}"
            )


def dedupe_parents(
    ground_truth: str, parents: Sequence[str], levels: Sequence[ParentLevel]
) -> tuple[tuple[str, ParentLevel], ...]:
    """``(parent, level)`` pairs without empty parents and those that fold to the ground truth or
    to a nearer parent; a parent keeps its own level (a dropped family does not promote the maker).

    >>> dedupe_parents("F/A-18", ["F/A-18", "McDonnell Douglas"], ["close", "far"])
    (('McDonnell Douglas', 'far'),)
    """
    if len(levels) != len(parents):
        raise ValueError(f"{ground_truth!r}: {len(parents)} parents {list(parents)} but levels {list(levels)}")
    seen = {normalize_label(ground_truth)}
    kept: list[tuple[str, ParentLevel]] = []
    for parent, level in zip(parents, levels, strict=True):
        key = normalize_label(parent)
        if key and key not in seen:
            seen.add(key)
            kept.append((parent, level))
    return tuple(kept)


def find_layout_root(root: Path, marker: str, wrappers: Sequence[str], dataset: str) -> Path:
    """The folder under ``root`` that holds ``marker``, looking inside the usual wrapper folders.

    Users point ``--root`` at the extracted archive or at the folder that holds it; both work.
    """
    root = Path(root)
    for candidate in (root, *(root / w for w in wrappers)):
        if (candidate / marker).exists():
            return candidate
    looked = ", ".join(str(root / w / marker) for w in ("", *wrappers))
    raise DataSourceError(f"{dataset}: no {marker} found under {root} (looked for {looked})")


def read_lines(path: Path) -> list[str]:
    """The lines of a text list file (line ``n`` at index ``n - 1``); a missing file is a clear error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataSourceError(f"missing file: {path}") from None
    return [line.rstrip("\r\n") for line in text.splitlines()]


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to the dataset root the user gave, with forward slashes (the parquet's ``source_file``)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()
