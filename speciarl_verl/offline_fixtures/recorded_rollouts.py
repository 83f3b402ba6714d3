"""Recorded rollouts: groups of policy answers for one image each, stored as JSONL.

One line per image: ``image_id``, ``data_source``, ``ground_truth``, ``parents``
(coarser names from the dataset's hierarchy), ``parent_levels``, ``domain_nouns``,
``synonyms`` (as a built row's ``extra_info`` holds them), ``prompt`` and ``responses``
(the raw policy outputs of one GRPO group).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["DEMO_ROLLOUTS", "RecordedGroup", "load_recorded_groups"]

DEMO_ROLLOUTS = "recorded_rollouts.jsonl"


@dataclass(frozen=True)
class RecordedGroup:
    image_id: str
    data_source: str
    ground_truth: str
    prompt: str
    responses: tuple[str, ...]
    parents: tuple[str, ...] = field(default=())
    synonyms: tuple[str, ...] = field(default=())
    parent_levels: tuple[str, ...] = field(default=())
    domain_nouns: tuple[str, ...] = field(default=())

    def row(self, index: int) -> dict:
        """The dataset columns verl hands the reward manager for this image."""
        return {
            "data_source": self.data_source,
            "prompt": [{"role": "user", "content": self.prompt}],
            "ability": "fine-grained classification",
            "reward_model": {"style": "model", "ground_truth": self.ground_truth},
            "extra_info": {
                "index": index,
                "image_id": self.image_id,
                "parents": list(self.parents),
                "synonyms": list(self.synonyms),
                "parent_levels": list(self.parent_levels),
                "domain_nouns": list(self.domain_nouns),
            },
            "index": index,
        }


def load_recorded_groups(path: str | Path | None = None) -> list[RecordedGroup]:
    """Read a recorded-rollouts JSONL file (default: the demo file shipped in the package)."""
    if path is None:
        text = resources.files("speciarl_verl.demo").joinpath(DEMO_ROLLOUTS).read_text(encoding="utf-8")
        source = f"speciarl_verl/demo/{DEMO_ROLLOUTS}"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    return list(_parse(text.splitlines(), source))


def _parse(lines: Iterable[str], source: str) -> Iterable[RecordedGroup]:
    required = ("image_id", "data_source", "ground_truth", "prompt", "responses")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}:{number}: not valid JSON ({error})") from error
        missing = [key for key in required if key not in record]
        if missing:
            raise ValueError(f"{source}:{number}: missing {missing}")
        if not record["responses"]:
            raise ValueError(f"{source}:{number}: empty 'responses'")
        yield RecordedGroup(
            image_id=str(record["image_id"]),
            data_source=str(record["data_source"]),
            ground_truth=str(record["ground_truth"]),
            prompt=str(record["prompt"]),
            responses=tuple(map(str, record["responses"])),
            parents=tuple(record.get("parents") or ()),
            synonyms=tuple(record.get("synonyms") or ()),
            parent_levels=tuple(record.get("parent_levels") or ()),
            domain_nouns=tuple(record.get("domain_nouns") or ()),
        )
