"""verl's own trainer (``main_ppo``) runs SpeciaRL end to end on the CPU through recipes/run_speciarl_tiny_cpu.sh.

Each run: hf_cpu rollout of the tiny supervised policy -> speciarl reward manager (offline judge)
-> group stage -> advantages -> LoRA update on one FSDP2 worker -> weight sync -> next rollout,
validation and a checkpoint at the last step. The assertions read what the run wrote: verl's
metrics file, its rollout dumps and its checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "recipes" / "run_speciarl_tiny_cpu.sh"
#: Hard limit of one run: a failing generate makes verl re-dispatch a prompt forever.
RUN_TIMEOUT_S = 900
#: Probability gap allowed between the rollout's and the actor's log-probs of the same tokens.
#: Same weights give ~1e-6 (float32, KV cache vs full forward); an unsynced rollout one update behind is far off.
SYNCED_PROB_GAP = 1e-3
#: Learning rate of the GRPO run (the recipe's CPU default is 1e-4).
LR = 5e-3
PER_STEP_KEYS = ("critic/score/mean", "actor/pg_loss", "actor/grad_norm", "speciarl/groups_total")


def run_recipe(out: Path, policy: Path, *, config: str, steps: int, extra: tuple[str, ...] = ()) -> str:
    """Run the recipe script to completion; returns its output (the test fails with its tail otherwise)."""
    command = [
        "bash", str(SCRIPT), "--out", str(out), "--steps", str(steps), "--config", config,
        "--policy", str(policy), "--python", sys.executable, "--timeout", str(RUN_TIMEOUT_S - 30),
        "--", "trainer.rollout_data_dir=" + str(out / "rollouts"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "RAY_raylet_start_wait_time_s": "120"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{config} run failed (exit {result.returncode}):\n{output[-6000:]}"
    return output


def training_steps(out: Path) -> dict[int, dict]:
    """Training metrics by step from OUT/metrics.jsonl (validation-only lines are merged into their step)."""
    steps: dict[int, dict] = defaultdict(dict)
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        steps[record["step"]].update(record["data"])
    return dict(steps)


def recomputed_group_rewards(out: Path, step: int, classes: dict[str, dict]) -> tuple[list, list]:
    """(rewards verl stored, rewards recomputed here from the dumped answers) for one step's rollouts."""
    from speciarl_verl.core.answer_parsing import parse_answer
    from speciarl_verl.core.categories import Category
    from speciarl_verl.core.group_reward import group_rewards
    from speciarl_verl.judge.offline import decide_offline
    from speciarl_verl.judge.verifier import VerificationRequest

    rows = [json.loads(line) for line in (out / "rollouts" / f"{step}.jsonl").read_text().splitlines()]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["uid"].rsplit("_", 2)[0]].append(row)
    stored, recomputed = [], []
    for members in groups.values():
        categories = []
        for row in members:
            label = parse_answer(row["output"])
            if label is None:
                categories.append(None)
                continue
            request = VerificationRequest.for_row(row["gts"], label, "synthetic_shapes", classes[row["gts"]])
            categories.append(decide_offline(request) or Category.WRONG)  # kind=offline: undecided -> wrong
        recomputed += group_rewards(categories)
        stored += [row["score"] for row in members]
    return stored, recomputed


def class_rows(out: Path) -> dict[str, dict]:
    """Ground-truth label -> its row's extra_info (parents, their levels, domain nouns), from the run's parquets."""
    classes = {}
    for parquet in (out / "data").glob("*.parquet"):
        for row in pq.read_table(parquet, columns=["reward_model", "extra_info"]).to_pylist():
            classes[row["reward_model"]["ground_truth"]] = row["extra_info"]
    return classes


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, tiny_policy_dir) -> Path:
    out = tmp_path_factory.mktemp("grpo-run")
    # a large step size: a rollout left one update behind would then be far from the actor (see the sync test)
    run_recipe(out, tiny_policy_dir, config="speciarl_grpo", steps=2, extra=(f"actor_rollout_ref.actor.optim.lr={LR}",))
    return out


