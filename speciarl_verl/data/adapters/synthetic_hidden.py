"""Synthetic shapes with graded species visibility: the family is always clear, the species not always.

A sibling of :mod:`speciarl_verl.data.adapters.synthetic_shapes` built for the regime SpeciaRL is
about: images on which a model can tell the family but not the species. As there, the shape is the
*family* (``circle``, ``square``, ``triangle``, ``cross``), the fill colour picks the *species*
(``orange circle``) and ``shape`` is the domain noun; here each family has eight colours, so a
blind guess of the species rarely hits. What changes from image to image is how much of the colour
the image shows, its *visibility*:

* ``clear``: the shape is filled with its colour;
* ``faint``: the colour is mixed with grey (:data:`FAINT_SHARE` of it left), so neighbouring hues
  can be told apart only now and then;
* ``hidden``: the shape is filled with a plain grey; the species cannot be read at all.

The outline, hence the family, is equally sharp in all three. Ground truth is always the species,
so on a hidden image the family is a *less specific* (correct) answer and a guessed species is
*wrong* unless it happens to be right.

The visibility of an image follows from its split and its number alone
(:func:`visibility_of`): in ``train``, ``val`` and ``test`` images cycle clear, clear, faint, hidden
(50/25/25 per class); in ``test_ood``, which holds the :data:`HELD_OUT` colour/shape pairs never
trained on, they cycle clear, faint, hidden, hidden (25/25/50). The parquet row records it in
``extra_info.visibility``, so a report can split on it.

Images per class (:data:`SPLIT_SIZES`): ``train`` 32, ``val`` 4, ``test`` 4 over the 28 in-domain
classes (the whole ``test`` split: 56 clear, 28 faint, 28 hidden images); ``test_ood`` 8 over the 4
held-out ones (8 clear, 8 faint, 16 hidden). ``image_id`` is ``<class_name>_<visibility>_<NNNN>``.

Example::

    speciarl data build --dataset synthetic_shapes_hidden --root . --split test --seed 0 --out data/hidden_test.parquet
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.data.adapters.base import DatasetAdapter
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.adapters.synthetic_shapes import DOMAIN_NOUN, FAMILIES, IMAGE_SIZE, shape_outline
from speciarl_verl.data.source_record import ClassInfo, ProblemLog, SourceRecord

__all__ = [
    "COLOURS",
    "FAINT_SHARE",
    "HELD_OUT",
    "SPECIES",
    "SPLIT_SIZES",
    "VISIBILITIES",
    "HiddenSpecies",
    "SyntheticHiddenAdapter",
    "render_hidden",
    "render_hidden_png",
    "species_in_split",
    "visibility_of",
]

Visibility = Literal["clear", "faint", "hidden"]
VISIBILITIES: tuple[Visibility, ...] = ("clear", "faint", "hidden")

#: Colour name -> base RGB, eight hues around the wheel; each image shifts every channel by at most ``_JITTER``.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 15),
    "yellow": (230, 210, 25),
    "green": (35, 165, 55),
    "cyan": (25, 185, 200),
    "blue": (40, 65, 220),
    "purple": (135, 45, 195),
    "pink": (240, 115, 190),
}
#: One held-out colour per family, four different colours: the out-of-domain classes.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("orange", "circle"), ("cyan", "square"), ("pink", "triangle"), ("purple", "cross")}
)
SPLIT_SIZES: dict[str, int] = {"train": 32, "val": 4, "test": 4, "test_ood": 8}
#: Visibility by image number, cycling: in-domain splits 50/25/25, the out-of-domain split 25/25/50.
_CYCLES: dict[str, tuple[Visibility, ...]] = {
    "in_domain": ("clear", "clear", "faint", "hidden"),
    "test_ood": ("clear", "faint", "hidden", "hidden"),
}
#: Share of the colour left in a faint fill (the rest is :data:`_GREY`).
FAINT_SHARE = 0.3
_GREY = 150
_JITTER = 12
_POSITION_JITTER = 0.06
_DATASET = "synthetic_shapes_hidden"


@dataclass(frozen=True)
class HiddenSpecies:
    """One class: ``class_id`` (index in :data:`SPECIES`), its colour and family; ``name`` is ``"orange circle"``."""

    class_id: int
    colour: str
    family: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.family}"

    @property
    def class_name(self) -> str:
        return f"{self.colour}_{self.family}"


#: All 32 classes, family-major.
SPECIES: tuple[HiddenSpecies, ...] = tuple(
    HiddenSpecies(family_index * len(COLOURS) + colour_index, colour, family)
    for family_index, family in enumerate(FAMILIES)
    for colour_index, colour in enumerate(COLOURS)
)


def species_in_split(split: str) -> tuple[HiddenSpecies, ...]:
    """The classes of ``split``: the 4 held-out pairs for ``test_ood``, the other 28 otherwise.

    >>> [s.name for s in species_in_split("test_ood")]
    ['orange circle', 'cyan square', 'pink triangle', 'purple cross']
    """
    ood = split == "test_ood"
    return tuple(s for s in SPECIES if ((s.colour, s.family) in HELD_OUT) == ood)


def visibility_of(split: str, index: int) -> Visibility:
    """How much of the colour image ``index`` of a class in ``split`` shows.

    >>> [visibility_of("test", i) for i in range(4)], [visibility_of("test_ood", i) for i in range(4)]
    (['clear', 'clear', 'faint', 'hidden'], ['clear', 'faint', 'hidden', 'hidden'])
    """
    cycle = _CYCLES["test_ood" if split == "test_ood" else "in_domain"]
    return cycle[index % len(cycle)]


def _fill(colour: tuple[int, int, int], visibility: Visibility, rng: random.Random) -> tuple[int, int, int]:
    if visibility == "hidden":
        grey = rng.randint(_GREY - 35, _GREY + 25)
        return (grey, grey, grey)
    share = 1.0 if visibility == "clear" else FAINT_SHARE
    mixed = [share * c + (1 - share) * _GREY for c in colour]
    return tuple(max(0, min(255, round(c) + rng.randint(-_JITTER, _JITTER))) for c in mixed)


def render_hidden(species: HiddenSpecies, split: str, index: int, size: int = IMAGE_SIZE) -> Image.Image:
    """The RGB image number ``index`` of ``species`` in ``split``; a pure function of its arguments.

    >>> image = render_hidden(SPECIES[0], "test", 3)  # image 3 is a hidden one: a grey fill
    >>> image.getpixel((56, 56))[0] == image.getpixel((56, 56))[1] == image.getpixel((56, 56))[2]
    True
    """
    visibility = visibility_of(split, index)
    rng = random.Random(f"{_DATASET}/{split}/{species.class_name}/{index}")
    shade = rng.randint(225, 250)
    background = tuple(min(255, shade + rng.randint(-6, 5)) for _ in range(3))
    fill = _fill(COLOURS[species.colour], visibility, rng)
    r = size * rng.uniform(0.30, 0.38)
    cx, cy = (size / 2 + rng.uniform(-_POSITION_JITTER, _POSITION_JITTER) * size for _ in range(2))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    points = shape_outline(species.family, cx, cy, r)
    if points is None:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(points, fill=fill)
    return image


def render_hidden_png(species: HiddenSpecies, split: str, index: int, size: int = IMAGE_SIZE) -> bytes:
    """:func:`render_hidden` encoded as PNG with fixed encoder options (reproducible bytes)."""
    buffer = io.BytesIO()
    render_hidden(species, split, index, size).save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


@register_adapter(_DATASET)
class SyntheticHiddenAdapter(DatasetAdapter):
    name = _DATASET
    splits = tuple(SPLIT_SIZES)
    class_list = ""  # the classes are defined in code (SPECIES)
    domain_nouns = (DOMAIN_NOUN, "shapes", "geometric shape", "figure")
    reads_root = False

    def parents(self, class_name: str) -> tuple[str, ...]:
        """``(family, "shape")``.

        >>> SyntheticHiddenAdapter().parents("orange_circle")
        ('circle', 'shape')
        """
        return (class_name.rsplit("_", 1)[-1], DOMAIN_NOUN)

    def class_for_name(self, name: str) -> ClassInfo | None:
        key = normalize_label(self.ground_truth(name))
        for species in SPECIES:
            if normalize_label(species.name) == key:
                return self.class_info(species.class_id, species.class_name)
        return None

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        """Records of ``split`` in class order, then image number; ``root`` is not read."""
        self.check_split(split)
        records = []
        for species in species_in_split(split):
            info = self.class_info(species.class_id, species.class_name)
            for index in range(SPLIT_SIZES[split]):
                visibility = visibility_of(split, index)
                records.append(
                    SourceRecord(
                        data_source=self.name,
                        split=split,
                        image_id=f"{species.class_name}_{visibility}_{index:04d}",
                        cls=info,
                        source_file=f"rendered:{split}/{species.class_name}/{index:04d}.png",
                        origin=f"{self.name} {split} {species.class_name} image {index} ({visibility})",
                        image_loader=partial(render_hidden_png, species, split, index),
                        visibility=visibility,
                    )
                )
        return records
