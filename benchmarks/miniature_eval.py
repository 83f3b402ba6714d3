"""Scoring of ``benchmarks/miniature.py``: verl's validation dumps -> judged predictions -> report -> table, plot.

The dumps hold verl's validation answers, ``val_kwargs.n`` per image, each naming its image
(``image_id`` in SpeciaRL's reward record). Each answer becomes a predictions row carrying its image's
split (``test`` or ``test_ood``) and, for the graded-visibility task, its visibility; ``speciarl eval
judge --judge offline`` judges them and one ``speciarl eval report`` scores every *part*: ``test`` and
``test_ood`` and, where images record a visibility, ``test/clear``, ``test/hidden`` and so on.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from speciarl_verl.jsonl_io import read_jsonl, write_atomically

SPLITS = ("test", "test_ood")
ARMS = ("start", "speciarl", "binary", "greedy")


def hierarchy_labels(data_source: str) -> dict[str, str]:
    """Normalised label -> level (``species``, ``family``, ``domain``) for every class of a drawn task.

    >>> labels = hierarchy_labels("synthetic_shapes_hidden")
    >>> labels["orange circle"], labels["circle"], labels["shape"]
    ('species', 'family', 'domain')
    """
    from speciarl_verl.core.label_normalization import normalize_label
    from speciarl_verl.data.adapters import get_adapter
    from speciarl_verl.data.adapters.synthetic_shapes import FAMILIES

    adapter = get_adapter(data_source)
    labels = {normalize_label(s.name): "species" for s in adapter.species}
    labels.update({normalize_label(f): "family" for f in FAMILIES})
    labels.update({normalize_label(n): "domain" for n in adapter.domain_nouns})
    return labels


def predictions_from_dump(
    dump_rows: Sequence[Mapping], eval_rows: Sequence[Mapping], val_n: int, prefix: str
) -> dict[str, list[dict]]:
    """verl's validation dump (``output``, ``gts`` and the reward record's ``image_id``) -> predictions rows, by part.

    Each dumped answer names its image (``image_id``, from the row's ``extra_info``), whatever order verl
    wrote the dump in; every evaluation row (``eval_rows``: ``data_source``, ``reward_model``, ``extra_info``)
    must have exactly ``val_n`` answers, each with that row's ground truth. Parts: the row's split, and
    ``<split>/<visibility>`` where the row records one. Rows come out in the evaluation file's order.

    >>> info = {"split": "test", "visibility": "hidden", "image_id": "red_circle_hidden_0003",
    ...         "parents": ["circle", "shape"], "parent_levels": ["close", "far"]}
    >>> rows = [{"data_source": "synthetic_shapes_hidden", "reward_model": {"ground_truth": "red circle"},
    ...          "extra_info": info}]
    >>> dump = [{"gts": "red circle", "output": "<answer>circle</answer>", "image_id": "red_circle_hidden_0003"}] * 2
    >>> out = predictions_from_dump(dump, rows, 2, "run")
    >>> sorted(out), [(r["sample_id"], r["prediction_index"]) for r in out["test/hidden"]]
    (['test', 'test/hidden'], [('run/red_circle_hidden_0003', 0), ('run/red_circle_hidden_0003', 1)])
    """
    if val_n < 1:
        raise ValueError(f"val_kwargs.n must be at least 1, got {val_n}")
    position = {row["extra_info"]["image_id"]: i for i, row in enumerate(eval_rows)}
    if len(position) != len(eval_rows):
        raise ValueError("image ids repeat in the evaluation parquet: rebuild the --work data")
    answers: dict[int, list[Mapping]] = defaultdict(list)
    for i, answer in enumerate(dump_rows):
        image = answer.get("image_id")
        if image is None:
            raise ValueError(f"dumped answer {i} names no image (no image_id in the reward record): a dump of an "
                             "older speciarl-verl; run again")  # fmt: skip
        if image not in position:
            raise ValueError(f"dumped answer {i} answers image {image!r}, which is in no evaluation row")
        truth = eval_rows[position[image]]["reward_model"]["ground_truth"]
        if answer["gts"] != truth:
            raise ValueError(f"dumped answer {i} for image {image!r} has ground truth {answer['gts']!r}, not {truth!r}")
        answers[position[image]].append(answer)
    wrong = {eval_rows[p]["extra_info"]["image_id"]: len(answers.get(p, [])) for p in range(len(eval_rows))}
    wrong = {image: count for image, count in wrong.items() if count != val_n}
    if wrong:
        shown = ", ".join(f"{image}: {count}" for image, count in list(wrong.items())[:5])
        raise ValueError(f"{len(wrong)} evaluation images lack {val_n} answers (val_kwargs.n) in the dump ({shown})")
    out: dict[str, list[dict]] = defaultdict(list)
    for p, row in enumerate(eval_rows):
        info = row["extra_info"]
        for index, answer in enumerate(answers[p]):
            prediction = {
                "sample_id": f"{prefix}/{info['image_id']}",
                "data_source": row["data_source"],
                "ground_truth": row["reward_model"]["ground_truth"],
                "prediction_index": index,
                "response": answer["output"],
                "parents": list(info.get("parents") or []),
                "parent_levels": list(info.get("parent_levels") or []),
                "domain_nouns": list(info.get("domain_nouns") or []),
                "synonyms": list(info.get("synonyms") or []),
            }
            split = info.get("split") or "test"
            out[split].append(prediction)
            if info.get("visibility"):
                out[f"{split}/{info['visibility']}"].append(prediction)
    return dict(out)


def undecided_breakdown(verdicts: Iterable[Mapping], labels: Mapping[str, str]) -> dict[str, int]:
    """How many verdicts the offline tier left undecided, split by what the answer names.

    ``known``: another class, family or domain noun of the task (``labels``; wrong for certain: the
    hierarchy is a tree and the right ones are decided); ``other``: text that names nothing in the task.

    >>> undecided_breakdown([{"reason": "undecided", "answer": "blue circle"}, {"reason": "undecided", "answer": "x"},
    ...                      {"category": "specific", "answer": "red circle"}], {"blue circle": "species"})
    {'undecided': 2, 'known': 1, 'other': 1}
    """
    from speciarl_verl.core.label_normalization import normalize_label

    counts = {"undecided": 0, "known": 0, "other": 0}
    for verdict in verdicts:
        if verdict.get("reason") != "undecided":
            continue
        counts["undecided"] += 1
        counts["known" if normalize_label(verdict.get("answer") or "") in labels else "other"] += 1
    return counts


def mean_spread(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation over seeds; None for fewer than 2 values).

    >>> mean_spread([0.2, 0.4])
    (0.30000000000000004, 0.1414213562373095)
    """
    if not values:
        raise ValueError("no values to average: no run finished")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def hm(correctness: float, specificity: float) -> float:
    """Harmonic mean, 0 when both are 0 (the report's definition).

    >>> hm(0.5, 1.0)
    0.6666666666666666
    """
    total = correctness + specificity
    return 0.0 if total <= 0 else 2 * correctness * specificity / total


def format_cell(values: Sequence[float]) -> str:
    """``0.412 ± 0.030`` (std over seeds), or ``0.412`` for one seed.

    >>> format_cell([0.4, 0.5]), format_cell([0.25])
    ('0.450 ± 0.071', '0.250')
    """
    mean, spread = mean_spread(values)
    return f"{mean:.3f}" if spread is None else f"{mean:.3f} ± {spread:.3f}"


def _means(metrics: Mapping) -> dict[str, dict[str, dict[str, float]]]:
    return {
        arm: {part: {name: statistics.fmean(v) for name, v in values.items()} for part, values in parts.items()}
        for arm, parts in metrics.items()
    }


def result_line_shapes(metrics: Mapping, seeds: int) -> str:
    """The shapes task's last line (in-domain test, means over seeds).

    >>> m = {a: {"test": {"hm": [0.5], "correctness": [0.8]}} for a in ARMS}
    >>> result_line_shapes(m, 1)
    'RESULT hm_start=0.500 hm_speciarl=0.500 hm_binary=0.500 hm_greedy=0.500 corr_drop_speciarl=0.000 seeds=1'
    """
    mean = _means(metrics)
    drop = mean["start"]["test"]["correctness"] - mean["speciarl"]["test"]["correctness"]
    hms = " ".join(f"hm_{arm}={mean[arm]['test']['hm']:.3f}" for arm in ARMS)
    return f"RESULT {hms} corr_drop_speciarl={drop:.3f} seeds={seeds}"


def result_line_hidden(metrics: Mapping, seeds: int) -> str:
    """The graded-visibility task's last line: in-domain HM, hidden-image correctness, out-of-domain HM."""
    mean = _means(metrics)
    hms = " ".join(f"hm_{arm}={mean[arm]['test']['hm']:.3f}" for arm in ARMS)
    hidden = " ".join(
        f"corr_hidden_{arm}={mean[arm]['test/hidden']['correctness']:.3f}" for arm in ("start", "speciarl", "binary")
    )
    ood = " ".join(f"ood_hm_{arm}={mean[arm]['test_ood']['hm']:.3f}" for arm in ("speciarl", "binary"))
    return f"RESULT {hms} {hidden} {ood} seeds={seeds}"


#: The tolerance of H1 and H4, fixed with the hypotheses in docs/notes.md before the first full run.
TOLERANCE = 0.05


def hypotheses(metrics: Mapping) -> list[tuple[str, bool, int, str]]:
    """The pre-registered hypotheses of the graded-visibility task, judged on the means over seeds.

    Returns ``(name, held, seeds where it held, the figures)`` per hypothesis; the per-seed count is shown
    beside the verdict, which is the mean's. H1: on hidden-species images SpeciaRL's correctness is no more
    than :data:`TOLERANCE` below the start's, and the binary reward's is more than that below it. H2:
    in-domain HM, SpeciaRL > binary. H3: out-of-domain HM, SpeciaRL > binary and > greedy. H4: on
    clear-species images SpeciaRL's specificity rises at least as much as the binary reward's, less
    :data:`TOLERANCE`.
    """
    seeds = len(metrics["start"]["test"]["hm"])

    def value(arm: str, part: str, name: str, seed: int | None) -> float:
        values = metrics[arm][part][name]
        return statistics.fmean(values) if seed is None else values[seed]

    def h1(seed):
        start = value("start", "test/hidden", "correctness", seed)
        speciarl, binary = (value(arm, "test/hidden", "correctness", seed) for arm in ("speciarl", "binary"))
        return speciarl >= start - TOLERANCE and binary < start - TOLERANCE, (
            f"hidden correctness start {start:.3f}, speciarl {speciarl:.3f}, binary {binary:.3f}"
        )

    def h2(seed):
        speciarl, binary = (value(arm, "test", "hm", seed) for arm in ("speciarl", "binary"))
        return speciarl > binary, f"in-domain HM speciarl {speciarl:.3f}, binary {binary:.3f}"

    def h3(seed):
        speciarl, binary, greedy = (value(arm, "test_ood", "hm", seed) for arm in ("speciarl", "binary", "greedy"))
        return speciarl > max(binary, greedy), (
            f"out-of-domain HM speciarl {speciarl:.3f}, binary {binary:.3f}, greedy {greedy:.3f}"
        )

    def h4(seed):
        start = value("start", "test/clear", "specificity", seed)
        rise = {arm: value(arm, "test/clear", "specificity", seed) - start for arm in ("speciarl", "binary")}
        return rise["speciarl"] >= rise["binary"] - TOLERANCE, (
            f"clear-image specificity start {start:.3f}, rise speciarl {rise['speciarl']:+.3f}, "
            f"binary {rise['binary']:+.3f}"
        )

    out = []
    for name, test in (("H1", h1), ("H2", h2), ("H3", h3), ("H4", h4)):
        held, figures = test(None)
        out.append((name, held, sum(test(seed)[0] for seed in range(seeds)), figures))
    return out


# ---------------------------------------------------------------------------------------------
# judging and the report


def jsonl_rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


def write_jsonl(path: Path, rows: Iterable[Mapping]) -> None:
    write_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))


