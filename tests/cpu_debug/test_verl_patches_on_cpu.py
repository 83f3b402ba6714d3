"""The verl patches of a CPU run still fit verl's code, and do what they claim."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speciarl_verl.cpu_debug.verl_patches import PATCHED_SOURCES
from speciarl_verl.cpu_debug.vllm_patches import PATCHED_SOURCES as VLLM_PATCHED_SOURCES


def _verl_source(module_name: str, qualname: str) -> str:
    """The source of a verl function as its file has it (an activated process may hold our replacement)."""
    path = inspect.getsourcefile(importlib.import_module(module_name))
    text = Path(path).read_text(encoding="utf-8")
    nodes = ast.parse(text).body
    for part in qualname.split("."):
        found = [n for n in nodes if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == part]
        assert found, f"verl's {path} no longer defines {qualname}; update speciarl_verl/cpu_debug/verl_patches.py"
        nodes = found[0].body
    return ast.get_source_segment(text, found[0])


@pytest.mark.parametrize(("module_name", "qualname"), sorted(PATCHED_SOURCES))
def test_patched_verl_code_still_holds_the_lines_the_patch_relies_on(module_name, qualname):
    source = _verl_source(module_name, qualname)
    for line in PATCHED_SOURCES[(module_name, qualname)]:
        assert line in source, (
            f"verl changed {module_name}.{qualname}: the line {line!r} is gone; "
            "re-read it and update speciarl_verl/cpu_debug/verl_patches.py"
        )


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0", **env}
    full_env.pop("VERL_USE_EXTERNAL_MODULES", None)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True, timeout=120
    )


_INIT_PROCESS_GROUP = textwrap.dedent("""
    import socket, os
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    import torch.distributed as dist
    from verl.utils import distributed
    distributed.initialize_global_process_group_ray()
    print("BACKEND", dist.get_backend())
""")


def test_without_the_patch_the_cpu_platform_cannot_start_a_process_group():
    # the reason the patch exists: verl's backend string names the cpu device twice
    code = "import speciarl_verl.cpu_debug.platform\n" + _INIT_PROCESS_GROUP
    result = _run(code, VERL_PLATFORM="cpu")
    assert result.returncode != 0
    assert "Duplicate device type cpu" in result.stderr


def test_activated_process_starts_a_gloo_process_group_and_knows_the_cpu_backend():
    result = _run(
        _INIT_PROCESS_GROUP
        + textwrap.dedent("""
            from verl.utils.device import get_device_name, get_torch_device
            from verl.workers.rollout.base import get_rollout_class
            from verl.workers.rollout.replica import get_rollout_replica_class
            get_torch_device().empty_cache()
            print("DEVICE", get_device_name(), get_torch_device().max_memory_allocated())
            print("ROLLOUT", get_rollout_class("hf_cpu").__name__, get_rollout_replica_class("hf_cpu").__name__)
        """),
        VERL_PLATFORM="cpu",
        VERL_USE_EXTERNAL_MODULES="speciarl_verl.cpu_debug.activate",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BACKEND gloo" in result.stdout
    assert "DEVICE cpu 0" in result.stdout
    assert "ROLLOUT HFCpuServerAdapter HFCpuReplica" in result.stdout


def test_the_package_plugin_alone_changes_nothing_in_verl():
    # a GPU node loads the verl.plugins entry point in every process: it must not pick hf_cpu or patch verl
    result = _run("""
        import verl
        from verl.utils import distributed
        from verl.workers.rollout.base import _ROLLOUT_REGISTRY
        from verl.workers.rollout.replica import RolloutReplicaRegistry
        print("PATCHED", hasattr(distributed.initialize_global_process_group_ray, "__speciarl_cpu_patch__"))
        print("HF_CPU", ("hf_cpu", "async") in _ROLLOUT_REGISTRY, "hf_cpu" in RolloutReplicaRegistry._registry)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PATCHED False" in result.stdout
    assert "HF_CPU False False" in result.stdout


_SPLIT_PICKLED_VLM_BATCH = textwrap.dedent("""
    import pickle, sys, torch
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    mode, layout = sys.argv[1], sys.argv[2]
    lengths = [13, 14, 12, 15, 16, 11, 14, 15] if layout == "varied" else [40] * 8
    rows = [torch.arange(4 * n).reshape(4, n) for n in lengths]  # Qwen2.5-VL's 4 position rows per token
    if layout == "varied":
        positions = tu.nested_tensor_from_tensor_list(rows, ragged_idx=2)
    else:  # equal lengths: verl's list_of_dict_to_tensordict builds the nested tensor ragged along the rows
        positions = torch.nested.as_nested_tensor(rows, layout=torch.jagged)
    batch = TensorDict({"position_ids": positions}, batch_size=8)
    if mode == "patched":
        from speciarl_verl.cpu_debug.verl_patches import apply_cpu_patches
        apply_cpu_patches()
    shipped = pickle.loads(pickle.dumps(batch.consolidate()))  # as the batch reaches the worker
    tu.maybe_fix_3d_position_ids(shipped)  # verl calls it on the worker's batch (engine_workers.py:252)
    first = next(tu.make_iterator(shipped, mini_batch_size=4, epochs=1))
    pieces = first["position_ids"].unbind()
    assert all(torch.equal(piece, row) for piece, row in zip(pieces, rows))
    print("SHAPES", [tuple(t.shape) for t in pieces])
""")


