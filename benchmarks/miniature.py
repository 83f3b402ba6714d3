"""The method in miniature: SpeciaRL's dynamic reward against a binary and a specificity-greedy one, on the CPU.

The shipped tiny generic-leaning Qwen2.5-VL policy (:mod:`speciarl_verl.cpu_debug.tiny_policy`) is trained by
verl's own ``main_ppo`` (``recipes/run_speciarl_tiny_cpu.sh``, ``+cpu_debug=tiny_cpu``) on the synthetic
shapes task under three rewards, same seeds, same steps, same data, same hyperparameters:

* ``speciarl``: the dynamic group reward (config ``speciarl_grpo``);
* ``binary``: 1 for the exact label or finer, 0 otherwise (config ``speciarl_grpo_reward3``);
* ``greedy``: the static table ``scala3`` (config ``speciarl_grpo_scala3``): of the three graded tables it
  is the only one that pays a safe generic answer or an abstention no more than a wrong guess (0), so
  naming a species never loses against playing safe; ``scala1`` pays 0.5 / 0.25 for generic / abstain
  and so rewards safety.

Nothing is loaded back from checkpoints: every run validates before training and after its last step on
a held-out test set (in-domain ``test`` rows plus held-out colour/shape pairs of ``test_ood``), sampling
at the training temperature, and verl dumps those generations (``trainer.validation_data_dir``). The
dumps become predictions JSONL, judged by ``speciarl eval judge --judge offline`` (exact here: the whole
hierarchy is known) and scored by ``speciarl eval report``. Pairs the rule tier leaves undecided are
counted and checked: on this task each is a wrong colour or a wrong shape, so the report counts them as
wrong (``--undecided wrong``). The start point of a seed pools the step-0 validations of its runs.

Outputs under ``--work`` (default ``outputs/miniature``): ``table.md``, ``summary.json``, ``miniature.png``
(specificity vs correctness, HM isolines), ``miniature_curves.png`` (reward mean and verdict shares per
step, from verl's ``metrics.jsonl``). The last line printed is exactly::

    RESULT hm_start=<a> hm_speciarl=<b> hm_binary=<c> hm_greedy=<d> corr_drop_speciarl=<e> seeds=<n>

(in-domain test; means over seeds; ``corr_drop`` is start correctness minus trained correctness).

    python benchmarks/miniature.py --quick             # one seed, few steps
    python benchmarks/miniature.py --seeds 0,1,2       # the fuller run
    python benchmarks/miniature.py --quick --policy /tmp/tiny-policy --work /tmp/mini   # another policy

Finished runs are kept and skipped when the script is run again with the same ``--work`` and settings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from speciarl_verl.cpu_debug.tiny_policy import shipped_policy_dir
from speciarl_verl.evaluation.curves import RunCurve, plot_runs
from speciarl_verl.evaluation.curves import step_curves as read_step_curves
from speciarl_verl.jsonl_io import read_jsonl, write_atomically

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "run_speciarl_tiny_cpu.sh"
DATA_SOURCE = "synthetic_shapes"
#: Reward name -> shipped config. Order is the table's.
REWARDS: dict[str, str] = {
    "speciarl": "speciarl_grpo",
    "binary": "speciarl_grpo_reward3",
    "greedy": "speciarl_grpo_scala3",
}
SPLITS = ("test", "test_ood")
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass(frozen=True)
class Settings:
    """Everything that decides a run; every reward gets the same."""

    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 20
    train_rows: int = 96
    batch_prompts: int = 8
    group_n: int = 4
    lr: float = 1e-3
    test_rows: int = 96
    ood_rows: int = 32
    val_n: int = 2
    val_temperature: float = 1.0
    run_timeout_s: int = 1800

    @property
    def eval_rows(self) -> int:
        return self.test_rows + self.ood_rows


QUICK = Settings(seeds=(0,), steps=8, train_rows=64, test_rows=48, ood_rows=16)


# ---------------------------------------------------------------------------------------------
# pure helpers (tested in tests/benchmarks/test_miniature.py)


def hierarchy_labels() -> dict[str, str]:
    """Normalised label -> its level (``species``, ``family``, ``domain``) for every synthetic shapes class.

    >>> hierarchy_labels()["red circle"], hierarchy_labels()["circle"], hierarchy_labels()["shape"]
    ('species', 'family', 'domain')
    """
    from speciarl_verl.core.label_normalization import normalize_label
    from speciarl_verl.data.adapters.synthetic_shapes import FAMILIES, SPECIES, SyntheticShapesAdapter

    labels = {normalize_label(s.name): "species" for s in SPECIES}
    labels.update({normalize_label(f): "family" for f in FAMILIES})
    labels.update({normalize_label(n): "domain" for n in SyntheticShapesAdapter.domain_nouns})
    return labels


def ood_labels() -> frozenset[str]:
    """Ground-truth labels of the ``test_ood`` split (the held-out colour/shape pairs)."""
    from speciarl_verl.data.adapters.synthetic_shapes import species_in_split

    return frozenset(s.name for s in species_in_split("test_ood"))


def predictions_from_dump(
    dump_rows: Sequence[Mapping], classes: Mapping[str, Mapping], val_n: int, prefix: str
) -> dict[str, list[dict]]:
    """verl's validation dump (``input``, ``output``, ``gts`` ...) -> predictions JSONL rows, by split.

    verl repeats each prompt ``val_n`` times, interleaved: row ``i`` is answer ``i % val_n`` of prompt
    ``i // val_n``. ``classes`` maps a ground truth to its parquet ``extra_info`` (parents, levels,
    domain nouns, synonyms); the split is ``test_ood`` for the held-out classes, ``test`` otherwise.

    >>> rows = [{"gts": "red circle", "output": "<answer>circle</answer>"}] * 2
    >>> info = {"red circle": {"parents": ["circle", "shape"], "parent_levels": ["close", "far"]}}
    >>> out = predictions_from_dump(rows, info, 2, "run")
    >>> [(r["sample_id"], r["prediction_index"]) for r in out["test"]]
    [('run/0', 0), ('run/0', 1)]
    """
    if val_n < 1 or len(dump_rows) % val_n:
        raise ValueError(f"{len(dump_rows)} dumped answers do not split into prompts of {val_n} (val_kwargs.n)")
    held_out = ood_labels()
    out: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for i, row in enumerate(dump_rows):
        truth = row["gts"]
        prompt = i // val_n
        if truth != dump_rows[prompt * val_n]["gts"]:
            raise ValueError(f"answer {i} has ground truth {truth!r} but its prompt's first answer another")
        if truth not in classes:
            raise ValueError(f"ground truth {truth!r} is in no evaluation parquet: rebuild the --work data")
        info = classes[truth]
        out["test_ood" if truth in held_out else "test"].append(
            {
                "sample_id": f"{prefix}/{prompt}",
                "data_source": DATA_SOURCE,
                "ground_truth": truth,
                "prediction_index": i % val_n,
                "response": row["output"],
                "parents": list(info.get("parents") or []),
                "parent_levels": list(info.get("parent_levels") or []),
                "domain_nouns": list(info.get("domain_nouns") or []),
                "synonyms": list(info.get("synonyms") or []),
            }
        )
    return out


def undecided_breakdown(verdicts: Iterable[Mapping]) -> dict[str, int]:
    """How many verdicts the offline tier left undecided, split by what the answer names.

    ``known``: another class, family or domain noun of the task (wrong for certain: the hierarchy is a
    tree and the right ones are decided); ``other``: text that names nothing in the task.

    >>> undecided_breakdown([{"reason": "undecided", "answer": "blue circle"}, {"reason": "undecided", "answer": "x"},
    ...                      {"category": "specific", "answer": "red circle"}])
    {'undecided': 2, 'known': 1, 'other': 1}
    """
    from speciarl_verl.core.label_normalization import normalize_label

    labels = hierarchy_labels()
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
    >>> mean_spread([0.5])
    (0.5, None)
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


def result_line(metrics: Mapping[str, Mapping[str, Sequence[float]]], seeds: int) -> str:
    """The benchmark's last line from ``{arm: {"hm": [...], "correctness": [...]}}`` (in-domain, per seed).

    >>> m = {a: {"hm": [0.5], "correctness": [0.8]} for a in ("start", "speciarl", "binary", "greedy")}
    >>> result_line(m, 1)
    'RESULT hm_start=0.500 hm_speciarl=0.500 hm_binary=0.500 hm_greedy=0.500 corr_drop_speciarl=0.000 seeds=1'
    """
    mean = {arm: {k: statistics.fmean(v) for k, v in values.items()} for arm, values in metrics.items()}
    drop = mean["start"]["correctness"] - mean["speciarl"]["correctness"]
    hms = " ".join(f"hm_{arm}={mean[arm]['hm']:.3f}" for arm in ("start", *REWARDS))
    return f"RESULT {hms} corr_drop_speciarl={drop:.3f} seeds={seeds}"


def step_curves(metrics_file: Path) -> dict[int, dict[str, float]]:
    """Training steps of verl's file-logger output (:func:`speciarl_verl.evaluation.curves.step_curves`,
    what ``speciarl eval curves`` reads), with the reward mean also under ``reward``."""
    return {step: {**row, "reward": row["reward_mean"]} for step, row in read_step_curves(metrics_file).items()}


# ---------------------------------------------------------------------------------------------
# the runs


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in _OFFLINE_ENV.items():
        env.setdefault(key, value)
    env.setdefault("RAY_raylet_start_wait_time_s", "180")
    return env


def run_cli(args: Sequence[str], log: Path | None = None) -> None:
    command = [sys.executable, "-m", "speciarl_verl.cli", *args]
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True, cwd=REPO)
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


def build_data(work: Path, settings: Settings) -> tuple[Path, Path]:
    """(train parquet, evaluation parquet = test rows + test_ood rows) under ``work/data``, built once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    train = data / f"train_{settings.train_rows}.parquet"
    evaluation = data / f"eval_{settings.test_rows}_{settings.ood_rows}.parquet"
    parts = {"train": (train, settings.train_rows)}
    if not evaluation.is_file():
        parts["test"] = (data / f"test_{settings.test_rows}.parquet", settings.test_rows)
        parts["test_ood"] = (data / f"test_ood_{settings.ood_rows}.parquet", settings.ood_rows)
    for split, (path, rows) in parts.items():
        if not path.is_file():
            run_cli(["data", "build", "--dataset", DATA_SOURCE, "--root", str(data), "--split", split,
                     "--subset", str(rows), "--seed", "0", "--no-progress", "--out", str(path)])  # fmt: skip
    if not evaluation.is_file():
        tables = [pq.read_table(parts[split][0]) for split in SPLITS]
        pq.write_table(pa.concat_tables(tables), evaluation.with_suffix(".tmp"))
        evaluation.with_suffix(".tmp").rename(evaluation)
    return train, evaluation