def test_grpo_run_logs_every_step_and_learns(grpo_run):
    steps = training_steps(grpo_run)
    assert {1, 2} <= steps.keys()
    for step in (1, 2):
        missing = [key for key in PER_STEP_KEYS if key not in steps[step]]
        assert not missing, f"step {step} lacks {missing}"
        assert steps[step]["speciarl/groups_total"] == 2
        assert any(key.startswith("speciarl/category/") for key in steps[step])
    assert any(steps[s]["actor/grad_norm"] > 0 for s in (1, 2)), "no gradient: every group had zero variance"
    assert any(steps[s]["speciarl/parse_failure_rate"] < 1 for s in (1, 2))
    assert any(key.startswith("val-") for key in steps[2]), "no validation pass at the last step"


def test_grpo_scores_are_the_group_stage_rewards(grpo_run):
    steps = training_steps(grpo_run)
    classes = class_rows(grpo_run)
    for step in (1, 2):
        stored, recomputed = recomputed_group_rewards(grpo_run, step, classes)
        assert len(stored) == 2 * 4
        assert stored == pytest.approx(recomputed)
        assert steps[step]["critic/score/mean"] == pytest.approx(sum(recomputed) / len(recomputed), abs=1e-6)


def test_rollout_samples_with_the_weights_the_actor_just_synced(grpo_run):
    steps = training_steps(grpo_run)
    syncs = [line for line in (grpo_run / "train.log").read_text().splitlines() if "[hf_cpu] replica 0: loaded" in line]
    # the base weights once, then the LoRA adapters before every step's rollout
    assert sum("LoRA adapters, merged" in line for line in syncs) >= 2, syncs
    # step 2's rollout ran after step 1's update: its log-probs match the updated actor's only if the sync worked
    for step in (1, 2):
        assert steps[step]["training/rollout_probs_diff_max"] < SYNCED_PROB_GAP, steps[step]
    assert steps[1]["actor/grad_norm"] > 0  # step 1 did change the weights step 2 sampled with


def test_checkpoint_holds_changed_lora_weights_and_resumes_at_the_next_step(grpo_run, tiny_policy_dir):
    import torch

    checkpoint = grpo_run / "checkpoints" / "global_step_2"
    assert checkpoint.is_dir()
    shards = list(checkpoint.rglob("model_world_size_1_rank_0.pt"))
    assert shards, f"no model shard under {checkpoint}"
    state = torch.load(shards[0], map_location="cpu", weights_only=False)
    lora_b = {name: tensor for name, tensor in state.items() if "lora_B" in name}
    assert lora_b, "the checkpoint holds no LoRA weights"
    # LoRA B starts at zero: any non-zero entry is a trained change
    local = [t.to_local() if hasattr(t, "to_local") else t for t in lora_b.values()]
    assert any(float(t.abs().max()) > 0 for t in local)

    run_recipe(grpo_run, tiny_policy_dir, config="speciarl_grpo", steps=3)
    steps = training_steps(grpo_run)
    assert 3 in steps and all(key in steps[3] for key in PER_STEP_KEYS)
    lines = [json.loads(line)["step"] for line in (grpo_run / "metrics.jsonl").read_text().splitlines()]
    assert lines.count(1) == 1, f"the resumed run trained step 1 again: {lines}"
    assert (grpo_run / "checkpoints" / "global_step_3").is_dir()


@pytest.mark.parametrize(
    ("config", "proof"),
    [
        ("speciarl_drgrpo", "actor/pg_loss"),
        ("speciarl_dapo_ds", "speciarl/scored_groups_total"),
    ],
)
def test_other_methods_run_two_steps(tmp_path, tiny_policy_dir, config, proof):
    out = tmp_path / config
    run_recipe(out, tiny_policy_dir, config=config, steps=2)
    steps = training_steps(out)
    for step in (1, 2):
        assert all(key in steps[step] for key in PER_STEP_KEYS), sorted(steps[step])
        assert proof in steps[step]