@pytest.mark.parametrize("layout", ["varied", "equal"])
@pytest.mark.parametrize("mode", ["plain", "patched"])
def test_mini_batches_of_a_pickled_vlm_batch_need_the_position_ids_patches(mode, layout):
    result = subprocess.run(
        [sys.executable, "-c", _SPLIT_PICKLED_VLM_BATCH, mode, layout], capture_output=True, text=True, timeout=120
    )
    if mode == "patched":
        assert result.returncode == 0, result.stderr[-2000:]
        first = [13, 14, 12, 15] if layout == "varied" else [40] * 4
        assert f"SHAPES {[(4, n) for n in first]}" in result.stdout, result.stdout
    elif layout == "equal":  # verl as shipped: the batch cannot be split into mini-batches
        assert result.returncode != 0 and "SHAPES" not in result.stdout


# ---------------------------------------------------------------------------------------------
# vLLM's CPU linear layers keep their weight (speciarl_verl/cpu_debug/vllm_patches.py); only where vLLM is installed

needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed here (it is in .venv-vllm-rollout)"
)


@needs_vllm
@pytest.mark.parametrize(("module_name", "qualname"), sorted(VLLM_PATCHED_SOURCES))
def test_patched_vllm_code_still_holds_the_lines_the_patch_relies_on(module_name, qualname):
    source = _verl_source(module_name, qualname)
    for line in VLLM_PATCHED_SOURCES[(module_name, qualname)]:
        assert line in source, (
            f"{module_name}.{qualname} changed: the line {line!r} is gone; "
            "re-read it and update speciarl_verl/cpu_debug/vllm_patches.py"
        )


_RELOAD_A_CPU_LINEAR = textwrap.dedent("""
    import sys, torch
    if sys.argv[1] == "patched":  # as a CPU run: activated at `import verl`, before vLLM's layers are imported
        import verl
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(16, 32), requires_grad=False)
    method = UnquantizedLinearMethod()
    method.process_weights_after_loading(layer)  # vLLM's prepack after loading
    print("KEPT", tuple(layer.weight.shape))
    if layer.weight.numel():
        synced = torch.randn(16, 32)
        layer.weight.data.copy_(synced)  # what load_weights does with verl's synced tensor
        method.process_weights_after_loading(layer)  # verl's re-run after a full sync
        x = torch.randn(3, 32)
        print("REPACKED", torch.allclose(method.apply(layer, x), x @ synced.T, atol=1e-5))
""")


@needs_vllm
@pytest.mark.parametrize("mode", ["plain", "patched"])
def test_cpu_linear_layers_keep_their_weight_and_repack_synced_weights_only_when_patched(mode):
    env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    if mode == "patched":
        env.update(VERL_PLATFORM="cpu", VERL_USE_EXTERNAL_MODULES="speciarl_verl.cpu_debug.activate")
    result = subprocess.run(
        [sys.executable, "-c", _RELOAD_A_CPU_LINEAR, mode],
        env={**{k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_MODULES"}, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if mode == "plain":  # vLLM as shipped: nothing left for verl's load_weights to fill
        assert "KEPT (0,)" in result.stdout
    else:
        assert "KEPT (16, 32)" in result.stdout and "REPACKED True" in result.stdout, result.stdout


_SHARD_FORWARD_ONLY = textwrap.dedent("""
    import socket, os, sys, torch
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    import torch.distributed as dist
    dist.init_process_group("gloo")
    from verl.workers.engine.fsdp import transformer_impl
    policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)  # verl's call, transformer_impl.py:462
    print("PIN", policy.pin_memory, isinstance(policy, torch.distributed.fsdp.CPUOffloadPolicy))
    model = torch.nn.Linear(8, 4)
    torch.distributed.fsdp.fully_shard(model, offload_policy=policy)
    print("FORWARD", tuple(model(torch.randn(2, 8)).shape))
""")


def test_forward_only_fsdp2_modules_are_not_pinned_on_the_cpu_platform():
    # the reference model of a full-weight run; torch's pin_memory() needs an NVIDIA driver
    patched = _run(
        _SHARD_FORWARD_ONLY, VERL_PLATFORM="cpu", VERL_USE_EXTERNAL_MODULES="speciarl_verl.cpu_debug.activate"
    )
    assert patched.returncode == 0, patched.stderr[-3000:]
    assert "PIN False True" in patched.stdout and "FORWARD (2, 4)" in patched.stdout
    plain = _run("import speciarl_verl.cpu_debug.platform\n" + _SHARD_FORWARD_ONLY, VERL_PLATFORM="cpu")
    assert "PIN True True" in plain.stdout, plain.stderr[-3000:]
    import torch

    if not torch.cuda.is_available():  # the failure the patch avoids, on a machine without a GPU
        assert plain.returncode != 0 and "FORWARD" not in plain.stdout