def policy_tag(policy: Path) -> str:
    """A short digest of the policy's weights: runs of another policy never mix into one table."""
    import hashlib

    digest = hashlib.sha256()
    for weights in sorted(policy.glob("*.safetensors")):
        digest.update(weights.read_bytes())
    return digest.hexdigest()[:8]


def class_infos(parquet: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(parquet, columns=["reward_model", "extra_info"]).to_pylist()
    return {row["reward_model"]["ground_truth"]: row["extra_info"] for row in rows}


@dataclass(frozen=True)
class Run:
    reward: str
    seed: int
    out: Path

    @property
    def name(self) -> str:
        return f"{self.reward}_s{self.seed}"


def run_dumps(run: Run) -> dict[int, Path]:
    """Validation dumps of a run by step."""
    return {int(p.stem): p for p in (run.out / "val").glob("*.jsonl")}


def train_run(run: Run, policy: Path, train: Path, evaluation: Path, settings: Settings) -> float | None:
    """Run the CPU recipe for one (reward, seed); returns its wall time, None when it had already finished."""
    if settings.steps in run_dumps(run) and 0 in run_dumps(run):
        return None
    if run.out.exists():
        shutil.rmtree(run.out)  # an unfinished run: start it again from step 0
    data = run.out / "data"
    data.mkdir(parents=True)
    # the recipe builds OUT/data/synthetic_shapes_{train,val}_<rows>.parquet when missing: hand it the shared ones
    (data / f"synthetic_shapes_train_{settings.train_rows}.parquet").symlink_to(train)
    (data / f"synthetic_shapes_val_{settings.eval_rows}.parquet").symlink_to(evaluation)
    command = [
        "bash", str(RECIPE), "--out", str(run.out), "--steps", str(settings.steps), "--config", REWARDS[run.reward],
        "--policy", str(policy), "--python", sys.executable, "--train-rows", str(settings.train_rows),
        "--val-rows", str(settings.eval_rows), "--timeout", str(settings.run_timeout_s), "--",
        f"data.seed={run.seed}",
        f"data.train_batch_size={settings.batch_prompts}",
        f"actor_rollout_ref.rollout.n={settings.group_n}",
        f"actor_rollout_ref.actor.optim.lr={settings.lr}",
        "trainer.val_before_train=true",
        f"trainer.validation_data_dir={run.out / 'val'}",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=true",
        f"actor_rollout_ref.rollout.val_kwargs.temperature={settings.val_temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.n={settings.val_n}",
    ]  # fmt: skip
    started = time.perf_counter()
    with (run.out / "miniature_run.log").open("w") as log:
        result = subprocess.run(
            command, env=child_env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            timeout=settings.run_timeout_s + 180,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join((run.out / "miniature_run.log").read_text().splitlines()[-40:])
        raise RuntimeError(f"run {run.name} failed (exit {result.returncode}); log {run.out}/train.log:\n{tail}")
    missing = {0, settings.steps} - run_dumps(run).keys()
    if missing:
        raise RuntimeError(f"run {run.name} wrote no validation dump for step(s) {sorted(missing)} under {run.out}/val")
    return seconds


# ---------------------------------------------------------------------------------------------
# evaluation


def jsonl_rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


def write_jsonl(path: Path, rows: Iterable[Mapping]) -> None:
    write_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))


