"""The demo's tables, built to stay whole at 80 columns in a log (no terminal, ``COLUMNS`` unset).

rich fits a table to the console width by wrapping cells and, for a word longer than its column,
cutting it with an ellipsis (``rew…``). Here every column folds such a word onto the next line
instead, tables keep at least the width of their title, and the per-step training table has one
row per metric and one column per step (split over several tables when the steps do not fit), with
short labels explained in a legend under it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from rich.table import Table
from rich.text import Text

from speciarl_verl.core.categories import Category

__all__ = ["TRAIN_LEGEND", "AnswerRow", "answer_table", "data_table", "fold_table", "metric_table", "train_tables"]

#: Under the training tables: what each short row label stands for.
TRAIN_LEGEND = (
    "reward mean: critic/score/mean (the group-stage rewards); share <category>: share of rollouts with that "
    "verdict (speciarl/category/*); unparseable: share without a parseable answer; zero-var groups: share of "
    "groups with no GRPO signal; pg loss, grad norm: actor/pg_loss, actor/grad_norm"
)
_CATEGORY_PREFIX = "speciarl/category/"


def fold_table(title: str, columns: Iterable[tuple[str, str]]) -> Table:
    """A table whose ``(header, justify)`` columns fold a long word instead of cutting it, and that is
    at least as wide as its title (so the title is never wrapped)."""
    plain = Text.from_markup(title).plain
    table = Table(title=title, min_width=len(plain) + 2)
    for header, justify in columns:
        table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    return table


def data_table(title: str, rows: Sequence[Mapping]) -> Table:
    """The rows of a built parquet: index, ground truth, image file and whether its bytes were kept (the
    data source goes in ``title``)."""
    columns = [("#", "right"), ("ground truth", "left"), ("image file", "left"), ("bytes", "left")]
    table = fold_table(title, columns)
    for row in rows:
        info = row["extra_info"]
        kept = "original" if not info.get("reencoded") else f"re-encoded ({info['reencoded']})"
        table.add_row(
            str(info["index"]),
            row["reward_model"]["ground_truth"],
            info["source_file"].split("/")[-1],
            kept,
        )
    return table


class AnswerRow(NamedTuple):
    """One rollout of a group as the demo shows it (``answer`` None: unparseable)."""

    answer: str | None
    category: str | None
    verdict_source: str | None
    reward: float
    advantage: float


def answer_table(title: str, rows: Sequence[AnswerRow]) -> Table:
    """A group's answers with their category, verdict source, reward and GRPO advantage."""
    columns = [("#", "right"), ("answer", "left"), ("category", "left"), ("verdict by", "left")]
    table = fold_table(title, [*columns, ("reward", "right"), ("GRPO adv.", "right")])
    for session, row in enumerate(rows):
        answer = Text(row.answer) if row.answer is not None else Text("(unparseable)", style="red")
        table.add_row(
            str(session),
            answer,
            row.category or "-",
            row.verdict_source or "-",
            f"{row.reward:+.2f}",
            f"{row.advantage:+.3f}",
        )
    return table


def metric_table(title: str, metrics: Mapping[str, float], prefix: str = "speciarl/") -> Table:
    """One row per metric whose name starts with ``prefix``, sorted by name."""
    table = fold_table(title, [("metric", "left"), ("value", "right")])
    for name in sorted(metrics):
        if name.startswith(prefix):
            table.add_row(name, f"{metrics[name]:.3f}")
    return table


def _categories(steps: Mapping[int, Mapping[str, float]]) -> list[str]:
    """The category slugs the steps logged, in the judge's order (wrong ... more specific), unknown ones last."""
    keys = {key for row in steps.values() for key in row}
    logged = {key.removeprefix(_CATEGORY_PREFIX) for key in keys if key.startswith(_CATEGORY_PREFIX)}
    known = [category.slug for category in Category if category.slug in logged]
    return known + sorted(logged - set(known))


def _train_rows(steps: Mapping[int, Mapping[str, float]]) -> list[tuple[str, str, str]]:
    """``(label, metric key, format)`` of each row of the training table."""
    rows = [("reward mean", "critic/score/mean", "{:+.3f}")]
    rows += [(f"share {slug.replace('_', ' ')}", f"{_CATEGORY_PREFIX}{slug}", "{:.2f}") for slug in _categories(steps)]
    rows += [
        ("unparseable", "speciarl/parse_failure_rate", "{:.2f}"),
        ("zero-var groups", "speciarl/groups_zero_variance", "{:.2f}"),
        ("pg loss", "actor/pg_loss", "{:+.4f}"),
        ("grad norm", "actor/grad_norm", "{:.4f}"),
    ]
    return rows


def _cell(row: Mapping[str, float], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _chunks(widths: Mapping[int, int], room: int) -> list[list[int]]:
    """The steps in order, cut into runs whose columns fit ``room`` (a column is its width + 3: padding and
    border); at least one step per run, and one empty run when there are no steps."""
    chunks: list[list[int]] = [[]]
    used = 0
    for step, column in widths.items():
        if chunks[-1] and used + column + 3 > room:
            chunks.append([])
            used = 0
        chunks[-1].append(step)
        used += column + 3
    return chunks


def _heading(title: str, chunk: Sequence[int], *, first: bool) -> str:
    if first or not chunk:
        return title
    return f"step {chunk[0]}" if len(chunk) == 1 else f"steps {chunk[0]}-{chunk[-1]}"


def train_tables(steps: Mapping[int, Mapping[str, float]], title: str, width: int = 80) -> list[Table]:
    """The per-step training metrics as tables of at most ``width`` columns: one row per metric, one
    column per training step (a step that logged no ``critic/score/mean`` is left out), as many steps
    per table as fit; the first table carries ``title``, the others say which steps they hold."""
    kept = {step: row for step, row in steps.items() if "critic/score/mean" in row}
    rows = _train_rows(kept)
    cells = {step: [_cell(row, key, fmt) for _, key, fmt in rows] for step, row in kept.items()}
    label_width = max(len("step"), *(len(label) for label, _, _ in rows))
    tables = []
    for chunk in _chunks({step: max(len(str(step)), *map(len, cells[step])) for step in kept}, width - label_width - 4):
        heading = _heading(title, chunk, first=not tables)
        table = Table(title=heading, min_width=min(width, len(heading) + 2))
        table.add_column("step", overflow="fold")
        for step in chunk:
            table.add_column(str(step), justify="right", overflow="fold")
        for index, (label, _, _) in enumerate(rows):
            table.add_row(label, *(cells[step][index] for step in chunk))
        tables.append(table)
    return tables
