"""Parquet build speed and size: original JPEG bytes (ours) vs re-encoding every image to PNG (the reference way).

Writes a synthetic CUB-200-2011 layout of photo-like JPEGs (~500 x 375, smooth colour fields
plus sensor-like noise, so the files weigh about what real photos do), then builds the same
rows twice in one run, with the same parquet writer and the same number of threads:

* ours: ``speciarl_verl.data.builder.build_parquet`` (bytes kept, each image fully decoded once
  to check it);
* png: every image decoded, converted to RGB and re-encoded as PNG before it goes in the row.

Prints images/s and parquet bytes for both; the last line is exactly
``RESULT speedup=<ours vs png, images/s> size_ratio=<png bytes / our bytes> images=<n>``.

    python benchmarks/data_build.py            # 500 images
    python benchmarks/data_build.py --quick    # 120 images, smaller pictures
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def photo_like_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A JPEG with photo-like statistics: blurred colour blobs, a gradient, and fine noise."""
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    base = Image.fromarray(coarse).resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(8))
    pixels = np.asarray(base, dtype=np.float32)
    pixels += np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    pixels += rng.normal(0, 6, size=pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def write_cub_layout(root: Path, images: int, width: int, height: int, classes: int = 20) -> int:
    """A CUB_200_2011 folder with ``images`` training JPEGs over ``classes`` classes; returns total JPEG bytes."""
    base = root / "CUB_200_2011"
    rng = np.random.default_rng(0)
    listing, labels, flags, names, total = [], [], [], [], 0
    for class_id in range(1, classes + 1):
        names.append(f"{class_id} {class_id:03d}.Synthetic_Bird_{class_id}")
    for image_id in range(1, images + 1):
        class_id = (image_id - 1) % classes + 1
        relpath = f"{class_id:03d}.Synthetic_Bird_{class_id}/Synthetic_Bird_{image_id:05d}.jpg"
        data = photo_like_jpeg(rng, width, height)
        total += len(data)
        (base / "images" / relpath).parent.mkdir(parents=True, exist_ok=True)
        (base / "images" / relpath).write_bytes(data)
        listing.append(f"{image_id} {relpath}")
        labels.append(f"{image_id} {class_id}")
        flags.append(f"{image_id} 1")
    for name, rows in (
        ("images", listing),
        ("image_class_labels", labels),
        ("train_test_split", flags),
        ("classes", names),
    ):
        (base / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return total


def png_build(root: Path, out: Path, workers: int) -> None:
    """The reference approach: every image decoded and stored as RGB PNG, same rows and writer otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from speciarl_verl.data.builder import SourceSpec, list_records
    from speciarl_verl.data.image_bytes import CheckedImage
    from speciarl_verl.data.row_schema import make_row, row_schema
    from speciarl_verl.data.source_record import ProblemLog
    from speciarl_verl.prompts import get_policy_prompt

    def to_png(record) -> CheckedImage:
        with Image.open(io.BytesIO(record.read_image())) as image:
            rgb = image.convert("RGB")
        buffer = io.BytesIO()
        rgb.save(buffer, "PNG")
        return CheckedImage(buffer.getvalue(), "PNG", rgb.width, rgb.height, reencoded="JPEG -> PNG")

    records = list_records(SourceSpec("cub200", root, "train"), ProblemLog())
    prompt, schema = get_policy_prompt("general"), row_schema()
    writer = pq.ParquetWriter(out, schema, compression="zstd", compression_level=3, write_statistics=False)
    with writer, ThreadPoolExecutor(workers) as pool:
        rows = [
            make_row(r, image, i, prompt)
            for i, (r, image) in enumerate(zip(records, pool.map(to_png, records), strict=True))
        ]
        for start in range(0, len(rows), 256):
            writer.write_table(pa.Table.from_pylist(rows[start : start + 256], schema=schema))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500, help="number of synthetic JPEGs (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="threads for both builds (default 2)")
    parser.add_argument("--quick", action="store_true", help="120 images at 250 x 188")
    args = parser.parse_args(argv)
    images, width, height = (120, 250, 188) if args.quick else (args.images, 500, 375)

    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

    with tempfile.TemporaryDirectory(prefix="speciarl-bench-") as tmp:
        root, out = Path(tmp) / "raw", Path(tmp) / "out"
        jpeg_bytes = write_cub_layout(root, images, width, height)
        print(f"{images} synthetic JPEGs of {width}x{height}, {jpeg_bytes / images / 1024:.1f} KiB on average")
        options = BuildOptions(seed=0, progress=False, workers=args.workers)
        build_parquet(SourceSpec("cub200", root, "train", subset=min(8, images)), out / "warm.parquet", options)

        start = time.perf_counter()
        report = build_parquet(SourceSpec("cub200", root, "train"), out / "ours.parquet", options)
        ours_seconds = time.perf_counter() - start
        start = time.perf_counter()
        png_build(root, out / "png.parquet", args.workers)
        png_seconds = time.perf_counter() - start

        ours_size = (out / "ours.parquet").stat().st_size
        png_size = (out / "png.parquet").stat().st_size
        assert report.rows == images
    print(f"{'build':<8}{'seconds':>10}{'images/s':>12}{'parquet MiB':>14}")
    for name, seconds, size in (("ours", ours_seconds, ours_size), ("png", png_seconds, png_size)):
        print(f"{name:<8}{seconds:>10.2f}{images / seconds:>12.1f}{size / 2**20:>14.2f}")
    print(f"RESULT speedup={png_seconds / ours_seconds:.2f} size_ratio={png_size / ours_size:.2f} images={images}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
