"""Train SpeciaRL on your own classification data: a folder of images per class -> verl parquet files.

Two layouts are read::

    my_birds/<class>/<image>                      # one pool: a seeded share per class is held out for validation
    my_birds/{train,val}/<class>/<image>          # your own split ("test" is read when there is no "val")

The class folder's name is the ground truth the judge compares answers with: underscores become
spaces and a leading number such as ``001.`` is dropped (``001.Black_footed_Albatross`` ->
``Black footed Albatross``), so name the folders as a person would name the class. An optional
JSON file gives each class its coarser names, nearest first (``{"Black footed Albatross":
["albatross", "seabird"]}``); the rule tier of the judge uses them to recognise a correct but
coarser answer without asking the LLM.

The rows are written by the package's own builder (``speciarl_verl.data.builder.build_parquet``):
same schema, prompt, image checks, seeded subsets, manifest and atomic writes as ``speciarl data
build``. Here a small adapter for the folder layout is registered under your dataset's name,
which becomes the rows' ``data_source`` (the name in ``val-core/<name>/acc`` and friends).

    python examples/image_folder_dataset.py --root my_birds --name my_birds --out-dir data
    # then run the printed command on a GPU node, e.g.
    bash recipes/run_speciarl_qwen25vl.sh --train-file data/my_birds_train.parquet \\
        --val-file data/my_birds_val.parquet
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from speciarl_verl.data.adapters import DatasetAdapter, adapter_names, register_adapter
from speciarl_verl.data.builder import BuildOptions, BuildReport, SourceSpec, build_parquet
from speciarl_verl.data.source_record import DataSourceError, ProblemLog, SourceRecord

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
SPLITS = ("train", "val")
_NUMBER_PREFIX = re.compile(r"^\d+[._\s-]+")


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    found = folder.rglob("*")
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


class ImageFolderAdapter(DatasetAdapter):
    """Reads ``root/<class>/<image>`` or ``root/{train,val|test}/<class>/<image>``.

    Subclassed per dataset by :func:`register_image_folder` (``name``, ``val_fraction``, ``seed``
    and ``hierarchy`` are class attributes because the builder creates adapters without arguments).
    """

    splits = SPLITS
    class_list = ""
    val_fraction: float = 0.1
    seed: int = 42
    hierarchy: Mapping[str, tuple[str, ...]] = MappingProxyType({})

    def ground_truth(self, class_name: str) -> str:
        return super().ground_truth(_NUMBER_PREFIX.sub("", class_name.strip()))

    def parents(self, class_name: str) -> tuple[str, ...]:
        return self.hierarchy.get(self.ground_truth(class_name), ())

    def class_for_name(self, name: str):  # there is no shipped class list to match against
        return None

    def _split_folder(self, root: Path, split: str) -> Path | None:
        for candidate in (split, "test") if split == "val" else (split,):
            if (root / candidate).is_dir():
                return root / candidate
        return None

    def read_raw(self, root: Path, split: str, problems: ProblemLog) -> list[SourceRecord]:
        self.check_split(split)
        root = Path(root)
        if not root.is_dir():
            raise DataSourceError(f"{self.name}: {root} is not a folder")
        own_split = (root / "train").is_dir()
        folder = self._split_folder(root, split) if own_split else root
        if folder is None:
            raise DataSourceError(f"{self.name}: {root} has a train/ folder but no val/ or test/ folder")
        # class ids follow the sorted class names of every split, so train and val agree
        tops = [root / s for s in ("train", "val", "test") if (root / s).is_dir()] if own_split else [root]
        names = sorted({c.name for top in tops for c in _class_folders(top)})
        if not names:
            raise DataSourceError(f"{self.name}: no class folders under {root}")
        records = []
        for class_dir in _class_folders(folder):
            images = _images(class_dir)
            if not images:
                problems.report(f"{class_dir}: class folder without images ({', '.join(sorted(IMAGE_SUFFIXES))})")
                continue
            if not own_split:
                images = self._held_out(class_dir.name, images, split)
            info = self.class_info(names.index(class_dir.name), class_dir.name)
            for path in images:
                relative = path.relative_to(root).as_posix()
                records.append(
                    SourceRecord(
                        data_source=self.name,
                        split=split,
                        image_id=relative,
                        cls=info,
                        source_file=relative,
                        origin=str(path),
                        image_path=path,
                    )
                )
        return records

    def _held_out(self, class_name: str, images: list[Path], split: str) -> list[Path]:
        """The class's images of ``split``: a seeded share goes to val (one at least, if the class has two)."""
        order = random.Random(f"{self.seed}/{self.name}/{class_name}").sample(images, len(images))
        count = min(len(images) - 1, max(1, math.floor(len(images) * self.val_fraction))) if len(images) > 1 else 0
        chosen = order[:count] if split == "val" else order[count:]
        return sorted(chosen)


