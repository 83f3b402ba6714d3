"""``speciarl data``: build verl-ready parquet files from the benchmarks, list datasets and prompts.

Examples::

    speciarl data build --dataset cub200 --root /data/CUB_200_2011 --split train \\
        --subset 3000 --seed 42 --out data/cub200_train_3000_seed42.parquet
    speciarl data build-mixed --spec cub200=/data/CUB_200_2011:train:500 \\
        --spec food101=/data/food-101:train:500 --seed 42 --out data/mixed.parquet
    speciarl data list
    speciarl data check data/cub200_train_3000_seed42.parquet data/cub200_test.parquet

Bad input (an unknown dataset or prompt, a missing root, split file or image, an image
that does not decode, a malformed or repeated list line, a Hugging Face copy whose class
names are not the dataset's or whose one split is not ``--split``) stops the build with one
line naming the file and line or row (or the names), and exit code 2; ``--skip-bad`` skips
bad rows and counts them in the summary (the first few printed, all in the manifest). A
one-split copy of the wrong split and a copy naming one class twice are refused even then.
So are command-line mistakes, before anything is read: ``--out`` naming a folder (an existing
one, or a path ending in ``/``: ``--out`` is the parquet file), a ``--split-file NAME=...`` of
``build-mixed`` that no ``--spec`` uses, a subset size that is not a whole number.

``check`` reads built files the way training will (every row needs a prompt, an image Pillow
opens and ``reward_model.ground_truth``; see :mod:`~speciarl_verl.data.row_check`) and prints
``ok FILE: N rows`` for each, or exits 2 with the message the training dataset would raise.
"""

from __future__ import annotations

import argparse

from speciarl_verl.cli_errors import UserInputError, output_file, user_input

__all__ = ["parse_mixed_spec", "register"]

#: Skipped rows printed per source (the manifest lists them all).
_SKIPPED_SHOWN = 20

_MIXED_HELP = (
    "one source as NAME=ROOT:SPLIT[:N] (N = subset size; ROOT is an extracted archive, an HF save_to_disk "
    "folder or parquet, or a hub id). Repeat for each source; rows follow the order given."
)


def parse_mixed_spec(text: str, split_files: dict[str, str] | None = None):
    """``"cub200=/data/CUB_200_2011:train:500"`` -> a :class:`~speciarl_verl.data.builder.SourceSpec`.

    ROOT may itself contain ``:``; the split and the optional size are taken from the right.

    >>> spec = parse_mixed_spec("cub200=/data/CUB_200_2011:train:500")
    >>> spec.dataset, spec.root, spec.split, spec.subset
    ('cub200', '/data/CUB_200_2011', 'train', 500)
    """
    from speciarl_verl.data.builder import SourceSpec

    name, equals, rest = text.partition("=")
    parts = rest.rsplit(":", 2)
    if not equals or not name or len(parts) < 2:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT:SPLIT[:N], got {text!r}")
    subset = None
    if len(parts) == 3 and parts[2].isdigit():
        root, split, subset = parts[0], parts[1], int(parts[2])
    elif len(parts) == 3 and _is_split(name, parts[1]) and not _is_split(name, parts[2]):
        raise argparse.ArgumentTypeError(
            f"the size N of NAME=ROOT:SPLIT[:N] must be a positive whole number (images to draw), got {parts[2]!r}"
        )
    elif len(parts) == 3:
        root, split = f"{parts[0]}:{parts[1]}", parts[2]
    else:
        root, split = parts
    if not root or not split:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT:SPLIT[:N], got {text!r}")
    split_file = (split_files or {}).get(name)
    return SourceSpec(name, root, split, subset=subset, split_file=split_file)


