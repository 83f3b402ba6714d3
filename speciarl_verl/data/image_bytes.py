"""Checking an image's encoded bytes before they go into a parquet row.

The original file bytes are kept whenever Pillow decodes them completely and the format is
one that every consumer (Pillow in verl's dataset and in ``qwen_vl_utils``, vLLM, browsers)
reads: JPEG (including MPO), PNG, WebP, GIF, BMP. Pets' PNG-in-``.jpg`` files and RGBA or
CMYK images are therefore kept as they are; verl converts them to RGB when it opens them.
Bytes Pillow decodes in some other container (TIFF, PPM, ICO, ...) are re-encoded once to
PNG, losslessly, and the row says so. Bytes Pillow cannot decode at all (truncated,
corrupt, not an image) are an error that names the record.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from speciarl_verl.data.source_record import DataSourceError

__all__ = ["KEPT_FORMATS", "CheckedImage", "check_image"]

#: Pillow format names whose bytes are stored unchanged.
KEPT_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})


@dataclass(frozen=True)
class CheckedImage:
    """Bytes ready for the parquet row; ``reencoded`` is empty or says what was converted (``"TIFF -> PNG"``)."""

    data: bytes
    format: str
    width: int
    height: int
    reencoded: str = ""


def check_image(data: bytes, where: str) -> CheckedImage:
    """Decode ``data`` fully with Pillow; keep it, re-encode it to PNG, or raise naming ``where``.

    >>> buffer = io.BytesIO(); Image.new("RGB", (4, 3)).save(buffer, "JPEG")
    >>> checked = check_image(buffer.getvalue(), "example.jpg")
    >>> checked.format, checked.width, checked.height, checked.reencoded, checked.data == buffer.getvalue()
    ('JPEG', 4, 3, '', True)
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            fmt = image.format or "unknown"
            width, height = image.size
            if fmt in KEPT_FORMATS:
                return CheckedImage(data, fmt, width, height)
            converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataSourceError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    out = io.BytesIO()
    converted.save(out, "PNG")
    return CheckedImage(out.getvalue(), "PNG", width, height, reencoded=f"{fmt} -> PNG")
