"""The launch preflight: every shipped config splits over 4, 8 and 16 GPUs; bad launches are refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speciarl_verl.config.compose import compose_config, compose_config_from_files, shipped_config_names
from speciarl_verl.config.preflight import PATH_KEYS, check_config, main, preflight

LAYOUTS = {"1x4": (1, 4), "1x8": (1, 8), "2x8": (2, 8)}  # trainer.nnodes x trainer.n_gpus_per_node
MULTI_NODE = ["trainer.nnodes=2", "trainer.n_gpus_per_node=8"]  # recipes/README.md's multi-node example
ROOT = Path(__file__).resolve().parents[2]
OLD_MICRO = "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32"  # the value shipped before the fix


def layout(nnodes: int, per_node: int) -> list[str]:
    return [f"trainer.nnodes={nnodes}", f"trainer.n_gpus_per_node={per_node}"]


@pytest.fixture(scope="session")
def verl_micro_batches():
    """``split(samples, micro)``: verl's own split of one GPU's batch into micro-batches (asserts divisibility).

    ``prepare_micro_batches`` is what the actor update and the log-prob passes call on each GPU
    (verl/workers/engine/utils.py); ``validate_config`` never checks this, so it runs here on an
    empty batch of the size a GPU would get.
    """
    import torch
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.utils import prepare_micro_batches

    def split(samples: int, micro: int) -> int:
        data = TensorDict({"x": torch.zeros(samples, 1)}, batch_size=[samples])
        tu.assign_non_tensor(data, use_dynamic_bsz=False, micro_batch_size_per_gpu=micro)
        micro_batches, _ = prepare_micro_batches(data)
        return len(micro_batches)

    return split


def run(*argv: str, capsys) -> tuple[int, list[str], list[str]]:
    """``main(argv)``: exit status, stdout lines, stderr lines."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