def _is_split(dataset: str, name: str) -> bool:
    """Whether ``name`` is a split of ``dataset`` (its official layout's, or CoOp's where it has a split
    file); ``False`` for an unknown dataset, which the build reports itself."""
    from speciarl_verl.data.adapters import adapter_names, get_adapter

    if dataset not in adapter_names():
        return False
    adapter = get_adapter(dataset)
    return name in adapter.splits or (adapter.coop_split_file is not None and name in ("train", "val", "test"))


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=42, help="seed of the subset draw (default 42)")
    parser.add_argument(
        "--sampler",
        choices=("per_source", "reference"),
        default="per_source",
        help="per_source (default): each source drawn on its own; reference: the method's own draw, one "
        "generator seeded once and shared by the sources in the order given",
    )
    parser.add_argument("--prompt", default="general", help="policy prompt name (default general; see `data list`)")
    parser.add_argument("--prompt-file", help="JSON/YAML file of extra prompts (name -> text) to choose from")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad rows (and rows of HF classes that are not the dataset's) and count them instead of failing",
    )
    parser.add_argument("--min-pixels", type=int, help="per-image min_pixels for qwen_vl_utils (stored in the row)")
    parser.add_argument("--max-pixels", type=int, help="per-image max_pixels for qwen_vl_utils (stored in the row)")
    parser.add_argument("--workers", type=int, default=2, help="threads reading and checking images (default 2)")
    parser.add_argument("--hf-cache-dir", help="cache folder for Hugging Face parquet copies and hub ids")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--out", required=True, help="output parquet file, e.g. data/train.parquet (the manifest goes beside it)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build verl parquet files from the fine-grained benchmarks")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    build = commands.add_parser(
        "build",
        help="one split of one dataset -> parquet",
        description="Build a verl parquet from one split of one dataset (raw layout, CoOp split or HF copy).",
    )
    build.add_argument("--dataset", required=True, help="cub200, fgvc_aircraft, flowers102, food101, ...")
    build.add_argument("--root", required=True, help="extracted archive (or its parent), HF copy, or hub id")
    build.add_argument("--split", required=True, help="split name (see `speciarl data list`)")
    build.add_argument("--subset", type=int, help="draw this many images (seeded)")
    build.add_argument("--split-file", help="CoOp split JSON (split_zhou_*.json) for flowers102/food101/oxford_pets")
    build.add_argument("--source", choices=("auto", "raw", "hf"), default="auto", help="how to read --root")
    _add_build_options(build)
    build.set_defaults(func=_run_build)

    mixed = commands.add_parser(
        "build-mixed",
        help="several dataset splits -> one parquet",
        description="Build one verl parquet from several sources, e.g. 500 train images of each benchmark.",
    )
    mixed.add_argument("--spec", action="append", required=True, metavar="NAME=ROOT:SPLIT[:N]", help=_MIXED_HELP)
    mixed.add_argument(
        "--split-file", action="append", default=[], metavar="NAME=JSON", help="CoOp split JSON for dataset NAME"
    )
    _add_build_options(mixed)
    mixed.set_defaults(func=_run_mixed)

    check = commands.add_parser(
        "check",
        help="check built parquet files row by row, as training does before its first step",
        description="Check parquet files row by row (prompt, readable image, ground truth), as the training "
        "dataset does before the first step; exit 2 naming the bad rows.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="parquet file(s) to check")
    check.set_defaults(func=_run_check)

    listing = commands.add_parser("list", help="datasets with their splits, and policy prompts")
    listing.add_argument("--prompt-file", help="also list the prompts of this file")
    listing.set_defaults(func=_run_list)


def _options(args: argparse.Namespace):
    from speciarl_verl.data.builder import BuildOptions

    return BuildOptions(
        seed=args.seed,
        sampler=args.sampler,
        prompt=args.prompt,
        skip_bad=args.skip_bad,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        progress=not args.no_progress,
        workers=args.workers,
        hf_cache_dir=args.hf_cache_dir,
    )


def _build(args: argparse.Namespace, specs) -> int:
    from speciarl_verl.data.builder import build_parquet
    from speciarl_verl.prompts import load_policy_prompts

    output_file(args.out, "--out", "train.parquet")
    # The builder's contract: bad input is a ValueError (DataSourceError for the dataset's files).
    with user_input():
        if args.prompt_file:
            load_policy_prompts(args.prompt_file)
        report = build_parquet(specs, args.out, _options(args))
    for summary in report.sources:
        spec = summary.spec
        print(
            f"{spec.dataset} {spec.split} ({summary.source}): {summary.rows} rows, {len(summary.classes)} classes, "
            f"{summary.available} listed, {summary.reencoded} re-encoded, {len(summary.skipped)} skipped"
        )
        for problem in summary.skipped[:_SKIPPED_SHOWN]:
            print(f"  skipped: {problem}")
        if len(summary.skipped) > _SKIPPED_SHOWN:
            print(f"  ... and {len(summary.skipped) - _SKIPPED_SHOWN} more skipped rows (all in the manifest)")
    print(f"wrote {report.rows} rows to {report.parquet} (sha256 {report.sha256[:16]}...)")
    print(f"manifest: {report.manifest}")
    return 0


def _run_build(args: argparse.Namespace) -> int:
    from speciarl_verl.data.builder import SourceSpec

    with user_input():
        spec = SourceSpec(args.dataset, args.root, args.split, args.subset, args.split_file, args.source)
    return _build(args, [spec])


def _run_mixed(args: argparse.Namespace) -> int:
    split_files = {}
    for item in args.split_file:
        name, equals, path = item.partition("=")
        if not equals or not name or not path:
            raise UserInputError(f"--split-file expects NAME=JSON, got {item!r}")
        split_files[name] = path
    specs = []
    for text in args.spec:
        try:
            specs.append(parse_mixed_spec(text, split_files))
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise UserInputError(f"--spec {text!r}: {error}") from error
    unused = [name for name in split_files if name not in {spec.dataset for spec in specs}]
    if unused:
        used = ", ".join(dict.fromkeys(spec.dataset for spec in specs))
        raise UserInputError(
            f"--split-file {unused[0]}={split_files[unused[0]]}: no --spec is of dataset {unused[0]!r} "
            f"(the specs are of {used}); a split file goes with the --spec of the same NAME"
        )
    return _build(args, specs)


def _run_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speciarl_verl.data.row_check import check_files

    for name in args.files:
        if not Path(name).is_file():
            raise UserInputError(f"{name}: no such file" if not Path(name).exists() else f"{name}: not a file")
    with user_input():  # a BadRowsError, or a file that is no parquet
        checks = check_files(args.files)
    for check in checks:
        print(f"ok {check.path}: {check.rows} rows")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from speciarl_verl.data.adapters import adapter_names, get_adapter
    from speciarl_verl.prompts import get_policy_prompt, load_policy_prompts, policy_prompt_names

    if args.prompt_file:
        with user_input():
            load_policy_prompts(args.prompt_file)
    print("datasets (official-layout splits; CoOp split files add train/val/test):")
    for name in adapter_names():
        adapter = get_adapter(name)
        coop = f", CoOp JSON ({adapter.coop_split_file}: train, val, test)" if adapter.coop_split_file else ""
        print(f"  {name:<17} {', '.join(adapter.splits)}{coop}")
    print("policy prompts:")
    for name in policy_prompt_names():
        prompt = get_policy_prompt(name)
        print(f"  {name:<16} {prompt.version}  {prompt.text[:70]}...")
    return 0
