"""The case of the fault matrix (benchmarks/faults.py) CI keeps as a real run of verl's main_ppo on the CPU:
the trainer SIGKILLed with a judge request in flight; the same command resumes from the last checkpoint to the
same final step, trains no step twice, and the judge is asked only for pairs it had not answered.

The bad-row refusal is kept in CI where verl builds the dataset (tests/data/test_checked_dataset_on_cpu.py,
through verl's own ``create_rl_dataset`` and the shipped config): a whole launch adds only Ray's start-up.

The whole matrix (judge outages under both failure policies, judge and Redis restarts, a judge that answers
garbage or hangs, 30 flaky steps) is the benchmark; its figures are in docs/notes.md.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.ray


def test_a_trainer_killed_mid_step_resumes_and_pays_for_no_verdict_twice(faults, tmp_path):
    outcome = faults.trainer_killed(tmp_path, "ci-key", steps=2)  # killed after step 1: resumes into step 2
    assert outcome.survived, outcome.detail
    assert (outcome.verdicts_lost, outcome.pairs_rejudged, outcome.silent_zero_rewards) == (0, 0, 0), outcome
