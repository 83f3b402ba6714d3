"""A fake judge that answers outside its labels at first, then like the fake judge server.

The first ``strays`` chat requests that reach an answer get ``stray_label`` (by default a label
outside the set; a spelling of a real label tests the client's tolerance); every later one gets
the fake judge server's own label. Faults, latency and ``/version`` are the fake judge server's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speciarl_verl.offline_fixtures.fake_judge_server import FakeJudgeServer

__all__ = ["StrayingJudge"]


@dataclass
class StrayingJudge(FakeJudgeServer):
    strays: int = 1
    stray_label: str = "probably specific"
    #: chat requests answered so far (counted here, apart from the server's own ``calls``)
    answered: int = field(default=0, init=False)

    def judge_label(self, body: dict[str, Any]) -> str:
        self.answered += 1
        return self.stray_label if self.answered <= self.strays else super().judge_label(body)
