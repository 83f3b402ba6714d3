"""The method in miniature: SpeciaRL's dynamic reward against a binary and a specificity-greedy one, on the CPU.

A shipped tiny generic-leaning Qwen2.5-VL policy (:mod:`speciarl_verl.cpu_debug.tiny_policy`) is trained by
verl's own ``main_ppo`` (``recipes/run_speciarl_tiny_cpu.sh``, ``+cpu_debug=tiny_cpu``) on a drawn task under
three rewards, same seeds, same steps, same data, same hyperparameters:

* ``speciarl``: the dynamic group reward (config ``speciarl_grpo``);
* ``binary``: 1 for the exact label or finer, 0 otherwise (config ``speciarl_grpo_reward3``);
* ``greedy``: the static table ``scala3`` (config ``speciarl_grpo_scala3``): of the three graded tables it
  is the only one that pays a safe generic answer or an abstention no more than a wrong guess (0), so
  naming a species never loses against playing safe; ``scala1`` pays 0.5 / 0.25 for generic / abstain
  and so rewards safety.

Two tasks (``--task``): ``shapes`` (:mod:`~speciarl_verl.data.adapters.synthetic_shapes`, every image shows
its species; the control) and ``hidden`` (:mod:`~speciarl_verl.data.adapters.synthetic_hidden`, the species
clear, faint or hidden; the task of the hypotheses pre-registered in docs/notes.md), each with its own
shipped policy.

Nothing is loaded back from checkpoints: every run validates before training and after its last step on
a held-out test set (in-domain ``test`` rows plus held-out colour/shape pairs of ``test_ood``), sampling
at the training temperature, and verl dumps those generations (``trainer.validation_data_dir``). The
dumps become predictions JSONL, judged by ``speciarl eval judge --judge offline`` (exact here: the whole
hierarchy is known) and scored by ``speciarl eval report`` (:mod:`miniature_eval`), by split and, for
``hidden``, by visibility. Pairs the rule tier leaves undecided are counted and checked: on these tasks
each is a wrong colour or a wrong shape, so the report counts them as wrong (``--undecided wrong``). The
start point of a seed pools the step-0 validations of its runs.

Outputs under ``--work`` (default ``outputs/miniature`` or ``outputs/miniature_hidden``): ``table.md``,
``summary.json``, ``miniature.png`` (specificity vs correctness, HM isolines), ``miniature_curves.png``
(reward mean and verdict shares per step, from verl's ``metrics.jsonl``). The last line printed is::

    RESULT hm_start=<a> hm_speciarl=<b> hm_binary=<c> hm_greedy=<d> corr_drop_speciarl=<e> seeds=<n>   # shapes
    RESULT hm_start=<a> hm_speciarl=<b> hm_binary=<c> hm_greedy=<d> corr_hidden_start=<e> corr_hidden_speciarl=<f>
        corr_hidden_binary=<g> ood_hm_speciarl=<h> ood_hm_binary=<i> seeds=<n>                              # hidden

(in-domain test unless named; means over seeds; ``corr_drop`` is start correctness minus trained
correctness; ``corr_hidden`` the correctness on hidden-species images; one line in the output).

    python benchmarks/miniature.py --quick                     # shapes, one seed, few steps
    python benchmarks/miniature.py --task hidden --quick       # graded visibility, one seed
    python benchmarks/miniature.py --task hidden               # the pre-registered run (3 seeds)
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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling miniature_eval, also when loaded by path

from miniature_eval import (
    ARM_COLOURS,
    SPLITS,
    cli_runner,
    evaluate,
    hypotheses,
    plot_points,
    result_line_hidden,
    result_line_shapes,
    table_markdown,
)

from speciarl_verl.cpu_debug.tiny_policy import shipped_policy_dir, weights_digest
from speciarl_verl.evaluation.curves import RunCurve, plot_runs
from speciarl_verl.evaluation.curves import step_curves as read_step_curves

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "run_speciarl_tiny_cpu.sh"
#: Reward name -> shipped config. Order is the table's.
REWARDS: dict[str, str] = {
    "speciarl": "speciarl_grpo",
    "binary": "speciarl_grpo_reward3",
    "greedy": "speciarl_grpo_scala3",
}
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
class Task:
    """A drawn task: its dataset, its shipped policy (``--task`` of the tiny recipe) and the parts it reports."""

    name: str
    data_source: str
    parts: tuple[str, ...]
    #: Parts drawn in the plot, one panel each.
    plot_parts: tuple[str, ...]


TASKS: dict[str, Task] = {
    "shapes": Task("shapes", "synthetic_shapes", SPLITS, SPLITS),
    "hidden": Task(
        "hidden",
        "synthetic_shapes_hidden",
        tuple(f"{split}{suffix}" for split in SPLITS for suffix in ("", "/clear", "/faint", "/hidden")),
        ("test", "test/hidden", "test_ood"),
    ),
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


#: Per task: (the full run's settings, --quick's). The hidden task's full run is the one pre-registered in
#: docs/notes.md: its whole test split (28 classes x 4 images: 56 clear, 28 faint, 28 hidden) and its whole
#: test_ood split (4 classes x 8 images: 8 clear, 8 faint, 16 hidden).
SETTINGS: dict[str, tuple[Settings, Settings]] = {
    "shapes": (Settings(), Settings(seeds=(0,), steps=8, train_rows=64, test_rows=48, ood_rows=16)),
    "hidden": (
        Settings(test_rows=112, ood_rows=32),
        Settings(seeds=(0,), steps=8, train_rows=64, test_rows=48, ood_rows=16),
    ),
}
QUICK = SETTINGS["shapes"][1]


# ---------------------------------------------------------------------------------------------
# the runs


def step_curves(metrics_file: Path) -> dict[int, dict[str, float]]:
    """Training steps of verl's file-logger output (:func:`speciarl_verl.evaluation.curves.step_curves`,
    what ``speciarl eval curves`` reads), with the reward mean also under ``reward``."""
    return {step: {**row, "reward": row["reward_mean"]} for step, row in read_step_curves(metrics_file).items()}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in _OFFLINE_ENV.items():
        env.setdefault(key, value)
    env.setdefault("RAY_raylet_start_wait_time_s", "180")
    return env


def run_cli(args: Sequence[str], log: Path | None = None) -> None:
    cli_runner(REPO, child_env())(args, log=log)


def build_data(work: Path, settings: Settings, task: Task) -> tuple[Path, Path]:
    """(train parquet, evaluation parquet = test rows + test_ood rows) under ``work/data``, built once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    name = task.data_source
    train = data / f"{name}_train_{settings.train_rows}.parquet"
    evaluation = data / f"{name}_eval_{settings.test_rows}_{settings.ood_rows}.parquet"
    parts = {"train": (train, settings.train_rows)}
    if not evaluation.is_file():
        parts["test"] = (data / f"{name}_test_{settings.test_rows}.parquet", settings.test_rows)
        parts["test_ood"] = (data / f"{name}_test_ood_{settings.ood_rows}.parquet", settings.ood_rows)
    for split, (path, rows) in parts.items():
        if not path.is_file():
            run_cli(["data", "build", "--dataset", name, "--root", str(data), "--split", split,
                     "--subset", str(rows), "--seed", "0", "--no-progress", "--out", str(path)])  # fmt: skip
    if not evaluation.is_file():
        tables = [pq.read_table(parts[split][0]) for split in SPLITS]
        pq.write_table(pa.concat_tables(tables), evaluation.with_suffix(".tmp"))
        evaluation.with_suffix(".tmp").rename(evaluation)
    return train, evaluation


