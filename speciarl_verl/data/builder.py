"""Build a verl-ready parquet from one or more dataset splits.

Python API::

    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

    # the SpeciaRL training set: 3,000 CUB-200 train images, seed 42
    build_parquet(SourceSpec("cub200", "/data/CUB_200_2011", "train", subset=3000),
                  "cub200_train_3000_seed42.parquet", BuildOptions(seed=42))

    # a mixed set: 500 train images from each of two datasets
    build_parquet([SourceSpec("cub200", "/data/CUB_200_2011", "train", subset=500),
                   SourceSpec("food101", "/data/food-101", "train", subset=500)],
                  "mixed.parquet", BuildOptions(seed=42))

Rules:

* **Sampling** (``BuildOptions.sampler``). ``per_source`` (the default): a subset of ``n`` is
  drawn per source with ``random.Random(f"{seed}/{dataset}/{split}")`` (a permutation of the
  split, first ``n`` taken), so a source's draw does not depend on the other sources of a
  mixed build, and a single build equals the same source inside a mixed one. ``reference``:
  the method's own draw, one ``random.Random(seed)`` shared by the sources in the order given,
  each subset ``rng.sample(range(listed), n)`` over the split's own image order, so a
  source's draw depends on the sources before it. Both draw over the rows the split *lists*
  (``listed``), counting the rows dropped as bad (:attr:`SourceRecord.slot`), so dropping a
  bad list line changes no other image's place and no other image of the draw, nor the
  generator's state for the sources after it. Rows appear in draw order; without a
  subset, in the dataset's own order (and the reference generator is not advanced).
* **Determinism.** Same inputs, seed and options -> byte-identical parquet and manifest
  (fixed schema, fixed writer options, fixed row-group size, nothing time-dependent).
* **Bad input** (a missing image, an undecodable image, an unknown class, a malformed line, a
  Hugging Face class name that is no class of the dataset) raises :class:`DataSourceError`
  naming the file and line/row. With ``skip_bad=True`` the row is skipped and listed in the
  report and the manifest; a ``per_source`` subset then takes the next images of its
  permutation so it still reaches ``n`` if the split has enough good images; a ``reference``
  draw is exactly the method's ``n`` images minus the bad ones among them, so it comes out
  short (the draw is the same as without the bad rows: the method's images, only fewer).
  A line whose split cannot be told (a CUB image with no or a malformed split flag, a
  malformed Cars annotation) has no place in any split's list (a CoOp split file numbers its
  rows in the file's order). A reader that does not number its rows (``slot`` left ``None``)
  is drawn over the records it returns, so there a dropped row does move the others. A split
  with no images is always an error.
* **Atomic output.** The parquet and the manifest are written to temporary files in the
  output folder and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.data.adapters.registry import DATASET_ADAPTERS
from speciarl_verl.data.coop_split import read_coop_split
from speciarl_verl.data.hf_source import looks_like_hf_copy, read_hf_source
from speciarl_verl.data.image_bytes import CheckedImage, check_image
from speciarl_verl.data.row_schema import make_row, row_schema
from speciarl_verl.data.source_record import DataSourceError, ProblemLog, SourceRecord
from speciarl_verl.prompts import get_policy_prompt
from speciarl_verl.prompts.registry import PolicyPrompt

__all__ = ["BuildOptions", "BuildReport", "SourceSpec", "SourceSummary", "build_parquet", "list_records"]

SourceKind = Literal["auto", "raw", "hf"]
Sampler = Literal["per_source", "reference"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)
SAMPLERS: tuple[Sampler, ...] = get_args(Sampler)
MANIFEST_FORMAT = "speciarl-parquet-manifest/1"


@dataclass(frozen=True)
class SourceSpec:
    """One split of one dataset to put in the parquet.

    ``root``: the extracted archive (or the folder holding it), a Hugging Face
    ``save_to_disk`` folder or parquet file/folder, or a hub id. ``source``: ``"raw"``,
    ``"hf"`` or ``"auto"`` (an HF copy if ``root`` looks like one). ``split_file``: a CoOp
    split JSON (Flowers, Food, Pets; raw layout only). ``subset``: draw this many images.
    """

    dataset: str
    root: str | Path
    split: str
    subset: int | None = None
    split_file: str | Path | None = None
    source: SourceKind = "auto"

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            raise ValueError(f"source must be one of {SOURCE_KINDS}, got {self.source!r}")
        if self.subset is not None and self.subset <= 0:
            raise ValueError(f"subset must be positive, got {self.subset}")
        if self.split_file is not None and self.source == "hf":
            raise ValueError("a CoOp split file goes with the raw layout, not with a Hugging Face copy")

    def resolved_source(self) -> str:
        """``"raw"``, ``"coop"`` or ``"hf"``: how the records will be read."""
        if self.split_file is not None:
            return "coop"
        if self.source != "auto":
            return self.source
        if self.dataset in DATASET_ADAPTERS and not DATASET_ADAPTERS[self.dataset].reads_root:
            return "raw"  # the images are made, not read: nothing under root is a copy of them
        root = Path(self.root)
        if looks_like_hf_copy(root):
            return "hf"
        if not root.exists() and "/" in str(self.root) and not str(self.root).startswith((".", "/")):
            return "hf"  # a hub id such as tanganke/stanford_cars
        return "raw"


@dataclass(frozen=True)
class BuildOptions:
    """How to build: seed, sampler, prompt name, bad-input policy, per-image pixel bounds, progress bar, workers."""

    seed: int = 42
    sampler: Sampler = "per_source"
    prompt: str = "general"
    skip_bad: bool = False
    min_pixels: int | None = None
    max_pixels: int | None = None
    progress: bool = True
    workers: int = 2
    row_group_size: int = 256
    hf_cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is larger than max_pixels ({self.max_pixels})")
        if self.workers < 1 or self.row_group_size < 1:
            raise ValueError("workers and row_group_size must be at least 1")

    @property
    def pixel_limits(self) -> tuple[int | None, int | None] | None:
        if self.min_pixels is None and self.max_pixels is None:
            return None
        return (self.min_pixels, self.max_pixels)


@dataclass(frozen=True)
class SourceSummary:
    """What one source contributed: rows written, images available, per-class counts, skipped problems."""

    spec: SourceSpec
    source: str
    available: int
    rows: int
    classes: dict[str, int]
    reencoded: int
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "dataset": self.spec.dataset,
            "split": self.spec.split,
            "source": self.source,
            "root": str(self.spec.root),
            "split_file": None if self.spec.split_file is None else str(self.spec.split_file),
            "subset": self.spec.subset,
            "available": self.available,
            "rows": self.rows,
            "num_classes": len(self.classes),
            "reencoded": self.reencoded,
            "skipped": list(self.skipped),
            "classes": self.classes,
        }


@dataclass(frozen=True)
class BuildReport:
    """Where the build went and what it holds."""

    parquet: Path
    manifest: Path
    rows: int
    sha256: str
    sources: tuple[SourceSummary, ...] = field(default_factory=tuple)

    @property
    def skipped(self) -> list[str]:
        return [problem for summary in self.sources for problem in summary.skipped]


def list_records(spec: SourceSpec, problems: ProblemLog, hf_cache_dir: str | None = None) -> list[SourceRecord]:
    """The records of ``spec`` in the dataset's own order (images are not opened)."""
    adapter = get_adapter(spec.dataset)
    kind = spec.resolved_source()
    if kind == "hf":
        try:
            return read_hf_source(adapter, spec.root, spec.split, problems, cache_dir=hf_cache_dir)
        except DataSourceError as error:
            if spec.source != "auto" or not Path(spec.root).exists():
                raise
            raise DataSourceError(
                f"{error} (--source auto took {spec.root} for a Hugging Face copy from the parquet files there; "
                "if it holds the dataset's own layout, pass --source raw)"
            ) from error
    if kind == "coop":
        return read_coop_split(adapter, Path(spec.root), Path(spec.split_file), spec.split, problems)
    return adapter.read_raw(Path(spec.root), spec.split, problems)


