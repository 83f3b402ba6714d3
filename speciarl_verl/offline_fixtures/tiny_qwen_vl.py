"""A tiny, randomly initialised Qwen2.5-VL checkpoint, built offline in a few seconds.

It has the real architecture (vision tower with window attention, multimodal rotary
positions) at toy sizes, the byte-level tokenizer of
:mod:`speciarl_verl.offline_fixtures.tiny_tokenizer` and a ``Qwen2_5_VLProcessor`` whose image
processor resizes every picture to between 4 and 16 merged patches, so one image costs at
most 16 ``<|image_pad|>`` tokens. The saved folder loads like a hub checkpoint with
``transformers.AutoProcessor`` / ``AutoModelForImageTextToText`` and with verl's
``hf_tokenizer`` / ``hf_processor``. Its outputs are noise: it exists to exercise code
paths, never to classify anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["TINY_MAX_PIXELS", "TINY_MIN_PIXELS", "build_tiny_qwen25_vl"]

# One merged patch covers 28 x 28 pixels (patch 14, spatial merge 2).
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 16


def build_tiny_qwen25_vl(
    save_dir: str | Path,
    corpus: Iterable[str] = (),
    *,
    text_sizes: Mapping[str, Any] | None = None,
    vision_sizes: Mapping[str, Any] | None = None,
) -> Path:
    """Save a tiny Qwen2.5-VL (config, weights, tokenizer, processor, chat template) to ``save_dir``.

    ``corpus`` adds lines to the tokenizer's training text (e.g. the prompts a test uses),
    so they encode to fewer tokens. ``text_sizes`` / ``vision_sizes`` override entries of the
    text / vision config (e.g. ``{"hidden_size": 128}``); the defaults give the smallest model.
    Returns ``save_dir`` as a :class:`~pathlib.Path`.

    Example::

        path = build_tiny_qwen25_vl(tmp_path / "tiny-vl")
        processor = transformers.AutoProcessor.from_pretrained(path)
        model = transformers.AutoModelForImageTextToText.from_pretrained(path)
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from speciarl_verl.offline_fixtures.tiny_tokenizer import CHAT_TEMPLATE, build_tiny_tokenizer

    path = Path(save_dir)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(corpus=corpus)
    token_id = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1_000_000.0},
        "bos_token_id": token_id("<|endoftext|>"),
        "eos_token_id": token_id("<|im_end|>"),
        "pad_token_id": token_id("<|endoftext|>"),
        **(text_sizes or {}),
    }
    vision_config = {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": text_config["hidden_size"],  # the merger feeds the text model
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [0],
        **(vision_sizes or {}),
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)  # the same folder every time: deterministic weights
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(str(path))

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(str(path))
    return path
