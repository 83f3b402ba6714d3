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
``domain_nouns``: "aircraft", "airplane" and their spelling variants. ``class_id`` is the
line index in ``variants.txt``. The 20-pixel copyright banner at the bottom of each image
is left in place: the original file bytes go into the parquet.
"""

from __future__ import annotations

from pathlib import Path

from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, read_lines, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.source_record import ClassInfo, DataSourceError, ProblemLog, SourceRecord

__all__ = ["FgvcAircraftAdapter"]


def _labelled_ids(path: Path, problems: ProblemLog) -> list[tuple[str, str, int]]:
    """``(image id, label, line number)`` of an ``images_<level>_<split>.txt`` file."""
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        image_id, _, label = line.strip().partition(" ")
        if not label.strip():
            problems.report(f"{path} line {number}: expected '<image id> <label>', got {line!r}")
            continue
        rows.append((image_id, label.strip(), number))
    return rows


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

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        data = find_layout_root(root, "variants.txt", ("data", "fgvc-aircraft-2013b/data"), self.name)
        variants = [line.strip() for line in read_lines(data / "variants.txt") if line.strip()]
        if not variants:
            raise DataSourceError(f"{data / 'variants.txt'} lists no variants")
        variant_ids = {name: index for index, name in enumerate(variants)}
        families = {i: label for i, label, _ in _labelled_ids(data / f"images_family_{split}.txt", problems)}
        makers = {i: label for i, label, _ in _labelled_ids(data / f"images_manufacturer_{split}.txt", problems)}
        listing = data / f"images_variant_{split}.txt"
        classes: dict[tuple[str, str, str], ClassInfo] = {}
        records = []
        for image_id, variant, number in _labelled_ids(listing, problems):
            origin = f"{listing} line {number}"
            if variant not in variant_ids:
                problems.report(f"{origin}: variant {variant!r} (image {image_id}) is not in variants.txt")
                continue
            if image_id not in families or image_id not in makers:
                problems.report(f"{origin}: image {image_id} has no family or manufacturer line for split {split}")
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
                )
            )
        return records