def judge_arm(
    eval_dir: Path, arm: str, dumps: Sequence[tuple[str, Path]], eval_rows, val_n: int, run_cli: Callable
) -> dict[str, Path]:
    """Judge the dumps of one arm (a trained run's last step, or a seed's pooled step-0 dumps); verdicts by part."""
    parts: dict[str, list[dict]] = defaultdict(list)
    for prefix, dump in dumps:
        for part, rows in predictions_from_dump(jsonl_rows(dump), eval_rows, val_n, prefix).items():
            parts[part] += rows
    merged = eval_dir / f"{arm}.predictions.jsonl"
    write_jsonl(merged, (row for split in SPLITS for row in parts[split]))
    verdicts = eval_dir / f"{arm}.verdicts.jsonl"
    verdicts.unlink(missing_ok=True)  # judge resumes an existing file: judge afresh
    run_cli(["eval", "judge", "--predictions", str(merged), "--out", str(verdicts), "--judge", "offline",
             "--no-progress"], log=eval_dir / f"{arm}.judge.log")  # fmt: skip
    by_key = {(row["sample_id"], row["prediction_index"]): row for row in jsonl_rows(verdicts)}
    out = {}
    for part, rows in sorted(parts.items()):
        out[part] = eval_dir / f"{arm}.{part.replace('/', '.')}.verdicts.jsonl"
        write_jsonl(out[part], (by_key[(row["sample_id"], row["prediction_index"])] for row in rows))
    return out


