"""`make demo`'s job, run as a user runs it."""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ray


def test_demo_tour_runs_every_step():
    # as `make demo > log` gets it: no terminal, 80 columns
    env = {**os.environ, "COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "speciarl_verl.demo"], capture_output=True, text=True, env=env, timeout=1500
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for truth in (
        "737-800",
        "A340-300",
        "Tesla Model S Sedan 2012",
        "Ford F-150 Regular Cab 2012",
        "samoyed",
        "Abyssinian",
    ):
        assert f"ground truth {truth}" in out

    def rows(answer):
        return [line for line in out.splitlines() if re.search(rf"│ \d+ │ {re.escape(answer)} +│", line)]

    # best in group is rewarded; coarser correct answers are not, unless they are the group's best
    assert all("+1.00" in line for line in rows("737-800") + rows("Samoyed") + rows("not sure"))
    assert all("+0.00" in line for line in rows("Boeing 737") + rows("airliner"))
    assert all("+1.00" in line for line in rows("A340"))
    assert all("+0.00" in line for line in rows("Airbus"))  # the manufacturer alone: far, left to the LLM judge
    assert all("-1.00" in line for line in rows("(unparseable)"))
    assert re.search(r"speciarl/groups_total\s+│\s+6\.000", out)
    assert re.search(r"speciarl/groups_zero_variance\s+│\s+0\.167", out)

    # step 1: the tiny CUB layout went through our builder, verl's dataset and the Qwen2.5-VL processor
    assert "Black footed Albatross" in out and "Laysan Albatross" in out
    tokens = re.search(r"-> (\d+) <\|image_pad\|> tokens", out)
    assert tokens and int(tokens.group(1)) > 0
    assert "<|vision_start|><|image_pad|><|vision_end|>" in out
    # step 3: the GPU recipe's dry run, runnable here
    assert f"{sys.executable} -m verl.trainer.main_ppo -cp pkg://speciarl_verl.config -cn speciarl_grpo" in out
    # step 4: the evaluation report with its out-of-domain mean
    assert "## Out-of-domain mean" in out and "fgvc_aircraft" in out
    # step 5: three GRPO steps through verl's main_ppo on the CPU, one table column per step
    assert re.search(r"verl main_ppo on CPU: 3 steps in \d+ s", out)
    [steps] = [line for line in out.splitlines() if re.match(r"┃ step +┃", line)]
    assert [cell.strip() for cell in steps.split("┃")[2:-1]] == ["1", "2", "3"], out[-3000:]
    [rewards] = [line for line in out.splitlines() if line.startswith("│ reward mean ")]
    assert len(re.findall(r"│ +[+-]\d\.\d{3} ", rewards)) == 3, out[-3000:]
    # every table whole at 80 columns: no cell cut with rich's ellipsis
    assert "…" not in out, [line for line in out.splitlines() if "…" in line]
