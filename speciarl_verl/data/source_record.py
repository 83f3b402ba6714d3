"""What an adapter hands the builder: one labelled image of a dataset, and how bad input is reported.

An adapter turns a dataset's own files into :class:`SourceRecord` objects without opening
any image; the builder reads and checks the image bytes later. Every record knows where it
came from (``origin``: the list file and line, or the Hugging Face row) so an error can
name it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from speciarl_verl.judge.verifier import ParentLevel

__all__ = ["ClassInfo", "DataSourceError", "ProblemLog", "SourceRecord"]


class DataSourceError(ValueError):
    """Bad input: a missing or corrupt file, an unknown class, an empty split, a malformed line."""


@dataclass(frozen=True)
class ClassInfo:
    """One class of a dataset, as the parquet row will carry it.

    ``class_id`` is 0-based in the dataset's official class order; ``class_name`` is the
    dataset's own spelling (``"001.Black_footed_Albatross"``); ``ground_truth`` the natural
    name the reward compares against; ``parents`` the coarser names of the class from the
    dataset's own hierarchy, nearest first, and ``parent_levels`` the level of each
    (``close`` or ``far``, see :data:`~speciarl_verl.judge.verifier.ParentLevel`);
    ``domain_nouns`` the words for the class's whole domain (``"bird"``); ``synonyms`` other
    exact names.
    """

    class_id: int
    class_name: str
    ground_truth: str
    parents: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    parent_levels: tuple[ParentLevel, ...] = ()
    domain_nouns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.parent_levels) != len(self.parents):
            raise ValueError(
                f"class {self.class_name!r}: {len(self.parents)} parents {self.parents!r} but "
                f"{len(self.parent_levels)} parent_levels {self.parent_levels!r}; give one level per parent"
            )


@dataclass(frozen=True)
class SourceRecord:
    """One image of a split, not yet read.

    Exactly one of ``image_path`` (a file on disk) and ``image_loader`` (returns the encoded
    bytes, e.g. of a Hugging Face row) is set. ``source_file`` is what the parquet records as the image's origin
    (a path relative to the dataset root, or ``hf:<split>/<row>``); ``origin`` is where the
    record was listed (``"images.txt line 17"``), for error messages. ``slot`` is the record's
    0-based place among the rows its split lists, counting the rows dropped as bad (which
    the reader reports with the same numbering, see :meth:`ProblemLog.report`); the subset
    draw runs over these places, so dropping a bad row changes no other row's place. A
    reader that leaves it ``None`` numbers its records by their order in the list it returns.
    ``visibility`` says how much of the fine-grained cue a drawn image shows (``clear``, ``faint``,
    ``hidden``; :mod:`~speciarl_verl.data.adapters.synthetic_hidden`); empty for photographs.
    """

    data_source: str
    split: str
    image_id: str
    cls: ClassInfo
    source_file: str
    origin: str
    image_path: Path | None = None
    image_loader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    slot: int | None = None
    visibility: str = ""

    def __post_init__(self) -> None:
        if (self.image_path is None) == (self.image_loader is None):
            raise ValueError(f"{self.origin}: a record needs exactly one of image_path and image_loader")

    def read_image(self) -> bytes:
        """The encoded image bytes; a missing file is a :class:`DataSourceError` naming the record."""
        if self.image_loader is not None:
            return self.image_loader()
        try:
            return self.image_path.read_bytes()
        except FileNotFoundError:
            raise DataSourceError(f"{self.origin}: image file missing: {self.image_path}") from None
        except OSError as exc:
            raise DataSourceError(f"{self.origin}: cannot read image file {self.image_path}: {exc}") from exc


class ProblemLog:
    """Collects bad-input problems: raises on the first one, or (``skip_bad``) records it and goes on.

    ``dropped_slots`` holds the :attr:`SourceRecord.slot` of every listed row of the split
    that was dropped as bad (rows whose split cannot be told have none).

    >>> log = ProblemLog(skip_bad=True)
    >>> log.report("images.txt line 3: unknown class id 999", slot=2)
    >>> log.problems, log.dropped_slots
    (['images.txt line 3: unknown class id 999'], [2])
    """

    def __init__(self, skip_bad: bool = False) -> None:
        self.skip_bad = skip_bad
        self.problems: list[str] = []
        self.dropped_slots: list[int] = []

    def report(self, message: str, slot: int | None = None) -> None:
        """Raise :class:`DataSourceError` with ``message``, or record it when skipping bad input.

        ``slot``: the place of the dropped row among the rows its split lists, when the
        problem drops one (see :attr:`SourceRecord.slot`).
        """
        if not self.skip_bad:
            raise DataSourceError(message + " (pass --skip-bad / skip_bad=True to skip such rows and report them)")
        self.problems.append(message)
        if slot is not None:
            self.dropped_slots.append(slot)