def evaluate(work: Path, runs: Sequence, dumps_of: Callable, eval_rows, settings, data_source: str, run_cli) -> dict:
    """Judge every arm, run one ``speciarl eval report`` over them; metrics as ``{arm: {part: {name: [per seed]}}}``."""
    eval_dir = work / "eval"
    if eval_dir.exists():
        shutil.rmtree(eval_dir)
    eval_dir.mkdir(parents=True)
    arms: dict[str, dict[str, Path]] = {}
    for seed in settings.seeds:
        seed_runs = [run for run in runs if run.seed == seed]
        starts = [(f"{r.name}/step0", dumps_of(r)[0]) for r in seed_runs]
        arms[f"start_s{seed}"] = judge_arm(eval_dir, f"start_s{seed}", starts, eval_rows, settings.val_n, run_cli)
        for run in seed_runs:
            last = [(f"{run.name}/step{settings.steps}", dumps_of(run)[settings.steps])]
            arms[run.name] = judge_arm(eval_dir, run.name, last, eval_rows, settings.val_n, run_cli)
    labels = hierarchy_labels(data_source)
    undecided = {"undecided": 0, "known": 0, "other": 0}
    report_args = ["eval", "report", "--out", str(eval_dir / "report"), "--train-domain", data_source,
                   "--undecided", "wrong", "--bootstrap", "0", "--no-plots"]  # fmt: skip
    for arm, files in arms.items():
        for part, path in files.items():
            if part in SPLITS:  # a visibility part repeats its split's verdicts
                for key, count in undecided_breakdown(jsonl_rows(path), labels).items():
                    undecided[key] += count
            report_args += ["--verdicts", str(path), "--name", f"{arm}/{part}"]
    run_cli(report_args, log=eval_dir / "report.log")
    report = json.loads((eval_dir / "report" / "report.json").read_text())
    parts = sorted({part for files in arms.values() for part in files})
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for arm in ARMS:
        results[arm] = {}
        for part in parts:
            metrics: dict[str, list[float]] = defaultdict(list)
            for seed in settings.seeds:
                source = report["runs"][f"{arm}_s{seed}/{part}"]["per_source"][data_source]
                for name in ("correctness", "specificity", "hm"):
                    metrics[name].append(float(source[name]))
                metrics["unparseable"].append(float(source["unparseable_rate"]["first"]))
            results[arm][part] = dict(metrics)
    return {"metrics": results, "undecided": undecided, "report": str(eval_dir / "report" / "report.md")}


