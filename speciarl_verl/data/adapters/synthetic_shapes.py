"""Synthetic shapes: a tiny fine-grained task whose images are drawn, not downloaded.

Every image is one large coloured shape on a light background. The shape is the *family*
(``circle``, ``square``, ``triangle``, ``cross``), the colour picks the *species* inside it
(``red circle``, ``blue cross``, ...), and every class shares the *domain noun* ``shape``.
``parents`` is ``[family, "shape"]`` (nearest first; the family ``close``, ``shape`` ``far``)
and ``domain_nouns`` holds ``shape`` and its variants, so the judge's rule tier files
``red circle`` / ``circle`` / ``shape`` / ``None`` under *specific* / *less specific* /
*generic* / *abstain* for a red circle.

Images are rendered on demand with Pillow from (split, class, image number) alone: same
inputs, same PNG bytes, on every machine with the same Pillow. ``--root`` is not read (pass
``.``). Position, size, colour shade and background vary a little from image to image; the
class stays readable from the colour and the outline.

Splits (images per class in :data:`SPLIT_SIZES`):

* ``train`` (64 per class), ``val`` (8), ``test`` (16): the 12 in-domain species, different
  images in each split;
* ``test_ood`` (16 per class): the 4 held-out (colour, shape) pairs of :data:`HELD_OUT`, for
  out-of-domain tests.

Each colour and each shape appears in the training classes; only the 4 pairs in
:data:`HELD_OUT` never do. ``class_id`` indexes :data:`SPECIES` (all 16 classes);
``image_id`` is ``<class_name>_<NNNN>``.

Example::

    speciarl data build --dataset synthetic_shapes --root . --split train --subset 64 --seed 0 \\
        --out data/shapes_train.parquet
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

from PIL import Image, ImageDraw

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.data.adapters.base import DatasetAdapter
from speciarl_verl.data.adapters.registry import register_adapter
from speciarl_verl.data.source_record import ClassInfo, ProblemLog, SourceRecord

__all__ = [
    "COLOURS",
    "DOMAIN_NOUN",
    "FAMILIES",
    "HELD_OUT",
    "IMAGE_SIZE",
    "SPECIES",
    "SPLIT_SIZES",
    "ShapeSpecies",
    "SyntheticShapesAdapter",
    "draw_shape",
    "every_species",
    "png_bytes",
    "render_png",
    "render_shape",
    "shape_outline",
    "species_in_split",
    "split_species",
]

DOMAIN_NOUN = "shape"
FAMILIES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
#: Colour name -> base RGB; each image shifts every channel by at most ``_COLOUR_JITTER``.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 165, 50),
    "blue": (35, 70, 220),
    "yellow": (235, 200, 20),
}
#: (colour, family) pairs kept out of train/val/test: the out-of-domain split (a Latin square, so every colour
#: and every family is still seen in training with three partners).
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("yellow", "circle"), ("blue", "square"), ("green", "triangle"), ("red", "cross")}
)
#: Images per class in each split.
SPLIT_SIZES: dict[str, int] = {"train": 64, "val": 8, "test": 16, "test_ood": 16}
#: Side of every (square) image in pixels: 4 x 4 of Qwen2.5-VL's 28-pixel merged patches (16 image tokens).
IMAGE_SIZE = 112

_COLOUR_JITTER = 20
_POSITION_JITTER = 0.06  # of the image side; the largest shape still fits
_DATASET = "synthetic_shapes"


@dataclass(frozen=True)
class ShapeSpecies:
    """One class: ``class_id`` (index in :data:`SPECIES`), its colour and family; ``name`` is ``"red circle"``."""

    class_id: int
    colour: str
    family: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.family}"

    @property
    def class_name(self) -> str:
        return f"{self.colour}_{self.family}"


def every_species(colours: dict[str, tuple[int, int, int]]) -> tuple[ShapeSpecies, ...]:
    """Every (colour, family) class, family-major; ``class_id`` is the place in that order."""
    return tuple(
        ShapeSpecies(family_index * len(colours) + colour_index, colour, family)
        for family_index, family in enumerate(FAMILIES)
        for colour_index, colour in enumerate(colours)
    )


#: All 16 classes, family-major: red circle, green circle, ..., yellow cross.
SPECIES: tuple[ShapeSpecies, ...] = every_species(COLOURS)


def species_in_split(split: str) -> tuple[ShapeSpecies, ...]:
    """The classes of ``split``: the held-out pairs for ``test_ood``, the other 12 otherwise.

    >>> [s.name for s in species_in_split("test_ood")]
    ['yellow circle', 'blue square', 'green triangle', 'red cross']
    """
    return split_species(SPECIES, HELD_OUT, split)


def split_species(
    species: tuple[ShapeSpecies, ...], held_out: frozenset[tuple[str, str]], split: str
) -> tuple[ShapeSpecies, ...]:
    """Of ``species``, the ``held_out`` (colour, family) pairs for ``test_ood``, the others for any other split."""
    ood = split == "test_ood"
    return tuple(s for s in species if ((s.colour, s.family) in held_out) == ood)


def shape_outline(family: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon points of ``family`` centred at (cx, cy) with half-size ``r``; None for the circle."""
    if family == "circle":
        return None
    if family == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if family == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if family == "cross":
        a, b = r, r * 0.35
        return [
            (cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b),
            (cx + a, cy + b), (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a),
            (cx - b, cy + b), (cx - a, cy + b), (cx - a, cy - b), (cx - b, cy - b),
        ]  # fmt: skip
    raise ValueError(f"unknown shape family {family!r}; known: {', '.join(FAMILIES)}")