def _places(records: Sequence[SourceRecord], problems: ProblemLog) -> tuple[int, dict[int, int]]:
    """How many rows the split lists (bad ones included), and each record's index by its place.

    Places are the records' ``slot``s and the dropped rows' ``problems.dropped_slots``; a
    reader that numbers no record gets its records' own order (see "Bad input" above).
    """
    if not records or any(record.slot is None for record in records):
        return len(records), {index: index for index in range(len(records))}
    by_slot = {record.slot: index for index, record in enumerate(records)}
    if len(by_slot) != len(records):
        raise ValueError(f"{records[0].data_source}: two records share a slot; each listed row needs its own")
    listed = max((*by_slot, *problems.dropped_slots)) + 1
    return listed, by_slot


def _draw_order(spec: SourceSpec, records: int, listed: int, options: BuildOptions, shared: random.Random) -> list[int]:
    """Places (0..listed-1) of the split's rows in the order they are drawn (see "Sampling" above)."""
    if spec.subset is None:
        return list(range(listed))
    available = listed if options.sampler == "reference" else records
    if spec.subset > available:
        raise DataSourceError(
            f"{spec.dataset} split {spec.split!r}: asked for a subset of {spec.subset} but only {available} "
            f"images are listed under {spec.root}"
        )
    if options.sampler == "reference":
        return shared.sample(range(listed), spec.subset)
    rng = random.Random(f"{options.seed}/{spec.dataset}/{spec.split}")
    return rng.sample(range(listed), listed)


def _check(record: SourceRecord) -> CheckedImage | DataSourceError:
    try:
        return check_image(record.read_image(), f"{record.origin} ({record.source_file})")
    except DataSourceError as exc:
        return exc


