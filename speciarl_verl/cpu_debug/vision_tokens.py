"""Qwen2.5-VL's ``mm_token_type_ids``: the one rule the CPU rollout and the tiny policy's supervision share.

transformers' Qwen2.5-VL builds its 3-D (mrope) positions only when it is given
``mm_token_type_ids``; without them it silently falls back to 1-D positions. verl's actor always
uses the 3-D positions, so a policy supervised or sampled without the ids reads its image through
positions it never meets inside verl.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["mm_token_type_ids"]

_IMAGE, _VIDEO = 1, 2


def mm_token_type_ids(input_ids: torch.Tensor, image_token_id: int | None, video_token_id: int | None = None) -> Any:
    """``input_ids``-shaped ids: 1 on image placeholders, 2 on video placeholders, 0 elsewhere.

    >>> mm_token_type_ids(torch.tensor([[5, 9, 9, 6, 7]]), image_token_id=9, video_token_id=7).tolist()
    [[0, 1, 1, 0, 2]]
    """
    types = torch.zeros_like(input_ids)
    if image_token_id is not None:
        types[input_ids == image_token_id] = _IMAGE
    if video_token_id is not None:
        types[input_ids == video_token_id] = _VIDEO
    return types