def judge_arm(eval_dir: Path, arm: str, dumps: Sequence[tuple[str, Path]], classes, val_n: int) -> dict[str, Path]:
    """Judge the dumps of one arm (a trained run's last step, or a seed's pooled step-0 dumps); verdicts by split."""
    predictions: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for prefix, dump in dumps:
        for split, rows in predictions_from_dump(jsonl_rows(dump), classes, val_n, prefix).items():
            predictions[split] += rows
    merged = eval_dir / f"{arm}.predictions.jsonl"
    write_jsonl(merged, (row for split in SPLITS for row in predictions[split]))
    verdicts = eval_dir / f"{arm}.verdicts.jsonl"
    verdicts.unlink(missing_ok=True)  # judge resumes an existing file: judge afresh
    run_cli(["eval", "judge", "--predictions", str(merged), "--out", str(verdicts), "--judge", "offline",
             "--no-progress"], log=eval_dir / f"{arm}.judge.log")  # fmt: skip
    by_key = {(row["sample_id"], row["prediction_index"]): row for row in jsonl_rows(verdicts)}
    out = {}
    for split in SPLITS:
        out[split] = eval_dir / f"{arm}.{split}.verdicts.jsonl"
        write_jsonl(out[split], (by_key[(row["sample_id"], row["prediction_index"])] for row in predictions[split]))
    return out


