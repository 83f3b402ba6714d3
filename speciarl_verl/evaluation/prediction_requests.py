"""From dataset rows to generation requests, and from generated texts to prediction rows (pure).

Dataset rows follow verl's parquet schema: ``data_source``, ``prompt`` (chat
messages whose string content marks the image with ``<image>``, or a list of
``{"type": "image"}`` / ``{"type": "text"}`` blocks), ``images``
(``[{"bytes": ...}]``, each optionally with ``min_pixels`` / ``max_pixels``),
``reward_model.ground_truth`` and ``extra_info`` (``image_id`` or ``index``, ``parents``,
``parent_levels``, ``domain_nouns``, ``synonyms``, carried unchanged into the prediction rows
for the judge).

Requests become OpenAI-style chat messages with the image inlined as a data
URL, which vLLM's ``LLM.chat`` renders with the model's own chat template. Each image is
first resized as verl's agent loop resizes it in training (:func:`model_image`):
``qwen_vl_utils.fetch_image`` with that image's own ``min_pixels`` / ``max_pixels`` and the
model's patch size, so a model trained on bounded images is evaluated at the same resolution.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode, parse_answer

__all__ = [
    "DEFAULT_IMAGE_PATCH_SIZE",
    "IMAGE_MARKER",
    "DecodingSettings",
    "PixelBounds",
    "PredictionRequest",
    "chat_messages",
    "image_data_url",
    "limit_mm_per_prompt",
    "model_image",
    "prediction_rows",
    "request_from_row",
]

IMAGE_MARKER = "<image>"
#: The patch size verl's agent loop falls back to when the processor has none (Qwen2/2.5-VL use it).
DEFAULT_IMAGE_PATCH_SIZE = 14

#: One image's ``(min_pixels, max_pixels)`` from its dataset entry; ``None``: qwen_vl_utils' default.
PixelBounds = tuple[int | None, int | None]


@dataclass(frozen=True)
class DecodingSettings:
    """How answers are sampled: greedy (one answer) or best-of-N.

    >>> DecodingSettings.best_of_n().sampling_kwargs()
    {'n': 64, 'temperature': 0.6, 'top_p': 0.95, 'max_tokens': 2048}
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 2048

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n={self.n} answers with temperature 0 would all be the same greedy answer")

    @classmethod
    def greedy(cls, max_new_tokens: int = 2048) -> DecodingSettings:
        return cls(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)

    @classmethod
    def best_of_n(
        cls, n: int = 64, temperature: float = 0.6, top_p: float = 0.95, max_new_tokens: int = 2048
    ) -> DecodingSettings:
        return cls(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)

    def sampling_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.SamplingParams``."""
        return {"n": self.n, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_new_tokens}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PredictionRequest:
    """One image to answer: the conversation as (role, segments) with images between segments.

    ``pixel_bounds`` holds each image's ``(min_pixels, max_pixels)``, in image order (empty: no
    bounds for any image).
    """

    sample_id: str
    data_source: str
    ground_truth: str
    turns: tuple[tuple[str, tuple[str, ...]], ...]
    images: tuple[bytes, ...]
    parents: tuple[str, ...] = field(default=())
    synonyms: tuple[str, ...] = field(default=())
    parent_levels: tuple[str, ...] = field(default=())
    domain_nouns: tuple[str, ...] = field(default=())
    pixel_bounds: tuple[PixelBounds, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.pixel_bounds and len(self.pixel_bounds) != len(self.images):
            raise ValueError(f"{len(self.pixel_bounds)} pixel bounds for {len(self.images)} image(s)")

    def bounds(self, index: int) -> PixelBounds:
        """``(min_pixels, max_pixels)`` of image ``index``."""
        return self.pixel_bounds[index] if self.pixel_bounds else (None, None)


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: extra_info.{key} must be a list of strings, got {value!r}")
    return tuple(value)


def _image_bytes(item: Any, where: str) -> bytes:
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, Mapping):
        if item.get("bytes") is not None:
            return bytes(item["bytes"])
        if item.get("path"):
            return Path(item["path"]).read_bytes()
    raise ValueError(
        f"{where}: an image must be bytes or {{'bytes': ...}} / {{'path': ...}}, got {type(item).__name__}"
    )


def _pixel_bounds(item: Any, where: str) -> PixelBounds:
    """The ``min_pixels`` / ``max_pixels`` of one image entry, as verl hands them to qwen_vl_utils."""
    if not isinstance(item, Mapping):
        return (None, None)
    bounds = []
    for key in ("min_pixels", "max_pixels"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where}: image {key} must be a positive integer or null, got {value!r}")
        bounds.append(value)
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise ValueError(f"{where}: image min_pixels ({low}) is larger than its max_pixels ({high})")
    return (low, high)


def _segments(content: Any, where: str) -> tuple[str, ...]:
    """Text around the images of one message: n images give n + 1 segments."""
    if isinstance(content, str):
        return tuple(content.split(IMAGE_MARKER))
    if isinstance(content, Sequence):
        segments = [""]
        for block in content:
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind == "image":
                segments.append("")
            elif kind == "text":
                segments[-1] += block.get("text") or ""
            else:
                raise ValueError(f"{where}: unsupported prompt content block {block!r}")
        return tuple(segments)
    raise ValueError(f"{where}: prompt content must be a string or a list of blocks, got {type(content).__name__}")


def _sample_id(row: Mapping[str, Any], extra: Mapping[str, Any], data_source: str, where: str) -> str:
    if row.get("sample_id"):
        return str(row["sample_id"])
    for key in ("sample_id", "image_id", "index"):
        if extra.get(key) is not None and str(extra[key]) != "":
            return str(extra[key]) if key == "sample_id" else f"{data_source}/{extra[key]}"
    raise ValueError(f"{where}: no sample id (expected sample_id, extra_info.image_id or extra_info.index)")


def request_from_row(row: Mapping[str, Any], where: str, instruction: str | None = None) -> PredictionRequest:
    """Build the request for one dataset row; ``where`` (``file:row N``) prefixes every error.

    ``instruction`` replaces the row's prompt by one user turn: the image, then that text.

    >>> row = {"data_source": "cub200", "prompt": [{"role": "user", "content": "<image>Classify the image."}],
    ...        "images": [{"bytes": b"png"}], "reward_model": {"ground_truth": "Sayornis"},
    ...        "extra_info": {"image_id": "0042", "parents": ["tyrant flycatcher"]}}
    >>> r = request_from_row(row, "test.parquet:row 0")
    >>> r.sample_id, r.turns, r.parents
    ('cub200/0042', (('user', ('', 'Classify the image.')),), ('tyrant flycatcher',))
    """
    for key in ("data_source", "prompt", "images", "reward_model"):
        if key not in row or row[key] is None:
            raise ValueError(f"{where}: missing column {key!r}")
    data_source = str(row["data_source"])
    reward_model = row["reward_model"]
    if not isinstance(reward_model, Mapping) or not reward_model.get("ground_truth"):
        raise ValueError(f"{where}: reward_model.ground_truth is missing or empty")
    extra = row.get("extra_info") or {}
    images = tuple(_image_bytes(item, where) for item in row["images"])
    bounds = tuple(_pixel_bounds(item, where) for item in row["images"])
    if instruction is not None:
        turns: tuple[tuple[str, tuple[str, ...]], ...] = (("user", ("", instruction)),)
        images, bounds = images[:1], bounds[:1]
    else:
        messages = row["prompt"]
        if isinstance(messages, str) or not messages:
            raise ValueError(f"{where}: prompt must be a non-empty list of chat messages")
        turns = tuple((str(m["role"]), _segments(m["content"], where)) for m in messages)
    markers = sum(len(segments) - 1 for _, segments in turns)
    if markers != len(images):
        raise ValueError(f"{where}: the prompt marks {markers} image(s) but the row has {len(images)}")
    return PredictionRequest(
        sample_id=_sample_id(row, extra, data_source, where),
        data_source=data_source,
        ground_truth=str(reward_model["ground_truth"]),
        turns=turns,
        images=images,
        parents=_names(extra.get("parents"), "parents", where),
        synonyms=_names(extra.get("synonyms"), "synonyms", where),
        parent_levels=_names(extra.get("parent_levels"), "parent_levels", where),
        domain_nouns=_names(extra.get("domain_nouns"), "domain_nouns", where),
        pixel_bounds=bounds if any(b != (None, None) for b in bounds) else (),
    )


def limit_mm_per_prompt(image_counts: Iterable[int]) -> dict[str, int]:
    """vLLM's ``limit_mm_per_prompt`` for requests with these image counts: the largest, at least 1.

    >>> limit_mm_per_prompt([1, 3, 2])
    {'image': 3}
    """
    return {"image": max(1, max(image_counts, default=1))}


def image_data_url(data: bytes) -> str:
    """``data:<mime>;base64,...`` for encoded image bytes (format read with Pillow).

    Raises ``ValueError`` when Pillow does not recognise the bytes as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            mime = Image.MIME.get(image.format or "", "image/png")
    except UnidentifiedImageError as error:
        raise ValueError(f"not an image Pillow can read ({len(data)} bytes)") from error
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def model_image(data: bytes, bounds: PixelBounds = (None, None), patch_size: int = DEFAULT_IMAGE_PATCH_SIZE):
    """The image as verl's agent loop hands it to the model: a Pillow RGB image resized by
    ``qwen_vl_utils.fetch_image`` (sides multiples of ``2 * patch_size``, area within the
    image's ``(min_pixels, max_pixels)``; an unset bound takes qwen_vl_utils' default).

    Raises ``ValueError`` when Pillow cannot read the bytes or the bounds cannot be met.
    """
    from PIL import Image, UnidentifiedImageError
    from qwen_vl_utils import fetch_image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not an image Pillow can read ({len(data)} bytes)") from error
    # the element verl builds from a row's image entry: the decoded image plus the entry's bounds
    element: dict[str, Any] = {"type": "image", "image": image}
    for key, value in zip(("min_pixels", "max_pixels"), bounds, strict=True):
        if value is not None:
            element[key] = value
    try:
        return fetch_image(element, image_patch_size=patch_size)
    except AssertionError as error:  # qwen_vl_utils asserts max_pixels >= min_pixels (defaults included)
        raise ValueError(f"pixel bounds {bounds} cannot be met with patch size {patch_size}") from error


