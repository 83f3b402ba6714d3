"""From dataset rows to generation requests, and from generated texts to prediction rows (pure).

Dataset rows follow verl's parquet schema: ``data_source``, ``prompt`` (chat
messages whose string content marks the image with ``<image>``, or a list of
``{"type": "image"}`` / ``{"type": "text"}`` blocks), ``images``
(``[{"bytes": ...}]``), ``reward_model.ground_truth`` and ``extra_info``
(``image_id`` or ``index``, ``parents``, ``parent_levels``, ``domain_nouns``, ``synonyms``,
carried unchanged into the prediction rows for the judge).

Requests become OpenAI-style chat messages with the image inlined as a data
URL, which vLLM's ``LLM.chat`` renders with the model's own chat template.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode, parse_answer

__all__ = [
    "IMAGE_MARKER",
    "DecodingSettings",
    "PredictionRequest",
    "chat_messages",
    "image_data_url",
    "prediction_rows",
    "request_from_row",
]

IMAGE_MARKER = "<image>"


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
    """One image to answer: the conversation as (role, segments) with images between segments."""

    sample_id: str
    data_source: str
    ground_truth: str
    turns: tuple[tuple[str, tuple[str, ...]], ...]
    images: tuple[bytes, ...]
    parents: tuple[str, ...] = field(default=())
    synonyms: tuple[str, ...] = field(default=())
    parent_levels: tuple[str, ...] = field(default=())
    domain_nouns: tuple[str, ...] = field(default=())


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
    if instruction is not None:
        turns: tuple[tuple[str, tuple[str, ...]], ...] = (("user", ("", instruction)),)
        images = images[:1]
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
    )


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


def chat_messages(request: PredictionRequest) -> list[dict[str, Any]]:
    """OpenAI-style messages for ``request``: content blocks in prompt order, images as data URLs."""
    images = iter(request.images)
    messages = []
    for role, segments in request.turns:
        content: list[dict[str, Any]] = []
        for i, text in enumerate(segments):
            if i > 0:
                content.append({"type": "image_url", "image_url": {"url": image_data_url(next(images))}})
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
