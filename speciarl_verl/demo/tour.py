"""``make demo``: the CPU tour of SpeciaRL on verl 0.9.1.

1. data: a tiny dataset in CUB-200-2011's layout -> parquet -> verl's dataset and a tiny
   offline Qwen2.5-VL processor (the prompt and its image tokens);
2. reward: recorded rollouts (6 images x 8 answers) through verl's reward loop on Ray and
   SpeciaRL's group stage on TransferQueue, GRPO advantages from verl's ``core_algos``;
3. recipe: the dry run of the GPU recipe (the commands it would run on a GPU node);
4. report: recorded predictions -> offline judge -> correctness, specificity and HM;
5. train: SpeciaRL trains for 3 steps through verl's own ``main_ppo`` on the CPU (tiny
   supervised policy, ``hf_cpu`` rollout, FSDP2 LoRA actor): reward, categories and losses per step.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["STEPS", "add_arguments", "main", "run", "selected_steps"]

STEPS = ("data", "reward", "recipe", "report", "train")
#: What runs without --steps: everything (``--steps data,reward,recipe,report`` skips the few minutes of training).
DEFAULT_STEPS = STEPS
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "run_speciarl_qwen25vl.sh"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The tour's options, shared by ``python -m speciarl_verl.demo`` and ``speciarl demo``."""
    parser.add_argument(
        "--steps",
        default=",".join(DEFAULT_STEPS),
        help=f"comma-separated subset of {','.join(STEPS)} (default {','.join(DEFAULT_STEPS)})",
    )
    parser.add_argument("--rollouts", help="recorded rollouts JSONL (default: the file shipped with the package)")
    parser.add_argument("--workers", type=int, default=2, help="RewardLoopWorker actors (reward.num_workers)")
    parser.add_argument("--workdir", type=Path, help="where files are written (default: a new temporary folder)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the reward step")


def selected_steps(text: str) -> list[str]:
    """``"data,report"`` -> ``["data", "report"]``; ``ValueError`` names an unknown step.

    >>> selected_steps("report, data")
    ['report', 'data']
    """
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speciarl_verl.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        steps = selected_steps(args.steps)
    except ValueError as error:
        parser.error(str(error))
    return run(args, steps)


def run(args: argparse.Namespace, steps: Sequence[str]) -> int:
    """The tour's ``steps`` with the options :func:`add_arguments` defines."""
    from rich.console import Console
    from rich.rule import Rule

    _quiet_library_noise()
    console = Console()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="speciarl-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    if "data" in steps:
        console.print(Rule("1. data: CUB layout -> parquet -> verl dataset -> Qwen2.5-VL processor"))
        from speciarl_verl.demo.data_step import run_data_step

        with console.status("building a tiny dataset and a tiny Qwen2.5-VL processor..."):
            result = run_data_step(work)
        _print_data_step(console, result)

    if "reward" in steps:
        console.print(Rule("2. reward: verl reward loop + SpeciaRL group stage"))
        from speciarl_verl.demo.reward_step import print_reward_step, run_reward_step
        from speciarl_verl.offline_fixtures.local_cluster import start_local_cluster, stop_local_cluster

        with console.status("starting Ray, TransferQueue and the reward loop...") as status:
            start_local_cluster()
            try:
                outcome = run_reward_step(args.rollouts, args.workers, args.overrides, status)
            finally:
                stop_local_cluster()
        print_reward_step(console, *outcome)

    if "recipe" in steps:
        console.print(Rule("3. recipe: what the GPU command would run (dry run)"))
        _print_recipe_dry_run(console)

    if "report" in steps:
        console.print(Rule("4. report: recorded predictions -> offline judge -> metrics"))
        from speciarl_verl.evaluation import report_tour

        with console.status("judging recorded predictions and writing the report..."):
            report = report_tour(work / "evaluation")
        _print_report(console, report)

    if "train" in steps:
        console.print(Rule("5. train: verl main_ppo on the CPU (tiny policy, hf_cpu rollout, LoRA actor)"))
        from speciarl_verl.demo.train_step import print_evaluation_commands, print_train_step, run_train_step

        with console.status("3 GRPO steps from the shipped tiny policy through verl's trainer (a few minutes)..."):
            trained = run_train_step(work, steps=3)
        print_train_step(console, trained)
        print_evaluation_commands(console, trained)

    console.print(f"[dim]files in {work}; done in {time.perf_counter() - started:.1f} s[/dim]")
    return 0


def _quiet_library_noise() -> None:
    """verl warns at import about missing accelerators and optional engines; the demo knows."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"verl\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"verl\..*")
    for name in ("verl", "verl.plugin.platform.platform_manager"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    import datasets

    datasets.disable_progress_bars()


def _print_data_step(console, result) -> None:
    from speciarl_verl.demo.tables import data_table

    sources = ", ".join(dict.fromkeys(row["data_source"] for row in result.rows))
    title = f"{result.parquet.name}: {len(result.rows)} {sources} rows (tiny CUB layout, train)"
    console.print(data_table(title, result.rows))
    console.print("[bold]chat-templated prompt of row 0[/bold] (verl applies the template in its agent loop):")
    console.print(result.prompt_text, markup=False, highlight=False)
    width, height = result.image_size
    console.print(
        f"image resized to {width}x{height} by the agent-loop image path; grid (t, h, w) = {result.image_grid} "
        f"patches -> {result.image_tokens} <|image_pad|> tokens; prompt = {result.prompt_tokens} tokens"
    )


def _print_recipe_dry_run(console) -> None:
    if not RECIPE.exists():
        console.print(f"[yellow]no recipe at {RECIPE} (the recipes ship with the repository, not the wheel)[/yellow]")
        return
    # this interpreter runs the recipe's preflight (the default `python3` may not have the package)
    command = ["bash", str(RECIPE), "--dry-run", "--python", sys.executable]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    console.print(f"$ {' '.join(command[1:])}", markup=False, highlight=False, soft_wrap=True)
    # command lines are not wrapped: they stay whole to copy, whatever the terminal width
    console.print(result.stdout.rstrip(), markup=False, highlight=False, soft_wrap=True)
    if result.returncode != 0:
        console.print(f"[red]dry run exited with {result.returncode}:[/red]")
        console.print(result.stderr.rstrip(), markup=False, highlight=False)


def _print_report(console, report_md: Path, max_lines: int = 40) -> None:
    lines = report_md.read_text(encoding="utf-8").splitlines()
    console.print(f"[bold]{report_md}[/bold] (first {min(max_lines, len(lines))} of {len(lines)} lines):")
    # markdown as written: a table row cut at the console width would no longer be a row
    console.print("\n".join(lines[:max_lines]), markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    raise SystemExit(main())
