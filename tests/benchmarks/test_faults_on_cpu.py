"""Two cases of the fault matrix (benchmarks/faults.py) kept in CI, each real runs of verl's main_ppo on the CPU:

* the trainer SIGKILLed with a judge request in flight: the same command resumes from the last checkpoint to
  the same final step, trains no step twice, and the judge is asked only for pairs it had not answered;
* a training parquet with unreadable image bytes in a row: refused before the first step, naming the file and
  the row, and the judge is never asked.

The whole matrix (judge outages under both failure policies, judge and Redis restarts, a judge that answers
garbage or hangs, 30 flaky steps) is the benchmark; its figures are in docs/notes.md.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.ray


def test_a_trainer_killed_mid_step_resumes_and_pays_for_no_verdict_twice(faults, tmp_path):
    outcome = faults.run_case("trainer_killed", tmp_path)
    assert outcome.survived, outcome.detail
    assert (outcome.verdicts_lost, outcome.pairs_rejudged, outcome.silent_zero_rewards) == (0, 0, 0), outcome


def test_a_bad_row_is_refused_before_the_first_step_naming_file_and_row(faults, tmp_path):
    # unreadable image bytes; a row without ground truth is the benchmark's other launch (and, with the image
    # case, tests/data/test_checked_dataset_on_cpu.py's, through verl's own dataset factory)
    outcome = faults.bad_rows(tmp_path, "ci-key", broken=(("image", 9),))
    assert outcome.survived, outcome.detail
