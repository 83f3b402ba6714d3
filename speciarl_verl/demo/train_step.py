"""Demo step: SpeciaRL trains for a few steps through verl's own trainer on the CPU.

Runs ``recipes/run_speciarl_tiny_cpu.sh`` (synthetic shapes data, the shipped tiny
supervised policy, the offline judge, ``main_ppo`` with the ``hf_cpu`` rollout and one FSDP2
LoRA worker) and reads back what verl logged per step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TrainStep",
    "evaluation_commands",
    "print_evaluation_commands",
    "print_train_step",
    "read_step_metrics",
    "recipe_script",
    "run_train_step",
]


@dataclass(frozen=True)
class TrainStep:
    out: Path
    seconds: float
    steps: dict[int, dict[str, float]]


def recipe_script() -> Path:
    """The CPU recipe script of the source tree this package runs from (``make demo`` runs in a clone)."""
    script = Path(__file__).resolve().parents[2] / "recipes" / "run_speciarl_tiny_cpu.sh"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: the train step runs from a clone of the repository")
    return script


def read_step_metrics(metrics_file: Path) -> dict[int, dict[str, float]]:
    """verl's file-logger lines (``{"step": n, "data": {...}}``) merged by step.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> _ = f.write_text('{"step": 1, "data": {"a": 1.0}}\\n{"step": 1, "data": {"b": 2.0}}\\n')
    >>> read_step_metrics(f)
    {1: {'a': 1.0, 'b': 2.0}}
    """
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for line in metrics_file.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            steps[int(record["step"])].update(record["data"])
    return dict(sorted(steps.items()))


def run_train_step(work: Path, steps: int = 3, timeout_s: int = 900) -> TrainStep:
    """Run the CPU recipe for ``steps`` steps under ``work/train``, from the shipped tiny policy."""
    import time

    out = work / "train"
    started = time.perf_counter()
    command = [
        "bash", str(recipe_script()), "--out", str(out), "--steps", str(steps),
        "--python", sys.executable, "--timeout", str(timeout_s),
    ]  # fmt: skip
    log = out / "demo_train.log"
    out.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        result = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout_s + 120)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"the CPU recipe failed (exit {result.returncode}); log {log}:\n{tail}")
    return TrainStep(out, time.perf_counter() - started, read_step_metrics(out / "metrics.jsonl"))


def evaluation_commands(out: Path, step: int) -> list[str]:
    """The commands that evaluate the checkpoint of ``step`` in run folder ``out`` on the in-domain test
    split, from the parquet to ``report.md`` and the training curves (README, "After training").

    >>> evaluation_commands(Path("/w/train"), 3)[1].split(" --")[:2]
    ['speciarl eval predict', 'checkpoint /w/train/checkpoints/global_step_3']
    """
    test, evaluation = out / "data" / "shapes_test.parquet", out / "eval"
    return [
        f"speciarl data build --dataset synthetic_shapes --root . --source raw --split test --subset 48 --seed 0 "
        f"--out {test}",
        f"speciarl eval predict --checkpoint {out / 'checkpoints' / f'global_step_{step}'} --data {test} "
        f"--out {evaluation / 'preds.jsonl'} --backend hf",
        f"speciarl eval judge --judge offline --predictions {evaluation / 'preds.jsonl'} "
        f"--out {evaluation / 'verdicts.jsonl'}",
        f"speciarl eval report --verdicts {evaluation / 'verdicts.jsonl'} --out {evaluation / 'report'} "
        "--train-domain synthetic_shapes",
        f"speciarl eval curves --metrics {out / 'metrics.jsonl'} --out {evaluation / 'curves'}",
    ]


def print_train_step(console, result: TrainStep) -> None:
    """The per-step metrics verl logged: one row per metric, one column per step, a legend under it."""
    from speciarl_verl.demo.tables import TRAIN_LEGEND, train_tables

    title = f"verl main_ppo on CPU: {len(result.steps)} steps in {result.seconds:.0f} s"
    for table in train_tables(result.steps, title, width=console.width):
        console.print(table)
    console.print(f"[dim]{TRAIN_LEGEND}[/dim]")
    console.print(f"[dim]run folder (metrics.jsonl, checkpoints/, train.log): {result.out}[/dim]")


def print_evaluation_commands(console, result: TrainStep) -> None:
    """The commands that evaluate the checkpoint the run just made, one whole line each (to copy)."""
    if result.steps:
        console.print(
            "[bold]evaluate the checkpoint it just made[/bold] (in the activated .venv; README, After training):"
        )
        # whole lines, never wrapped: they are copied as they are
        commands = evaluation_commands(result.out, max(result.steps))
        console.print("\n".join(commands), markup=False, highlight=False, soft_wrap=True)