def policy_tag(policy: Path) -> str:
    """A short digest of the policy's weights: runs of another policy never mix into one table."""
    return weights_digest(policy)[:8]


def eval_rows(parquet: Path) -> list[dict]:
    """The evaluation parquet's rows without their images, in file order (the order verl validates them in)."""
    import pyarrow.parquet as pq

    return pq.read_table(parquet, columns=["data_source", "reward_model", "extra_info"]).to_pylist()


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


def train_run(run: Run, policy: Path, train: Path, evaluation: Path, settings: Settings, task: Task) -> float | None:
    """Run the CPU recipe for one (reward, seed); returns its wall time, None when it had already finished."""
    if settings.steps in run_dumps(run) and 0 in run_dumps(run):
        return None
    if run.out.exists():
        shutil.rmtree(run.out)  # an unfinished run: start it again from step 0
    data = run.out / "data"
    data.mkdir(parents=True)
    # the recipe builds OUT/data/<dataset>_{train,val}_<rows>.parquet when missing: hand it the shared ones
    (data / f"{task.data_source}_train_{settings.train_rows}.parquet").symlink_to(train)
    (data / f"{task.data_source}_val_{settings.eval_rows}.parquet").symlink_to(evaluation)
    command = [
        "bash", str(RECIPE), "--out", str(run.out), "--steps", str(settings.steps), "--config", REWARDS[run.reward],
        "--task", task.name,
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
# plots


def plot_curves(curves: Mapping[str, Mapping[int, Mapping[str, float]]], runs: Sequence[Run], path: Path) -> None:
    """The figure of ``speciarl eval curves`` with one line per run, coloured by reward."""
    lines = [
        RunCurve(curves[run.name], ARM_COLOURS[run.reward], run.reward if run.seed == runs[0].seed else None)
        for run in runs
    ]
    plot_runs(lines, path, "training rollouts per step (verl metrics.jsonl), one line per run")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--task",
        choices=sorted(TASKS),
        default="shapes",
        help="shapes (every image shows its species; default) or hidden (graded species visibility)",
    )
    parser.add_argument("--quick", action="store_true", help=f"one seed, {QUICK.steps} steps, smaller sets")
    parser.add_argument("--seeds", help="comma-separated data seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--steps", type=int, help="GRPO steps of every run")
    parser.add_argument("--lr", type=float, help="actor learning rate (LoRA)")
    parser.add_argument("--group-n", type=int, help="rollouts per prompt")
    parser.add_argument("--work", type=Path, help="working folder (default outputs/miniature[_hidden])")
    parser.add_argument("--policy", type=Path, help="another tiny policy folder (default: the task's shipped one)")
    parser.add_argument("--plot-out", type=Path, help="also copy the two plots to this folder (e.g. docs/)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = SETTINGS[args.task][1 if args.quick else 0]
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
    task = TASKS[args.task]
    settings = settings_from(args)
    default_work = "miniature" if task.name == "shapes" else f"miniature_{task.name}"
    work = (args.work or REPO / "outputs" / default_work).resolve()
    # runs of other settings would mix into the table: one folder per settings
    tag = (
        f"steps{settings.steps}_b{settings.batch_prompts}_n{settings.group_n}_lr{settings.lr:g}_t{settings.train_rows}"
    )
    tag += f"_e{settings.test_rows}-{settings.ood_rows}x{settings.val_n}"
    started = time.perf_counter()
    train, evaluation = build_data(work, settings, task)
    policy = (args.policy or shipped_policy_dir(task.name)).resolve()
    if not (policy / "config.json").is_file():
        raise SystemExit(f"--policy {policy} holds no model (no config.json); omit it for the shipped one")
    tag += f"_p{policy_tag(policy)}"
    prepared = time.perf_counter() - started
    print(f"task {task.name} ({task.data_source}); data and policy ready in {prepared:.0f} s (policy {policy})",
          flush=True)  # fmt: skip

    runs = [
        Run(reward, seed, work / "runs" / tag / f"{reward}_s{seed}") for seed in settings.seeds for reward in REWARDS
    ]
    timings: dict[str, float] = {}
    for run in runs:
        print(f"training {run.name} ({REWARDS[run.reward]}, {settings.steps} steps) ...", flush=True)
        seconds = train_run(run, policy, train, evaluation, settings, task)
        if seconds is None:
            print(f"  {run.name}: already finished in {run.out}, kept", flush=True)
            continue
        timings[run.name] = seconds
        curve = step_curves(run.out / "metrics.jsonl")
        in_steps = sum(row["step_s"] for row in curve.values())
        print(
            f"  {run.name}: {seconds:.0f} s wall, {in_steps:.0f} s inside the {len(curve)} training steps", flush=True
        )

    evaluated = evaluate(work, runs, run_dumps, eval_rows(evaluation), settings, task.data_source, run_cli)
    metrics = evaluated["metrics"]
    curves = {run.name: step_curves(run.out / "metrics.jsonl") for run in runs}
    table = table_markdown(metrics, task.parts, len(settings.seeds))
    (work / "table.md").write_text(table)
    title = (
        f"tiny Qwen2.5-VL, {task.data_source}, {settings.steps} GRPO steps x {settings.batch_prompts} prompts x "
        f"n={settings.group_n}, lr {settings.lr:g}; small dots: seeds, large: mean"
    )
    plot_points(metrics, task.plot_parts, work / "miniature.png", title)
    plot_curves(curves, runs, work / "miniature_curves.png")
    if args.plot_out is not None:
        args.plot_out.mkdir(parents=True, exist_ok=True)
        stem = default_work
        shutil.copy(work / "miniature.png", args.plot_out / f"{stem}.png")
        shutil.copy(work / "miniature_curves.png", args.plot_out / f"{stem}_curves.png")
    total = time.perf_counter() - started
    summary = {
        "task": task.name,
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
    if task.name == "hidden":
        print("pre-registered hypotheses (docs/notes.md), on the means over seeds:")
        for name, held, seeds_held, figures in hypotheses(metrics):
            verdict = "held" if held else "did not hold"
            print(f"  {name} {verdict} ({seeds_held} of {len(settings.seeds)} seeds): {figures}")
        print(result_line_hidden(metrics, len(settings.seeds)))
    else:
        print(result_line_shapes(metrics, len(settings.seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
