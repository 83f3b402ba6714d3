"""docs/paper_parity.md lists every word the rule tier decides on its own; the list must be the code's."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.data.adapters import get_adapter
from speciarl_verl.judge.offline import ABSTENTIONS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "paper_parity.md"
BENCHMARKS = ("cub200", "fgvc_aircraft", "flowers102", "food101", "oxford_pets", "stanford_cars")


def rule_rows() -> list[list[str]]:
    """The cells of the rule-tier table: verdict, rule or words, data sources, beyond the examples."""
    section = PAGE.read_text(encoding="utf-8").split("## Rule-tier words and rules")[1]
    lines = [line for line in section.splitlines() if line.startswith("| *")]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    assert rows, "the rule-tier table is missing"
    return rows


def quoted(text: str) -> set[str]:
    return {normalize_label(word) for word in re.findall(r'"([^"]+)"', text)}


def test_every_domain_noun_of_every_benchmark_is_listed():
    listed: dict[str, set[str]] = defaultdict(set)
    for verdict, words, sources, _ in rule_rows():
        if verdict == "*generic*":
            for source in sources.split(", "):
                listed[source] |= quoted(words)
    for name in BENCHMARKS:
        adapter = get_adapter(name)
        species = [["dog"], ["cat"]] if name == "oxford_pets" else [[]]
        nouns = {normalize_label(noun) for parents in species for noun in adapter.domain_nouns_of(parents)}
        assert listed[name] == nouns, name


def test_every_refusal_is_listed():
    (abstain,) = [words for verdict, words, _, _ in rule_rows() if verdict == "*abstain*"]
    assert quoted(abstain) == set(ABSTENTIONS)
