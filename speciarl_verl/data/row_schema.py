"""The parquet row the builder writes: the column layout verl 0.9.1's ``RLHFDataset`` reads unpatched.

=================  ==========================================================================
column             content
=================  ==========================================================================
``data_source``    dataset key (``cub200``, ``fgvc_aircraft``, ...); verl's ``reward_fn_key``
``prompt``         ``[{"role": "user", "content": "<image>" + instruction}]``
``images``         ``[{"bytes": <original encoded file>}]`` (+ ``min_pixels``/``max_pixels``
                   when the build sets them; ``qwen_vl_utils`` honours both per image)
``ability``        ``"fine-grained classification"``
``reward_model``   ``{"style": "model", "ground_truth": <natural class name>}``
``extra_info``     ``split``, ``index`` (unique in the file), ``class_id`` (0-based, official
                   order), ``class_name`` (dataset spelling), ``image_id``, ``source_file``,
                   ``parents`` (nearest first), ``synonyms``, ``prompt_name``,
                   ``prompt_version``, ``image_format``, ``width``, ``height``,
                   ``reencoded`` (empty unless the bytes were converted, e.g. ``"TIFF -> PNG"``),
                   ``parent_levels`` (``"close"``/``"far"`` per parent, same order),
                   ``domain_nouns`` (words for the class's whole domain), ``visibility``
                   (how much of the species cue a drawn image shows; empty for photographs)
=================  ==========================================================================

The judge reads ``parents``, ``parent_levels``, ``domain_nouns`` and ``synonyms``
(:meth:`~speciarl_verl.judge.verifier.VerificationRequest.for_row`). Files written before
``parent_levels`` and ``domain_nouns`` existed stay readable: a missing ``parent_levels``
makes every parent ``far`` and a missing ``domain_nouns`` is empty, so such rows only lose
offline decisions (the LLM judge takes them); rebuild the file to get them back.
"""

from __future__ import annotations

import pyarrow as pa

from speciarl_verl.data.image_bytes import CheckedImage
from speciarl_verl.data.source_record import SourceRecord
from speciarl_verl.prompts.registry import PolicyPrompt

__all__ = ["ABILITY", "REWARD_STYLE", "make_row", "row_schema"]

ABILITY = "fine-grained classification"
REWARD_STYLE = "model"


def row_schema(with_pixel_limits: bool = False) -> pa.Schema:
    """The fixed Arrow schema of every row; ``with_pixel_limits`` adds the per-image pixel bounds."""
    image_fields = [pa.field("bytes", pa.binary())]
    if with_pixel_limits:
        image_fields += [pa.field("min_pixels", pa.int64()), pa.field("max_pixels", pa.int64())]
    return pa.schema(
        [
            pa.field("data_source", pa.string()),
            pa.field("prompt", pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))),
            pa.field("images", pa.list_(pa.struct(image_fields))),
            pa.field("ability", pa.string()),
            pa.field(
                "reward_model", pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])
            ),
            pa.field(
                "extra_info",
                pa.struct(
                    [
                        pa.field("split", pa.string()),
                        pa.field("index", pa.int64()),
                        pa.field("class_id", pa.int64()),
                        pa.field("class_name", pa.string()),
                        pa.field("image_id", pa.string()),
                        pa.field("source_file", pa.string()),
                        pa.field("parents", pa.list_(pa.string())),
                        pa.field("synonyms", pa.list_(pa.string())),
                        pa.field("prompt_name", pa.string()),
                        pa.field("prompt_version", pa.string()),
                        pa.field("image_format", pa.string()),
                        pa.field("width", pa.int64()),
                        pa.field("height", pa.int64()),
                        pa.field("reencoded", pa.string()),
                        pa.field("parent_levels", pa.list_(pa.string())),
                        pa.field("domain_nouns", pa.list_(pa.string())),
                        pa.field("visibility", pa.string()),
                    ]
                ),
            ),
        ]
    )


def make_row(
    record: SourceRecord,
    image: CheckedImage,
    index: int,
    prompt: PolicyPrompt,
    pixel_limits: tuple[int, int] | None = None,
) -> dict:
    """One parquet row (a plain dict in :func:`row_schema` layout) for ``record`` at position ``index``."""
    image_entry: dict = {"bytes": image.data}
    if pixel_limits is not None:
        image_entry["min_pixels"], image_entry["max_pixels"] = pixel_limits
    return {
        "data_source": record.data_source,
        "prompt": [{"role": "user", "content": prompt.user_content}],
        "images": [image_entry],
        "ability": ABILITY,
        "reward_model": {"style": REWARD_STYLE, "ground_truth": record.cls.ground_truth},
        "extra_info": {
            "split": record.split,
            "index": index,
            "class_id": record.cls.class_id,
            "class_name": record.cls.class_name,
            "image_id": record.image_id,
            "source_file": record.source_file,
            "parents": list(record.cls.parents),
            "synonyms": list(record.cls.synonyms),
            "prompt_name": prompt.name,
            "prompt_version": prompt.version,
            "image_format": image.format,
            "width": image.width,
            "height": image.height,
            "reencoded": image.reencoded,
            "parent_levels": list(record.cls.parent_levels),
            "domain_nouns": list(record.cls.domain_nouns),
            "visibility": record.visibility,
        },
    }