def evaluate(work: Path, runs: Sequence[Run], classes, settings: Settings) -> dict:
    """Judge every arm, run one ``speciarl eval report`` over them; per-arm, per-seed, per-split metrics."""
    eval_dir = work / "eval"
    if eval_dir.exists():
        shutil.rmtree(eval_dir)
    eval_dir.mkdir(parents=True)
    arms: dict[str, dict[str, Path]] = {}
    for seed in settings.seeds:
        seed_runs = [run for run in runs if run.seed == seed]
        arms[f"start_s{seed}"] = judge_arm(
            eval_dir,
            f"start_s{seed}",
            [(f"{r.name}/step0", run_dumps(r)[0]) for r in seed_runs],
            classes,
            settings.val_n,
        )
        for run in seed_runs:
            last = [(f"{run.name}/step{settings.steps}", run_dumps(run)[settings.steps])]
            arms[run.name] = judge_arm(eval_dir, run.name, last, classes, settings.val_n)
    undecided = {"undecided": 0, "known": 0, "other": 0}
    report_args = ["eval", "report", "--out", str(eval_dir / "report"), "--train-domain", DATA_SOURCE,
                   "--undecided", "wrong", "--bootstrap", "0", "--no-plots"]  # fmt: skip
    for arm, files in arms.items():
        for split, path in files.items():
            for key, count in undecided_breakdown(jsonl_rows(path)).items():
                undecided[key] += count
            report_args += ["--verdicts", str(path), "--name", f"{arm}/{split}"]
    run_cli(report_args, log=eval_dir / "report.log")
    report = json.loads((eval_dir / "report" / "report.json").read_text())
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for arm in ("start", *REWARDS):
        results[arm] = {}
        for split in SPLITS:
            metrics: dict[str, list[float]] = defaultdict(list)
            for seed in settings.seeds:
                source = report["runs"][f"{arm}_s{seed}/{split}"]["per_source"][DATA_SOURCE]
                for name in ("correctness", "specificity", "hm"):
                    metrics[name].append(float(source[name]))
                metrics["unparseable"].append(float(source["unparseable_rate"]["first"]))
            results[arm][split] = dict(metrics)
    return {"metrics": results, "undecided": undecided, "report": str(eval_dir / "report" / "report.md")}