def register_image_folder(
    name: str, val_fraction: float = 0.1, seed: int = 42, hierarchy: dict[str, list[str]] | None = None
) -> type[ImageFolderAdapter]:
    """Register an :class:`ImageFolderAdapter` under ``name`` (the rows' ``data_source``).

    ``hierarchy`` maps a class to its coarser names, nearest first. The rule tier files the
    nearest one as *less specific* without asking the LLM judge (it is ``close``); farther ones
    are ``far`` and go to the LLM, which decides between *less specific* and *generic*.

    >>> register_image_folder("doc_example_birds").name
    'doc_example_birds'
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"dataset name must be letters, digits and _ (it becomes data_source), got {name!r}")
    if name in adapter_names():
        raise ValueError(f"dataset name {name!r} is taken by a built-in adapter; choose another")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    parents = {str(k): tuple(str(p) for p in v) for k, v in (hierarchy or {}).items()}
    attributes = {"name": name, "val_fraction": val_fraction, "seed": seed, "hierarchy": MappingProxyType(parents)}
    return register_adapter(name)(type(f"ImageFolderAdapter_{name}", (ImageFolderAdapter,), attributes))


def suggested_overrides(train_rows: int) -> list[str]:
    """Batch sizes a small set needs: verl drops the last incomplete batch, so batch <= rows."""
    if train_rows >= 256:
        return []
    batch = 2 ** int(math.log2(train_rows)) if train_rows >= 1 else 1
    return [f"data.train_batch_size={batch}", f"actor_rollout_ref.actor.ppo_mini_batch_size={min(128, batch)}"]


def read_hierarchy(path: str) -> dict[str, list[str]]:
    """The ``--hierarchy`` file: a JSON object, class name -> its coarser names, nearest first.
    Anything else is a ``ValueError`` naming the option and the file."""
    where = f"--hierarchy {path}"
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{where}: cannot read it ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except json.JSONDecodeError as error:
        at = f"line {error.lineno} column {error.colno}"
        raise ValueError(f"{where}: not valid JSON ({error.msg} at {at})") from error
    fits = isinstance(loaded, dict) and all(
        isinstance(names, list) and all(isinstance(name, str) for name in names) for names in loaded.values()
    )
    if not fits:
        raise ValueError(
            f'{where}: expected a JSON object of class name -> list of coarser names, e.g. {{"Black footed '
            f'Albatross": ["albatross", "seabird"]}}'
        )
    return loaded


def build(args: argparse.Namespace) -> tuple[BuildReport, BuildReport]:
    hierarchy = read_hierarchy(args.hierarchy) if args.hierarchy else None
    register_image_folder(args.name, args.val_fraction, args.seed, hierarchy)
    out_dir = Path(args.out_dir)
    options = BuildOptions(seed=args.seed, prompt=args.prompt, progress=not args.no_progress)
    train = build_parquet(
        SourceSpec(args.name, args.root, "train", subset=args.subset, source="raw"),
        out_dir / f"{args.name}_train.parquet",
        options,
    )
    val = build_parquet(
        SourceSpec(args.name, args.root, "val", subset=args.val_subset, source="raw"),
        out_dir / f"{args.name}_val.parquet",
        options,
    )
    return train, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder with one sub-folder of images per class")
    parser.add_argument("--name", required=True, help="dataset name, written as data_source (letters, digits, _)")
    parser.add_argument("--out-dir", default="data", help="where the parquet files go (default data)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out share per class (one pool only)")
    parser.add_argument("--subset", type=int, help="draw this many training images (seeded)")
    parser.add_argument("--val-subset", type=int, help="draw this many validation images (seeded)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the hold-out and the draws (default 42)")
    parser.add_argument("--prompt", default="general", help="policy prompt name (default general)")
    parser.add_argument("--hierarchy", help="JSON: class name -> list of coarser names, nearest first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        train, val = build(args)
    except (DataSourceError, ValueError, OSError) as exc:  # bad input: exit 2, as `speciarl` commands
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for report in (train, val):
        summary = report.sources[0]
        print(f"{report.parquet}: {report.rows} images of {len(summary.classes)} classes")
    command = [
        "bash",
        "recipes/run_speciarl_qwen25vl.sh",
        "--train-file",
        str(train.parquet.resolve()),
        "--val-file",
        str(val.parquet.resolve()),
        *suggested_overrides(train.rows),
    ]
    print("train on a GPU node with:")
    print("  " + shlex.join(command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