def render_shape(species: ShapeSpecies, split: str, index: int, size: int = IMAGE_SIZE) -> Image.Image:
    """The RGB image number ``index`` of ``species`` in ``split``; a pure function of its arguments.

    >>> render_shape(SPECIES[0], "train", 3).size
    (112, 112)
    """
    rng = random.Random(f"{_DATASET}/{split}/{species.class_name}/{index}")

    def fill(rng: random.Random) -> tuple[int, ...]:
        return tuple(
            max(0, min(255, c + rng.randint(-_COLOUR_JITTER, _COLOUR_JITTER))) for c in COLOURS[species.colour]
        )

    return draw_shape(species.family, fill, rng, size)


def draw_shape(
    family: str, fill: Callable[[random.Random], tuple[int, ...]], rng: random.Random, size: int = IMAGE_SIZE
) -> Image.Image:
    """One shape of ``family`` on a light background, drawn from ``rng``: background shade, then ``fill(rng)``
    (the shape's RGB), then size and position, in that order (every drawn task's images depend on it)."""
    shade = rng.randint(225, 250)
    background = tuple(min(255, shade + rng.randint(-6, 5)) for _ in range(3))
    colour = fill(rng)
    # Large and near the centre: the more of the image the shape covers, the sooner a tiny model reads it.
    r = size * rng.uniform(0.30, 0.38)
    cx, cy = (size / 2 + rng.uniform(-_POSITION_JITTER, _POSITION_JITTER) * size for _ in range(2))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    points = shape_outline(family, cx, cy, r)
    if points is None:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.polygon(points, fill=colour)
    return image


def render_png(species: ShapeSpecies, split: str, index: int, size: int = IMAGE_SIZE) -> bytes:
    """:func:`render_shape` encoded as PNG (fixed encoder options, so the bytes are reproducible)."""
    return png_bytes(render_shape(species, split, index, size))


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG with fixed encoder options: the same image, the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


@register_adapter(_DATASET)
class SyntheticShapesAdapter(DatasetAdapter):
    """The drawn task; a sibling (:mod:`~speciarl_verl.data.adapters.synthetic_hidden`) sets ``species``,
    ``held_out`` and ``split_sizes`` and says how it draws an image (:meth:`record`)."""

    name = _DATASET
    splits = tuple(SPLIT_SIZES)
    class_list = ""  # the classes are defined in code (SPECIES), not in a shipped list
    domain_nouns = (DOMAIN_NOUN, "shapes", "geometric shape", "figure")
    reads_root = False
    species: ClassVar[tuple[ShapeSpecies, ...]] = SPECIES
    held_out: ClassVar[frozenset[tuple[str, str]]] = HELD_OUT
    split_sizes: ClassVar[dict[str, int]] = SPLIT_SIZES

    def parents(self, class_name: str) -> tuple[str, ...]:
        """``(family, "shape")``: the shape is the word after the colour.

        >>> SyntheticShapesAdapter().parents("red_circle")
        ('circle', 'shape')
        """
        return (class_name.rsplit("_", 1)[-1], DOMAIN_NOUN)

    def class_for_name(self, name: str) -> ClassInfo | None:
        key = normalize_label(self.ground_truth(name))
        for species in self.species:
            if normalize_label(species.name) == key:
                return self.class_info(species.class_id, species.class_name)
        return None

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        """Records of ``split`` in class order, then image number; ``root`` is not read."""
        self.check_split(split)
        records = []
        for species in split_species(self.species, self.held_out, split):
            info = self.class_info(species.class_id, species.class_name)
            records += [self.record(species, info, split, index) for index in range(self.split_sizes[split])]
        return records

    def record(self, species: ShapeSpecies, info: ClassInfo, split: str, index: int) -> SourceRecord:
        """The record of image ``index`` of ``species`` in ``split``."""
        return SourceRecord(
            data_source=self.name,
            split=split,
            image_id=f"{species.class_name}_{index:04d}",
            cls=info,
            source_file=f"rendered:{split}/{species.class_name}/{index:04d}.png",
            origin=f"{self.name} {split} {species.class_name} image {index}",
            image_loader=partial(render_png, species, split, index),
        )
