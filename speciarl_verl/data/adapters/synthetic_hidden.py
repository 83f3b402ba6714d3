"""Synthetic shapes with graded species visibility: the family is always clear, the species not always.

A sibling of :mod:`speciarl_verl.data.adapters.synthetic_shapes` (whose adapter, class objects and
drawing it reuses), built for the regime SpeciaRL is about: images on which a model can tell the
family but not the species. As there, the shape is the
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

import random
from functools import partial
from typing import ClassVar, Literal

from PIL import Image

from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.adapters.synthetic_shapes import (
    IMAGE_SIZE,
    ShapeSpecies,
    SyntheticShapesAdapter,
    draw_shape,
    every_species,
    png_bytes,
    split_species,
)
from speciarl_verl.data.source_record import ClassInfo, SourceRecord

__all__ = [
    "COLOURS",
    "FAINT_SHARE",
    "HELD_OUT",
    "SPECIES",
    "SPLIT_SIZES",
    "VISIBILITIES",
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
_DATASET = "synthetic_shapes_hidden"

#: All 32 classes, family-major (the class objects of ``synthetic_shapes``, with eight colours).
SPECIES: tuple[ShapeSpecies, ...] = every_species(COLOURS)


def species_in_split(split: str) -> tuple[ShapeSpecies, ...]:
    """The classes of ``split``: the 4 held-out pairs for ``test_ood``, the other 28 otherwise.

    >>> [s.name for s in species_in_split("test_ood")]
    ['orange circle', 'cyan square', 'pink triangle', 'purple cross']
    """
    return split_species(SPECIES, HELD_OUT, split)


def visibility_of(split: str, index: int) -> Visibility:
    """How much of the colour image ``index`` of a class in ``split`` shows.

    >>> [visibility_of("test", i) for i in range(4)], [visibility_of("test_ood", i) for i in range(4)]
    (['clear', 'clear', 'faint', 'hidden'], ['clear', 'faint', 'hidden', 'hidden'])
    """
    cycle = _CYCLES["test_ood" if split == "test_ood" else "in_domain"]
    return cycle[index % len(cycle)]


def _fill(colour: tuple[int, int, int], visibility: Visibility, rng: random.Random) -> tuple[int, ...]:
    if visibility == "hidden":
        grey = rng.randint(_GREY - 35, _GREY + 25)
        return (grey, grey, grey)
    share = 1.0 if visibility == "clear" else FAINT_SHARE
    mixed = [share * c + (1 - share) * _GREY for c in colour]
    return tuple(max(0, min(255, round(c) + rng.randint(-_JITTER, _JITTER))) for c in mixed)


def render_hidden(species: ShapeSpecies, split: str, index: int, size: int = IMAGE_SIZE) -> Image.Image:
    """The RGB image number ``index`` of ``species`` in ``split``; a pure function of its arguments.

    >>> image = render_hidden(SPECIES[0], "test", 3)  # image 3 is a hidden one: a grey fill
    >>> image.getpixel((56, 56))[0] == image.getpixel((56, 56))[1] == image.getpixel((56, 56))[2]
    True
    """
    rng = random.Random(f"{_DATASET}/{split}/{species.class_name}/{index}")
    fill = partial(_fill, COLOURS[species.colour], visibility_of(split, index))
    return draw_shape(species.family, fill, rng, size)


def render_hidden_png(species: ShapeSpecies, split: str, index: int, size: int = IMAGE_SIZE) -> bytes:
    """:func:`render_hidden` encoded as PNG with fixed encoder options (reproducible bytes)."""
    return png_bytes(render_hidden(species, split, index, size))


@register_adapter(_DATASET)
class SyntheticHiddenAdapter(SyntheticShapesAdapter):
    """The shapes adapter with this task's classes, splits and images (parents, domain nouns: the same)."""

    name = _DATASET
    splits = tuple(SPLIT_SIZES)
    species: ClassVar[tuple[ShapeSpecies, ...]] = SPECIES
    held_out: ClassVar[frozenset[tuple[str, str]]] = HELD_OUT
    split_sizes: ClassVar[dict[str, int]] = SPLIT_SIZES

    def record(self, species: ShapeSpecies, info: ClassInfo, split: str, index: int) -> SourceRecord:
        """The record of image ``index``; its ``image_id`` and ``visibility`` say how visible the species is."""
        visibility = visibility_of(split, index)
        return SourceRecord(
            data_source=self.name,
            split=split,
            image_id=f"{species.class_name}_{visibility}_{index:04d}",
            cls=info,
            source_file=f"rendered:{split}/{species.class_name}/{index:04d}.png",
            origin=f"{self.name} {split} {species.class_name} image {index} ({visibility})",
            image_loader=partial(render_hidden_png, species, split, index),
            visibility=visibility,
        )