def _checked_in_order(
    records: Sequence[SourceRecord],
    order: Sequence[int],
    by_place: dict[int, int],
    pool: ThreadPoolExecutor,
    chunk: int,
) -> Iterator[tuple[SourceRecord, CheckedImage | DataSourceError]]:
    # Reading and decoding run on the pool a chunk at a time; results come back in draw order.
    # A drawn place without a record is a row dropped (and reported) when the split was listed.
    drawn = [records[by_place[place]] for place in order if place in by_place]
    for start in range(0, len(drawn), chunk):
        batch = drawn[start : start + chunk]
        yield from zip(batch, pool.map(_check, batch), strict=True)


def _progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(report_rows: int, sha: str, out: Path, options: BuildOptions, prompt: PolicyPrompt, summaries) -> dict:
    from speciarl_verl import __version__

    limits = options.pixel_limits
    return {
        "format": MANIFEST_FORMAT,
        "parquet": out.name,
        "sha256": sha,
        "rows": report_rows,
        "seed": options.seed,
        "sampler": options.sampler,
        "prompt": {"name": prompt.name, "version": prompt.version, "text": prompt.text},
        "pixel_limits": None if limits is None else {"min_pixels": limits[0], "max_pixels": limits[1]},
        "skip_bad": options.skip_bad,
        "skipped": sum(len(s.skipped) for s in summaries),
        "builder": f"speciarl_verl {__version__}",
        "sources": [s.to_json() for s in summaries],
    }


def _write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def manifest_path(out: str | Path) -> Path:
    """The manifest beside a parquet: ``train.parquet`` -> ``train.manifest.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".manifest.json")


def build_parquet(
    specs: SourceSpec | Sequence[SourceSpec], out: str | Path, options: BuildOptions | None = None
) -> BuildReport:
    """Write the rows of ``specs`` (in order) to the parquet ``out`` and its manifest; return a report.

    Raises :class:`DataSourceError` on bad input unless ``options.skip_bad``; on any error
    ``out`` is left as it was.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    options = options or BuildOptions()
    specs = [specs] if isinstance(specs, SourceSpec) else list(specs)
    if not specs:
        raise ValueError("nothing to build: no source given")
    prompt = get_policy_prompt(options.prompt)
    if str(out).endswith("/") or Path(out).is_dir():
        example = Path(out) / "train.parquet"
        raise ValueError(f"{out}: a folder; the output is the parquet file to write (e.g. {example})")
    out = Path(out)

    listed = []
    reference_rng = random.Random(options.seed)  # drawn from in source order by the reference sampler only
    for spec in specs:
        problems = ProblemLog(options.skip_bad)
        records = list_records(spec, problems, options.hf_cache_dir)
        if not records:
            raise DataSourceError(
                f"{spec.dataset} split {spec.split!r} under {spec.root}: no images listed (empty split)"
                + (f"; {len(problems.problems)} rows were skipped as bad" if problems.problems else "")
            )
        places, by_place = _places(records, problems)
        order = _draw_order(spec, len(records), places, options, reference_rng)
        listed.append((spec, records, problems, order, by_place))

    schema = row_schema(with_pixel_limits=options.pixel_limits is not None)
    total = sum(spec.subset or len(records) for spec, records, *_ in listed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    summaries = []
    index = 0
    try:
        writer = pq.ParquetWriter(
            tmp, schema, compression="zstd", compression_level=3, write_statistics=False, version="2.6"
        )
        progress = _progress_bar(options.progress)
        with writer, progress, ThreadPoolExecutor(options.workers) as pool:
            task = progress.add_task(f"building {out.name}", total=total)
            buffer: list[dict] = []
            for spec, records, problems, order, by_place in listed:
                target = spec.subset or len(records)
                written = reencoded = 0
                classes: Counter[tuple[int, str]] = Counter()
                chunk = max(8, 4 * options.workers)
                for record, checked in _checked_in_order(records, order, by_place, pool, chunk):
                    if isinstance(checked, DataSourceError):
                        problems.report(str(checked))  # raises unless skipping bad rows
                        continue
                    buffer.append(make_row(record, checked, index, prompt, options.pixel_limits))
                    index += 1
                    written += 1
                    reencoded += bool(checked.reencoded)
                    classes[(record.cls.class_id, record.cls.ground_truth)] += 1
                    progress.advance(task)
                    if len(buffer) == options.row_group_size:
                        writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                        buffer.clear()
                    if written == target:
                        break
                if written == 0:
                    raise DataSourceError(
                        f"{spec.dataset} split {spec.split!r} under {spec.root}: every listed image was bad "
                        f"({len(problems.problems)} skipped); nothing to write"
                    )
                summaries.append(
                    SourceSummary(
                        spec=spec,
                        source=spec.resolved_source(),
                        available=len(records),
                        rows=written,
                        classes={name: count for (_, name), count in sorted(classes.items())},
                        reencoded=reencoded,
                        skipped=tuple(problems.problems),
                    )
                )
            if buffer:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)

    sha = _sha256(out)
    manifest = manifest_path(out)
    content = _manifest(index, sha, out, options, prompt, summaries)
    _write_text_atomically(manifest, json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return BuildReport(parquet=out, manifest=manifest, rows=index, sha256=sha, sources=tuple(summaries))
