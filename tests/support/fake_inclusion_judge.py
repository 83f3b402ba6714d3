"""A fake LLM inclusion judge: the fake judge server answering ``1``/``0`` instead of a category.

It reads the JSON pair of the inclusion prompt and answers ``1`` when the normalised prediction is
the normalised ground truth or one of the answers ``accepted`` lists for it (synonyms, broader
classes: what a lenient judge would accept), else ``0``. Faults, latency and ``/version`` are the
fake judge server's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from speciarl_verl.core.label_normalization import normalize_label
from speciarl_verl.offline_fixtures.fake_judge_server import FakeJudgeServer

__all__ = ["FakeInclusionJudge"]

_PAIR = re.compile(r"```json\s*(\{.*?\})\s*```", re.DOTALL)


@dataclass
class FakeInclusionJudge(FakeJudgeServer):
    """``accepted``: normalised ground truth -> normalised answers that also get ``1``.

    Example: ``with FakeInclusionJudge(accepted={"couch": {"sofa"}}) as server: ...`` answers 1 for
    ("couch", "Sofa") and 0 for ("couch", "chair").
    """

    accepted: Mapping[str, set[str]] = field(default_factory=dict)

    def judge_label(self, body: dict[str, Any]) -> str:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        pair = json.loads(_PAIR.search(user).group(1))
        truth, prediction = normalize_label(pair["ground_truth"]), normalize_label(pair["prediction"])
        return "1" if prediction == truth or prediction in self.accepted.get(truth, ()) else "0"