@pytest.mark.parametrize("gpus", sorted(LAYOUTS))
@pytest.mark.parametrize("name", shipped_config_names())
def test_every_shipped_config_passes_the_preflight_and_verl(name, gpus, validate_on_cpu, verl_micro_batches):
    config = compose_config(name, layout(*LAYOUTS[gpus]))
    lines = check_config(config, name)  # what preflight(name, overrides) checks once it has composed them
    assert lines and all(line.startswith("# ") for line in lines)
    validate_on_cpu(config)
    # and the per-GPU splits verl makes only at run time, with verl's own code
    arf = config.actor_rollout_ref
    n_gpus = config.trainer.nnodes * config.trainer.n_gpus_per_node
    assert arf.actor.ulysses_sequence_parallel_size == arf.actor.fsdp_config.ulysses_sequence_parallel_size == 1
    mini = arf.actor.ppo_mini_batch_size * arf.rollout.n
    step = config.data.train_batch_size * arf.rollout.n
    assert config.data.train_batch_size % arf.actor.ppo_mini_batch_size == 0  # whole mini-batches, no padding
    assert mini % n_gpus == 0  # verl/workers/engine_workers.py train_mini_batch
    if not arf.actor.use_dynamic_bsz:
        assert verl_micro_batches(mini // n_gpus, arf.actor.ppo_micro_batch_size_per_gpu) >= 1
        assert verl_micro_batches(step // n_gpus, arf.rollout.log_prob_micro_batch_size_per_gpu) >= 1
        assert verl_micro_batches(step // n_gpus, arf.ref.log_prob_micro_batch_size_per_gpu) >= 1


@pytest.mark.parametrize("name", ["speciarl_grpo", "speciarl_dapo_ds"])
def test_preflight_composes_then_checks_the_composed_config(name):
    lines = preflight(name, MULTI_NODE)
    assert lines == check_config(compose_config(name, MULTI_NODE), name)
    assert lines[0] == f"# config {name}: 2 nodes x 8 GPUs = 16 training GPUs"


@pytest.mark.parametrize("name", shipped_config_names())
def test_verls_config_files_compose_as_its_package_does(name):
    # the preflight reads verl's config folder as files (no `import verl`); main_ppo reads it through
    # pkg://verl.trainer.config: both must give the same config, every key resolved
    from_files = compose_config_from_files(name, MULTI_NODE)
    assert OmegaConf.to_container(from_files, resolve=True) == OmegaConf.to_container(
        compose_config(name, MULTI_NODE), resolve=True
    )


def test_the_preflight_does_not_import_verl_or_torch():
    code = (
        "import sys\n"
        "from speciarl_verl.config.preflight import main\n"
        "assert main(['--config', 'speciarl_grpo', 'trainer.n_gpus_per_node=8']) == 0\n"
        "print(sorted(name for name in ('verl', 'torch', 'vllm') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", shipped_config_names())
def test_every_shipped_config_bounds_the_vllm_context_by_its_lengths(name):
    config = compose_config(name)
    rollout = config.actor_rollout_ref.rollout
    assert rollout.max_model_len == config.data.max_prompt_length + config.data.max_response_length
    # chunked prefill off: verl raises max_num_batched_tokens to max_model_len only if it is smaller
    assert rollout.enable_chunked_prefill is False and rollout.max_num_batched_tokens >= rollout.max_model_len


def test_the_readme_multi_node_example_with_the_old_micro_batch_is_refused_in_one_line(capsys, validate_on_cpu):
    status, out, err = run("--config", "speciarl_grpo", "--", *MULTI_NODE, OLD_MICRO, capsys=capsys)
    assert (status, out, len(err)) == (2, [], 1)
    assert err[0].startswith("preflight: 128 prompts x 10 rollouts / 16 GPUs = 80 per GPU per mini-batch")
    assert "actor.ppo_micro_batch_size_per_gpu=32" in err[0] and "20, 16 or 10" in err[0]
    # verl's validate_config lets it through: it would stop only at the first actor update
    validate_on_cpu(compose_config("speciarl_grpo", [*MULTI_NODE, OLD_MICRO]))


@pytest.mark.parametrize(
    ("name", "per_gpu"),
    [("speciarl_grpo_n5", 40), ("speciarl_grpo_n15", 120)],
)
def test_the_group_size_ablations_with_the_old_micro_batch_are_refused(capsys, name, per_gpu):
    status, _, err = run("--config", name, *MULTI_NODE, OLD_MICRO, capsys=capsys)
    assert status == 2 and len(err) == 1
    assert f"/ 16 GPUs = {per_gpu} per GPU per mini-batch" in err[0] and "=32" in err[0]


def test_a_log_prob_micro_batch_that_does_not_divide_is_refused(capsys):
    bad = "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=48"
    status, _, err = run("--config", "speciarl_grpo", *MULTI_NODE, bad, capsys=capsys)
    assert status == 2 and len(err) == 1
    assert "= 160 per GPU in the log-prob pass" in err[0] and "log_prob_micro_batch_size_per_gpu=48" in err[0]


def test_a_gpu_count_that_does_not_split_the_mini_batch_is_refused(capsys):
    status, _, err = run("--config", "speciarl_grpo", "trainer.n_gpus_per_node=6", capsys=capsys)
    assert status == 2 and len(err) == 1
    assert "1280 samples per mini-batch do not split over 6 GPUs" in err[0]


def test_a_train_batch_that_is_not_whole_mini_batches_is_refused(capsys):
    status, _, err = run("--config", "speciarl_grpo", "data.train_batch_size=192", capsys=capsys)
    assert status == 2 and len(err) == 1
    assert "data.train_batch_size=192" in err[0] and "ppo_mini_batch_size=128" in err[0]


def test_an_unknown_config_is_refused_with_a_suggestion(capsys):
    status, out, err = run("--config", "speciarl_grp", capsys=capsys)
    assert (status, out, len(err)) == (2, [], 1)
    assert err[0].startswith("preflight: unknown config 'speciarl_grp' (did you mean speciarl_grpo")
    assert "speciarl_dapo_ds_reward3" in err[0]  # the shipped names are listed


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("piece", [",", "(", ")", "'", '"', "=", "[", "]", "{", "}", "#", " ", "${"])
def test_a_path_hydra_would_misread_is_refused_naming_its_key(capsys, key, piece):
    override = f"{key}=/data/cub{piece}200/file.parquet"
    status, out, err = run("--config", "speciarl_grpo", override, capsys=capsys)
    assert (status, out, len(err)) == (2, [], 1)
    assert err[0].startswith(f"preflight: {key}=/data/cub{piece}200/file.parquet holds ")


def test_a_path_with_a_comma_is_refused_before_hydra_composes_it(capsys):
    status, _, err = run("--config", "speciarl_grpo", "data.train_files=/data/cub,200/train.parquet", capsys=capsys)
    assert status == 2 and err == [
        "preflight: data.train_files=/data/cub,200/train.parquet holds ','; Hydra's override grammar reads "
        ", ( ) ' \" = [ ] { } # whitespace and ${ as syntax, so move or rename it to a path without them"
    ]


@pytest.mark.parametrize("path", ["/data/~cub/train.parquet", "/données/train.parquet", "/data/a&b.parquet"])
def test_a_path_hydra_refuses_outright_becomes_one_line_naming_the_key(capsys, path):
    status, _, err = run("--config", "speciarl_grpo", f"trainer.default_local_dir={path}", capsys=capsys)
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"preflight: trainer.default_local_dir={path}: Hydra cannot read this path unquoted")


def test_an_unreadable_override_of_another_key_is_one_line_naming_the_key(capsys):
    status, _, err = run("--config", "speciarl_grpo", "trainer.project_name=a(b", capsys=capsys)
    assert status == 2 and len(err) == 1
    assert "trainer.project_name=a(b" in err[0] and "key trainer.project_name" in err[0]


def test_an_override_hydra_cannot_apply_is_one_line(capsys):
    status, _, err = run("--config", "speciarl_grpo", "data.no_such_key=1", capsys=capsys)
    assert status == 2 and len(err) == 1
    assert "data.no_such_key" in err[0] and "+data.no_such_key=1" in err[0]


def test_quoted_paths_and_lists_of_files_are_accepted(capsys):
    status, out, err = run(
        "--config",
        "speciarl_grpo",
        "data.train_files=[/data/a.parquet,/data/b.parquet]",
        "data.val_files='/data/cub,200/test.parquet'",
        capsys=capsys,
    )
    assert (status, err) == (0, [])
    assert out[-1].startswith("# data: train /data/a.parquet,/data/b.parquet; validation /data/cub,200/test.parquet;")


def test_a_max_model_len_below_prompt_plus_response_is_refused(capsys):
    status, _, err = run("--config", "speciarl_grpo", "actor_rollout_ref.rollout.max_model_len=3000", capsys=capsys)
    assert status == 2 and len(err) == 1
    assert (
        "max_model_len=3000 is below data.max_prompt_length + data.max_response_length = 2048 + 2048 = 4096" in err[0]
    )


def test_a_longer_response_needs_a_longer_max_model_len(capsys):
    status, _, err = run("--config", "speciarl_grpo", "data.max_response_length=4096", capsys=capsys)
    assert status == 2 and len(err) == 1 and "set actor_rollout_ref.rollout.max_model_len=6144" in err[0]
    longer = ["data.max_response_length=4096", "actor_rollout_ref.rollout.max_model_len=6144"]
    status, out, _ = run("--config", "speciarl_grpo", *longer, capsys=capsys)
    assert status == 0 and any("<= max_model_len 6144" in line for line in out)


def test_a_missing_config_option_is_refused_in_one_line(capsys):
    status, out, err = run("trainer.nnodes=2", capsys=capsys)
    assert (status, out, len(err)) == (2, [], 1) and err[0].startswith("preflight: --config NAME is required")


def test_the_command_line_prints_only_plan_lines_on_success():
    command = [sys.executable, "-m", "speciarl_verl.config.preflight", "--config", "speciarl_grpo", "--", *MULTI_NODE]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("# ") for line in lines), result.stdout
    assert (
        "# actor update: 128 prompts x 10 rollouts / 16 GPUs = 80 samples per GPU per mini-batch "
        "= 4 micro-batches of 20"
    ) in lines


def test_the_command_line_refuses_in_one_line_on_stderr():
    command = [
        sys.executable,
        "-m",
        "speciarl_verl.config.preflight",
        "--config",
        "speciarl_grpo",
        *MULTI_NODE,
        OLD_MICRO,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("preflight: ")