def _png_data_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def chat_messages(request: PredictionRequest, patch_size: int = DEFAULT_IMAGE_PATCH_SIZE) -> list[dict[str, Any]]:
    """OpenAI-style messages for ``request``: content blocks in prompt order, images as PNG data URLs.

    Each image is :func:`model_image` of its bytes, its own pixel bounds and ``patch_size`` (the
    model processor's ``image_processor.patch_size``, as verl's agent loop reads it), so vLLM sees
    the image at the size the model saw in training. PNG keeps the resized pixels exactly.
    """
    images = iter(enumerate(request.images))
    messages = []
    for role, segments in request.turns:
        content: list[dict[str, Any]] = []
        for i, text in enumerate(segments):
            if i > 0:
                number, data = next(images)
                try:
                    image = model_image(data, request.bounds(number), patch_size)
                except ValueError as error:
                    raise ValueError(f"{request.sample_id}: image {number}: {error}") from error
                content.append({"type": "image_url", "image_url": {"url": _png_data_url(image)}})
            if text.strip():
                content.append({"type": "text", "text": text})
        messages.append({"role": role, "content": content})
    return messages


def prediction_rows(
    request: PredictionRequest,
    texts: Sequence[str],
    max_answer_words: int | None = None,
    parse_mode: ParseMode = "first",
) -> list[dict[str, Any]]:
    """The predictions-JSONL rows for the generated ``texts`` of one request, in order.

    Each row's ``answer`` is parsed in ``parse_mode``; the row records the mode and
    ``max_answer_words``, so ``speciarl eval judge`` can parse the response again in another mode.

    >>> req = PredictionRequest("cub200/1", "cub200", "Sayornis", (("user", ("", "Classify.")),), (b"",))
    >>> [r["answer"] for r in prediction_rows(req, ["<answer>Phoebe</answer>", "no tags"])]
    ['Phoebe', None]
    >>> [r["answer"] for r in prediction_rows(req, ["<answer>a</answer><answer>b</answer>"], parse_mode="strict")]
    [None]
    """
    if parse_mode not in PARSE_MODES:
        raise ValueError(f"unknown parse mode {parse_mode!r}; choose one of {', '.join(PARSE_MODES)}")
    return [
        {
            "sample_id": request.sample_id,
            "data_source": request.data_source,
            "ground_truth": request.ground_truth,
            "prediction_index": index,
            "response": text,
            "answer": parse_answer(text, max_words=max_answer_words, mode=parse_mode),
            "parse_mode": parse_mode,
            "max_answer_words": max_answer_words,
            "parents": list(request.parents),
            "synonyms": list(request.synonyms),
            "parent_levels": list(request.parent_levels),
            "domain_nouns": list(request.domain_nouns),
        }
        for index, text in enumerate(texts)
    ]
