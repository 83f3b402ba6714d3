"""The demo's tables stay whole at 80 columns without a terminal (``make demo > log``).

Each table is built from what the code produces: the tiny CUB layout through our builder, the
shipped recorded rollouts parsed, judged by the offline judge, rewarded by the group reward with
verl's own GRPO advantages, and their step metrics; rendered the way a log gets them (80 columns,
not a terminal), no cell may be cut with rich's ellipsis.
"""

from __future__ import annotations

import asyncio
import io
import statistics

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.core.group_outcome import GroupOutcome
from speciarl_verl.core.group_reward import group_rewards
from speciarl_verl.core.step_metrics import step_metrics
from speciarl_verl.demo.tables import AnswerRow, answer_table, data_table, metric_table, train_tables
from speciarl_verl.demo.train_step import TrainStep, print_evaluation_commands, print_train_step
from speciarl_verl.judge.settings import JudgeSettings
from speciarl_verl.judge.verifier import VerificationRequest
from speciarl_verl.offline_fixtures.recorded_rollouts import load_recorded_groups

ELLIPSIS = "…"


def render(*renderables, width: int = 80) -> str:
    """What a log gets: no terminal, ``width`` columns."""
    sink = io.StringIO()
    console = Console(file=sink, width=width, force_terminal=False, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return sink.getvalue()


def assert_whole(text: str, width: int = 80) -> None:
    lines = text.splitlines()
    assert all(ELLIPSIS not in line for line in lines), "\n".join(line for line in lines if ELLIPSIS in line)
    assert max(len(line) for line in lines) <= width


@pytest.fixture(scope="module")
def scored_groups():
    """The recorded rollouts as the demo's reward step scores them: first-block parsing, the offline judge
    (an undecided pair counts as wrong, its source ``deferred``), the group reward, verl's GRPO advantages."""
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    verifier = JudgeSettings.from_mapping({"kind": "offline"}).build_verifier()
    scored = []
    for group in load_recorded_groups():
        answers = [parse_answer(text) for text in group.responses]
        row = group.row(0)["extra_info"]
        requests = [
            VerificationRequest.for_row(group.ground_truth, a, group.data_source, row) for a in answers if a is not None
        ]
        verdicts = iter(asyncio.run(verifier.verify(requests)))
        judged = [None if a is None else next(verdicts) for a in answers]
        categories = [None if v is None else v.category for v in judged]
        rewards = group_rewards(categories)
        scores = torch.tensor([[r] for r in rewards])
        advantages, _ = compute_grpo_outcome_advantage(scores, torch.ones_like(scores), index=["g"] * len(rewards))
        rows = [
            AnswerRow(a, None if v is None else v.category.value, None if v is None else v.source, r, float(adv))
            for a, v, r, adv in zip(answers, judged, rewards, advantages[:, 0].tolist(), strict=True)
        ]
        outcome = GroupOutcome(
            group.image_id,
            tuple(categories),
            tuple(rewards),
            sources=tuple(None if v is None else v.source for v in judged),
        )
        scored.append((group, rows, outcome))
    return scored


def test_the_data_step_table_keeps_every_file_name_whole(tmp_path):
    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
    from speciarl_verl.demo.data_step import write_tiny_cub

    root = write_tiny_cub(tmp_path / "datasets")
    report = build_parquet(SourceSpec("cub200", root, "train"), tmp_path / "cub.parquet", BuildOptions(progress=False))
    rows = pq.read_table(report.parquet).to_pylist()
    title = f"{report.parquet.name}: {len(rows)} {rows[0]['data_source']} rows"
    text = render(data_table(title, rows))
    assert_whole(text)
    assert text.splitlines()[0].strip() == title
    for row in rows:  # each on one line: nothing wrapped or folded
        line = next(line for line in text.splitlines() if line.startswith(f"│ {row['extra_info']['index']} │"))
        assert f"│ {row['reward_model']['ground_truth']} " in line
        assert f"│ {row['extra_info']['source_file'].split('/')[-1]} " in line


def test_the_reward_step_tables_keep_every_answer_and_number_whole(scored_groups):
    for group, rows, _ in scored_groups:
        title = f"{group.data_source} / {group.image_id}: ground truth [bold]{group.ground_truth}[/bold]"
        text = render(answer_table(title, rows))
        assert_whole(text)
        assert f"ground truth {group.ground_truth}" in text.splitlines()[0]  # the title is never wrapped
        for row in rows:
            assert f"{row.reward:+.2f}" in text and f"{row.advantage:+.3f}" in text
            assert (row.category or "-") in text
    metrics = step_metrics([outcome for *_, outcome in scored_groups])
    text = render(metric_table("step metrics (what verl logs for this batch)", metrics))
    assert_whole(text)
    for name, value in metrics.items():
        assert any(name in line and f"{value:.3f}" in line for line in text.splitlines()), name


def train_metrics(scored_groups, steps: int) -> dict[int, dict[str, float]]:
    """Per-step metrics as verl logs them, each step over another share of the recorded groups: our step
    metrics, the mean reward as critic/score/mean, and a policy-gradient loss and its gradient norm from the
    GRPO advantages (on-policy surrogate, autograd)."""
    import torch

    logged = {}
    for step in range(1, steps + 1):
        chosen = [item for index, item in enumerate(scored_groups) if (index + step) % 3]
        outcomes = [outcome for *_, outcome in chosen]
        advantages = torch.tensor([row.advantage for _, rows, _ in chosen for row in rows])
        log_probs = torch.zeros_like(advantages, requires_grad=True)
        loss = -(advantages * torch.exp(log_probs - log_probs.detach())).mean()
        loss.backward()
        logged[step] = {
            **step_metrics(outcomes),
            "critic/score/mean": statistics.fmean(r for o in outcomes for r in o.rewards),
            "actor/pg_loss": float(loss.detach()) - step,  # moves away from 0 as steps go on: wider numbers
            "actor/grad_norm": float(log_probs.grad.norm()) * 4**step,  # from 1 to 8 digits before the point
        }
    return logged


@pytest.mark.parametrize("steps", [3, 12])
def test_the_training_table_has_one_row_per_metric_and_every_value_whole(scored_groups, steps, tmp_path):
    logged = train_metrics(scored_groups, steps)
    sink = io.StringIO()
    console = Console(file=sink, width=80, force_terminal=False, color_system=None)
    print_train_step(console, TrainStep(tmp_path, 123.4, logged))
    text = sink.getvalue()
    assert_whole(text)
    assert text.splitlines()[0].strip() == f"verl main_ppo on CPU: {steps} steps in 123 s"
    categories = {key.removeprefix("speciarl/category/") for key in logged[1] if key.startswith("speciarl/category/")}
    assert categories  # the recorded rollouts have verdicts of several categories
    lines = text.splitlines()
    for category in categories:  # one row per category, its label whole
        assert sum(line.startswith(f"│ share {category.replace('_', ' ')} ") for line in lines) == len(
            train_tables(logged, "t")
        )
    for step, row in logged.items():
        for value in (
            f"{row['critic/score/mean']:+.3f}",
            f"{row['actor/pg_loss']:+.4f}",
            f"{row['actor/grad_norm']:.4f}",
        ):
            assert value in text, (step, value)
    headers = [cell.strip() for line in lines if line.startswith("┃ step") for cell in line.split("┃")[2:-1]]
    assert headers == [str(step) for step in logged]  # every step once, in order
    assert "reward mean: critic/score/mean" in " ".join(lines)  # the legend under the table


def test_the_train_step_prints_the_commands_that_evaluate_its_checkpoint(scored_groups, tmp_path):
    from speciarl_verl.cli import build_parser

    sink = io.StringIO()
    console = Console(file=sink, width=80, force_terminal=False, color_system=None)
    print_evaluation_commands(console, TrainStep(tmp_path, 1.0, train_metrics(scored_groups, 3)))
    commands = [line for line in sink.getvalue().splitlines() if line.startswith("speciarl ")]
    predict = f"speciarl eval predict --checkpoint {tmp_path}/checkpoints/global_step_3 "
    assert [c.split(" --")[0] for c in commands] == [
        "speciarl data build", "speciarl eval predict", "speciarl eval judge", "speciarl eval report",
        "speciarl eval curves",
    ]  # fmt: skip
    assert commands[1].startswith(predict) and "--backend hf" in commands[1]  # whole, never wrapped at 80
    for command in commands:  # each parses as the CLI's own command line
        build_parser().parse_args(command.split()[1:])