def cli_runner(repo: Path, env: Mapping[str, str]) -> Callable:
    """``run_cli(args, log=None)``: ``python -m speciarl_verl.cli ARGS`` in ``repo``; failing, it raises with stderr."""

    def run_cli(args: Sequence[str], log: Path | None = None) -> None:
        command = [sys.executable, "-m", "speciarl_verl.cli", *args]
        result = subprocess.run(command, env=dict(env), capture_output=True, text=True, cwd=repo)
        if log is not None:
            log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")

    return run_cli


# ---------------------------------------------------------------------------------------------
# table and plots

ARM_COLOURS = {"start": "black", "speciarl": "tab:green", "binary": "tab:blue", "greedy": "tab:red"}
_TITLES = {"test": "in-domain test", "test_ood": "out-of-domain test"}


def part_title(part: str) -> str:
    """``test/hidden`` -> ``in-domain test, hidden species``."""
    split, _, visibility = part.partition("/")
    title = _TITLES.get(split, split)
    return f"{title}, {visibility} species" if visibility else title


def table_markdown(metrics: Mapping, parts: Sequence[str], seeds: int) -> str:
    """One markdown table per part: arms x (correctness, specificity, HM, unparseable), mean ± std over seeds."""
    lines = []
    for part in parts:
        lines += [f"{part_title(part)}, {seeds} seed(s), mean ± std over seeds:", "",
                  "| arm | correctness | specificity | HM | unparseable |", "|---|---|---|---|---|"]  # fmt: skip
        for arm in ARMS:
            names = ("correctness", "specificity", "hm", "unparseable")
            cells = [format_cell(metrics[arm][part][name]) for name in names]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_points(metrics: Mapping, parts: Sequence[str], path: Path, title: str) -> None:
    """Specificity vs correctness per arm and seed, one panel per part, HM isolines behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, len(parts), figsize=(5.5 * len(parts), 5), sharey=True, squeeze=False)
    grid = np.linspace(0.001, 1, 300)
    corr, spec = np.meshgrid(grid, grid)
    level = 2 * corr * spec / (corr + spec)
    for ax, part in zip(axes[0], parts, strict=True):
        lines = ax.contour(corr, spec, level, levels=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], colors="0.8",
                           linewidths=0.8)  # fmt: skip
        ax.clabel(lines, fmt="HM %.1f", fontsize=7)
        for arm in ARMS:
            values = metrics[arm][part]
            c, s = values["correctness"], values["specificity"]
            ax.scatter(c, s, color=ARM_COLOURS[arm], alpha=0.45, s=25)
            ax.scatter([statistics.fmean(c)], [statistics.fmean(s)], color=ARM_COLOURS[arm], s=110,
                       marker="*" if arm == "start" else "o", edgecolors="black", label=arm)  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("correctness")
        ax.set_title(part_title(part))
        ax.grid(alpha=0.2)
    axes[0][0].set_ylabel("specificity")
    axes[0][0].legend(loc="upper right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
