"""FGVC-Aircraft 2013b (``fgvc-aircraft-2013b.tar.gz``), at the variant level.

Layout: ``fgvc-aircraft-2013b/data/{variants.txt, images_variant_<split>.txt,
images_family_<split>.txt, images_manufacturer_<split>.txt, images/<7-digit id>.jpg}``.
Splits: ``train``, ``val``, ``trainval``, ``test``. Lines are ``<id> <label>`` and the label
may contain spaces, so each line is split on its first space only; ids keep their leading
zeros (``0056978``) and are never parsed as numbers.

Ground truth: the variant name exactly as ``variants.txt`` spells it (``707-320``,
``BAE 146-200``, ``F/A-18``). ``parents``: the image's family, then its manufacturer, from
the family and manufacturer files of the same split (``737-800`` -> ``["Boeing 737",
"Boeing"]``), the family ``close`` and the manufacturer ``far``; a parent equal to the
variant (``F/A-18``) is dropped, so F/A-18's only parent is its ``far`` manufacturer.
A family whose name is, or contains, the name of a variant is ``far`` too: the 2013b
families ``A320`` (of A318, A319, A320, A321), ``CRJ-700`` (of CRJ-700, CRJ-900), ``MD-80``
(of MD-80, MD-87) and ``Embraer ERJ 145`` (of ERJ 135, ERJ 145). Answering "A320" for an
A321 names a sibling variant as much as the family, and "Embraer ERJ 145" for an ERJ 145
is the variant plus its maker, so neither may be filed *less specific* without the LLM judge.
``domain_nouns``: "aircraft", "airplane" and their spelling variants. ``class_id`` is the
line index in ``variants.txt``. The 20-pixel copyright banner at the bottom of each image
is left in place: the original file bytes go into the parquet.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, read_lines, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.shipped_lists import class_names
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord
from speciarl_verl.judge.verifier import ParentLevel

__all__ = ["FgvcAircraftAdapter"]


def _labelled_ids(path: Path, problems: ProblemLog, listing: bool = False) -> list[tuple[str, str, int, int]]:
    """``(image id, label, line number, slot)`` of an ``images_<level>_<split>.txt`` file.

    ``slot`` counts the file's non-blank lines from 0, a malformed one included; in the
    ``listing`` (the variant file) a malformed line is reported as the dropped row of its slot.
    """
    rows = []
    slot = -1
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        slot += 1
        image_id, _, label = line.strip().partition(" ")
        if not label.strip():
            message = f"{path} line {number}: expected '<image id> <label>', got {line!r}"
            problems.report(message, slot=slot if listing else None)
            continue
        rows.append((image_id, label.strip(), number, slot))
    return rows


@cache
def _variant_word_runs(class_list: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(normalize_label(name).split()) for name in class_names(class_list))


def _holds_a_variant_name(name: str, class_list: str) -> bool:
    """True if ``name``'s words are, or contain as a run, the words of an official variant name."""
    words = tuple(normalize_label(name).split())
    return any(
        words[start : start + len(run)] == run
        for run in _variant_word_runs(class_list)
        for start in range(len(words) - len(run) + 1)
    )


@register_adapter("fgvc_aircraft")
class FgvcAircraftAdapter(DatasetAdapter):
    name = "fgvc_aircraft"
    splits = ("train", "val", "trainval", "test")
    class_list = "fgvc_aircraft_variants.txt"
    # only words true of every variant: "jet" or "airliner" would misfile a Cessna or a DHC-6 as generic
    domain_nouns = ("aircraft", "airplane", "aeroplane", "plane")

    def ground_truth(self, class_name: str) -> str:
        """Variant names are used as spelled (``"F/A-18"``, ``"BAE 146-200"``); only whitespace is tidied."""
        return " ".join(class_name.split())

    def parent_levels(self, parents: Sequence[str]) -> tuple[ParentLevel, ...]:
        """The family ``close`` and the manufacturer ``far``, but a family that names a variant ``far`` as well.

        >>> adapter = FgvcAircraftAdapter()
        >>> adapter.parent_levels(["Boeing 737", "Boeing"]), adapter.parent_levels(["A320", "Airbus"])
        (('close', 'far'), ('far', 'far'))
        >>> adapter.parent_levels(["Embraer ERJ 145", "Embraer"])
        ('far', 'far')
        """
        levels = super().parent_levels(parents)
        if parents and _holds_a_variant_name(parents[0], self.class_list):
            return ("far", *levels[1:])
        return levels

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        data = find_layout_root(root, "variants.txt", ("data", "fgvc-aircraft-2013b/data"), self.name)
        variants = [line.strip() for line in read_lines(data / "variants.txt") if line.strip()]
        if not variants:
            raise DataSourceError(f"{data / 'variants.txt'} lists no variants")
        variant_ids = {name: index for index, name in enumerate(variants)}
        families = {i: label for i, label, _, _ in _labelled_ids(data / f"images_family_{split}.txt", problems)}
        makers = {i: label for i, label, _, _ in _labelled_ids(data / f"images_manufacturer_{split}.txt", problems)}
        listing = data / f"images_variant_{split}.txt"
        classes: dict[tuple[str, str, str], ClassInfo] = {}
        records = []
        for image_id, variant, number, slot in _labelled_ids(listing, problems, listing=True):
            origin = f"{listing} line {number}"
            if variant not in variant_ids:
                problems.report(f"{origin}: variant {variant!r} (image {image_id}) is not in variants.txt", slot=slot)
                continue
            if image_id not in families or image_id not in makers:
                problems.report(
                    f"{origin}: image {image_id} has no family or manufacturer line for split {split}", slot=slot
                )
                continue
            key = (variant, families[image_id], makers[image_id])
            if key not in classes:
                classes[key] = self.class_info(variant_ids[variant], variant, parents=key[1:])
            records.append(
                SourceRecord(
                    data_source=self.name,
                    split=split,
                    image_id=image_id,
                    cls=classes[key],
                    source_file=relative_name(data / "images" / f"{image_id}.jpg", root),
                    origin=origin,
                    image_path=data / "images" / f"{image_id}.jpg",
                    slot=slot,
                )
            )
        return records
