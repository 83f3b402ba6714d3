"""Oxford-IIIT Pets (``images.tar.gz`` + ``annotations.tar.gz``).

Layout: ``images/<Breed>_<n>.jpg`` and ``annotations/{trainval.txt, test.txt}`` whose rows
are ``<image> <CLASS-ID> <SPECIES> <BREED-ID>`` (no header; SPECIES 1 = cat, 2 = dog).
Splits: ``trainval`` and ``test``; or the CoOp split (``train``/``val``/``test``) with
``split_file=split_zhou_OxfordPets.json``. Only listed images are read, so the unlisted
JPEGs and stray ``.mat`` files in ``images/`` are ignored; file names are used with their
exact case.

Ground truth: the breed (the image name without its trailing ``_<n>``) with underscores
turned into spaces, in the dataset's case: cat breeds capitalised (``Abyssinian``,
``British Shorthair``), dog breeds lower case (``american bulldog``). ``parents``:
``["cat"]`` or ``["dog"]`` from the SPECIES column (for other sources: from the official
capitalisation, cats being the capitalised breeds), level ``far``: the species is a broad
kind, which the method's judge files as *generic*, never *less specific*. ``domain_nouns``:
the species' words (``cat``, ``kitten``, ... or ``dog``, ``puppy``, ...) and ``pet``,
``animal``; "cat" for a dog breed is no domain noun of it and is left to the LLM judge.
``class_id`` is ``CLASS-ID - 1``; ``image_id`` is the image name without extension.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.data.adapters.base import DatasetAdapter, find_layout_root, read_lines, relative_name
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.shipped_lists import class_names
from speciarl_verl.data.source_record import ProblemLog, SourceRecord
from speciarl_verl.judge.verifier import ParentLevel

__all__ = ["OxfordPetsAdapter"]

_SPECIES = {"1": "cat", "2": "dog"}
_SPECIES_NOUNS = {
    "cat": ("cat", "cats", "kitten", "domestic cat"),
    "dog": ("dog", "dogs", "puppy", "domestic dog"),
}
_WRAPPERS = ("oxford-iiit-pet", "oxford_pets", "oxford-pets")


@register_adapter("oxford_pets")
class OxfordPetsAdapter(DatasetAdapter):
    name = "oxford_pets"
    splits = ("trainval", "test")
    class_list = "oxford_pets.txt"
    coop_image_dir = "images"
    coop_split_file = "split_zhou_OxfordPets.json"
    domain_nouns = ("pet", "pets", "animal")

    def parent_levels(self, parents: Sequence[str]) -> tuple[ParentLevel, ...]:
        """Every parent is ``far``: a breed's only ancestor is its species."""
        return ("far",) * len(parents)

    def domain_nouns_of(self, parents: Sequence[str]) -> tuple[str, ...]:
        """The species' words, then the pet-wide ones.

        >>> OxfordPetsAdapter().domain_nouns_of(["dog"])
        ('dog', 'dogs', 'puppy', 'domestic dog', 'pet', 'pets', 'animal')
        """
        species = tuple(noun for parent in parents for noun in _SPECIES_NOUNS.get(parent, ()))
        return species + self.domain_nouns

    def parents(self, class_name: str) -> tuple[str, ...]:
        """``("cat",)`` for a capitalised official breed, ``("dog",)`` for a lower-case one."""
        key = normalize_label(self.ground_truth(class_name))
        for official in class_names(self.class_list):
            if normalize_label(self.ground_truth(official)) == key:
                return ("cat",) if official[:1].isupper() else ("dog",)
        return ()

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        base = find_layout_root(root, "annotations", _WRAPPERS, self.name)
        official = class_names(self.class_list)
        listing = base / "annotations" / f"{split}.txt"
        records = []
        classes = {}
        slot = -1  # counts the listed rows, the bad ones included
        for number, line in enumerate(read_lines(listing), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            slot += 1
            origin = f"{listing} line {number}"
            fields = line.split()
            if len(fields) != 4 or not fields[1].isdigit():
                message = f"{origin}: expected '<image> <CLASS-ID> <SPECIES> <BREED-ID>', got {line!r}"
                problems.report(message, slot=slot)
                continue
            image, class_id, species = fields[0], int(fields[1]), fields[2]
            breed = image.rsplit("_", 1)[0]
            if not 1 <= class_id <= len(official):
                problems.report(f"{origin}: unknown class id {class_id} (1..{len(official)})", slot=slot)
                continue
            if official[class_id - 1].casefold() != breed.casefold():
                problems.report(
                    f"{origin}: class id {class_id} is {official[class_id - 1]!r} but the image name says {breed!r}",
                    slot=slot,
                )
                continue
            if species not in _SPECIES:
                problems.report(f"{origin}: species must be 1 (cat) or 2 (dog), got {species!r}", slot=slot)
                continue
            key = (breed, species)
            if key not in classes:
                classes[key] = self.class_info(class_id - 1, breed, parents=(_SPECIES[species],))
            path = base / "images" / f"{image}.jpg"
            records.append(
                SourceRecord(
                    data_source=self.name,
                    split=split,
                    image_id=image,
                    cls=classes[key],
                    source_file=relative_name(path, root),
                    origin=origin,
                    image_path=path,
                    slot=slot,
                )
            )
        return records

    def locate(self, root: Path) -> Path:
        return find_layout_root(root, self.coop_image_dir, _WRAPPERS, self.name)