# ---------------------------------------------------------------------------------------------
# table and plots

_ARM_COLOURS = {"start": "black", "speciarl": "tab:green", "binary": "tab:blue", "greedy": "tab:red"}


def table_markdown(metrics: Mapping, settings: Settings) -> str:
    lines = []
    for split in SPLITS:
        title = "in-domain test" if split == "test" else "out-of-domain test (held-out colour/shape pairs)"
        lines += [f"{title}, {len(settings.seeds)} seed(s), mean ± std over seeds:", "",
                  "| arm | correctness | specificity | HM | unparseable |", "|---|---|---|---|---|"]  # fmt: skip
        for arm in ("start", *REWARDS):
            names = ("correctness", "specificity", "hm", "unparseable")
            cells = [format_cell(metrics[arm][split][name]) for name in names]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_points(metrics: Mapping, path: Path, settings: Settings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, len(SPLITS), figsize=(11, 5), sharey=True)
    grid = np.linspace(0.001, 1, 300)
    corr, spec = np.meshgrid(grid, grid)
    level = 2 * corr * spec / (corr + spec)
    for ax, split in zip(axes, SPLITS, strict=True):
        lines = ax.contour(corr, spec, level, levels=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], colors="0.8",
                           linewidths=0.8)  # fmt: skip
        ax.clabel(lines, fmt="HM %.1f", fontsize=7)
        for arm in ("start", *REWARDS):
            values = metrics[arm][split]
            c, s = values["correctness"], values["specificity"]
            ax.scatter(c, s, color=_ARM_COLOURS[arm], alpha=0.45, s=25)
            ax.scatter([statistics.fmean(c)], [statistics.fmean(s)], color=_ARM_COLOURS[arm], s=110,
                       marker="*" if arm == "start" else "o", edgecolors="black", label=arm)  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("correctness")
        ax.set_title("in-domain test" if split == "test" else "out-of-domain test")
        ax.grid(alpha=0.2)
    axes[0].set_ylabel("specificity")
    axes[0].legend(loc="upper right")
    figure.suptitle(
        f"tiny Qwen2.5-VL, synthetic shapes, {settings.steps} GRPO steps x {settings.batch_prompts} prompts x "
        f"n={settings.group_n}, lr {settings.lr:g}; small dots: seeds, large: mean"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_curves(curves: Mapping[str, Mapping[int, Mapping[str, float]]], runs: Sequence[Run], path: Path) -> None:
    """The figure of ``speciarl eval curves`` with one line per run, coloured by reward."""
    lines = [
        RunCurve(curves[run.name], _ARM_COLOURS[run.reward], run.reward if run.seed == runs[0].seed else None)
        for run in runs
    ]
    plot_runs(lines, path, "training rollouts per step (verl metrics.jsonl), one line per run")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"one seed, {QUICK.steps} steps, smaller sets")
    parser.add_argument("--seeds", help="comma-separated data seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--steps", type=int, help="GRPO steps of every run")
    parser.add_argument("--lr", type=float, help="actor learning rate (LoRA)")
    parser.add_argument("--group-n", type=int, help="rollouts per prompt")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "miniature", help="working folder")
    parser.add_argument("--policy", type=Path, help="another tiny policy folder (default: the shipped one)")
    parser.add_argument("--plot-out", type=Path, help="also copy the two plots to this folder (e.g. docs/)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else Settings()
    if args.seeds:
        try:
            seeds = tuple(int(part) for part in args.seeds.split(","))
        except ValueError:
            raise SystemExit(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
        settings = replace(settings, seeds=seeds)
    for name in ("steps", "lr", "group_n"):
        if getattr(args, name) is not None:
            settings = replace(settings, **{name: getattr(args, name)})
    if settings.steps < 1 or settings.group_n < 2 or settings.lr <= 0:
        raise SystemExit(f"need --steps >= 1, --group-n >= 2, --lr > 0; got {settings}")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    work = args.work.resolve()
    # runs of other settings would mix into the table: one folder per settings
    tag = (
        f"steps{settings.steps}_b{settings.batch_prompts}_n{settings.group_n}_lr{settings.lr:g}_t{settings.train_rows}"
    )
    tag += f"_e{settings.test_rows}-{settings.ood_rows}x{settings.val_n}"
    started = time.perf_counter()
    train, evaluation = build_data(work, settings)
    policy = (args.policy or shipped_policy_dir()).resolve()
    if not (policy / "config.json").is_file():
        raise SystemExit(f"--policy {policy} holds no model (no config.json); omit it for the shipped one")
    tag += f"_p{policy_tag(policy)}"
    prepared = time.perf_counter() - started
    print(f"data and policy ready in {prepared:.0f} s (policy {policy})", flush=True)

    runs = [
        Run(reward, seed, work / "runs" / tag / f"{reward}_s{seed}") for seed in settings.seeds for reward in REWARDS
    ]
    timings: dict[str, float] = {}
    for run in runs:
        print(f"training {run.name} ({REWARDS[run.reward]}, {settings.steps} steps) ...", flush=True)
        seconds = train_run(run, policy, train, evaluation, settings)
        if seconds is None:
            print(f"  {run.name}: already finished in {run.out}, kept", flush=True)
            continue
        timings[run.name] = seconds
        curve = step_curves(run.out / "metrics.jsonl")
        in_steps = sum(row["step_s"] for row in curve.values())
        print(
            f"  {run.name}: {seconds:.0f} s wall, {in_steps:.0f} s inside the {len(curve)} training steps", flush=True
        )

    evaluated = evaluate(work, runs, class_infos(evaluation), settings)
    metrics = evaluated["metrics"]
    curves = {run.name: step_curves(run.out / "metrics.jsonl") for run in runs}
    table = table_markdown(metrics, settings)
    (work / "table.md").write_text(table)
    plot_points(metrics, work / "miniature.png", settings)
    plot_curves(curves, runs, work / "miniature_curves.png")
    if args.plot_out is not None:
        args.plot_out.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "miniature.png", args.plot_out / "miniature.png")
        shutil.copy(work / "miniature_curves.png", args.plot_out / "miniature_curves.png")
    total = time.perf_counter() - started
    summary = {
        "settings": asdict(settings),
        "policy": str(policy),
        "metrics": metrics,
        "undecided": evaluated["undecided"],
        "run_seconds": timings,
        "total_seconds": total,
        "curves": curves,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    print()
    print(table)
    print("per-step curves (reward mean | share specific | share wrong), first -> last step:")
    for run in runs:
        first, last = curves[run.name][min(curves[run.name])], curves[run.name][max(curves[run.name])]
        print(
            f"  {run.name:12s} reward {first['reward']:+.2f} -> {last['reward']:+.2f} | specific "
            f"{first['specific']:.2f} -> {last['specific']:.2f} | wrong {first['wrong']:.2f} -> {last['wrong']:.2f}"
        )
    u = evaluated["undecided"]
    print(f"offline judge: {u['undecided']} undecided answers over all arms ({u['known']} name another class, family "
          f"or domain noun of the task, {u['other']} name nothing in it); counted as wrong")  # fmt: skip
    if timings:
        print(f"training runs: {len(timings)} in {sum(timings.values()):.0f} s "
              f"({statistics.fmean(timings.values()):.0f} s each on average)")  # fmt: skip
    print(f"total {total:.0f} s; table {work / 'table.md'}, plots {work / 'miniature.png'}, "
          f"{work / 'miniature_curves.png'}, report {evaluated['report']}")  # fmt: skip
    in_domain = {arm: metrics[arm]["test"] for arm in metrics}
    print(result_line(in_domain, len(settings.seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
