"""Every change a CPU debugging run makes to verl 0.9.1's own code, in one place.

Registrations (platform, rollout) and env overrides (VERL_PLATFORM, VERL_ENGINE_DEVICE) are not patches; they live in
:mod:`speciarl_verl.cpu_debug.activate`. What follows replaces or wraps verl functions,
because verl offers no hook there. Each patch names the verl file and line it replaces and
lists, in :data:`PATCHED_SOURCES`, the source lines it relies on;
``tests/cpu_debug/test_verl_patches_on_cpu.py`` fails when verl's code there changes, so a
verl upgrade cannot silently turn a patch into a no-op or a wrong fix.

Applied only by :func:`apply_cpu_patches`, which only ``activate`` calls, which only a CPU
run imports (``VERL_USE_EXTERNAL_MODULES``). The package's ``verl.plugins`` entry point never
applies them. Patches of modules too heavy to import at ``import verl`` (verl's FSDP engine,
vLLM) are applied by :func:`after_import` when a process first imports them. vLLM's one patch
lives in :mod:`speciarl_verl.cpu_debug.vllm_patches`, called from here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.abc
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: verl function (module, qualified name) -> source lines the patch relies on, verbatim.
PATCHED_SOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    # verl/utils/distributed.py:83-99 builds "cpu:gloo,{device}:{nccl backend}", which on the CPU
    # platform reads "cpu:gloo,cpu:gloo" and torch rejects ("Duplicate device type cpu").
    ("verl.utils.distributed", "initialize_global_process_group_ray"): (
        'backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"',
        "if not torch.distributed.is_initialized():",
    ),
    # verl/workers/engine_workers.py:89 calls it without a backend (the call the patch catches).
    ("verl.workers.engine_workers", "TrainingWorker.__init__"): (
        "initialize_global_process_group_ray(timeout_second=None)",
    ),
    # verl/workers/engine_workers.py:273 (TrainingWorker.train_mini_batch) splits the batch into
    # mini-batches with tu.make_iterator, whose index_select (verl/utils/tensordict_utils.py:495)
    # unbinds every nested tensor along its _ragged_idx; verl restores the _ragged_idx=2 of a VLM's
    # nested 3-D position_ids (lost when the TensorDict is pickled) only per mini-batch, at line 290,
    # i.e. after the split. When the attribute comes back wrong the split fails with
    # "split_with_sizes expects split_sizes to sum exactly to <tokens> ... [4, 4, ...]" (4 = the
    # position rows of Qwen2.5-VL). Not CPU-specific; upstream fix: call maybe_fix_3d_position_ids(data)
    # before make_iterator.
    ("verl.workers.engine_workers", "TrainingWorker.train_mini_batch"): (
        "dataloader = tu.make_iterator(",
        "maybe_fix_3d_position_ids(mini_batch_td)",
    ),
    ("verl.utils.tensordict_utils", "make_iterator"): ("yield index_select_tensor_dict(tensordict, idx)",),
    # verl/utils/tensordict_utils.py:910-916 (maybe_fix_3d_position_ids) sets _ragged_idx=2 on any nested
    # 3-D position_ids. When every sequence of a batch has the same length (all responses cut at
    # max_tokens, common with a tiny policy) the nested tensor was built from equal (4, L) pieces
    # ragged along the 4 rows, and relabelling it makes the next split fail with the message above.
    # The replacement rebuilds such a tensor ragged along the tokens. Upstream fix: build position_ids
    # with nested_tensor_from_tensor_list(..., ragged_idx=2) whatever the lengths.
    ("verl.utils.tensordict_utils", "maybe_fix_3d_position_ids"): (
        'if "position_ids" in data.keys() and data["position_ids"].dim() == 3 and data["position_ids"].is_nested:',
        'data["position_ids"]._ragged_idx = 2',
    ),
    # verl/workers/engine/fsdp/transformer_impl.py:460-463 gives a forward-only FSDP2 module (the reference
    # model of a full-weight run) CPUOffloadPolicy(pin_memory=True); torch pins the sharded parameters
    # (torch/distributed/fsdp/_fully_shard/_fsdp_param.py:398), and pin_memory() raises "Found no NVIDIA
    # driver" without one. The patch gives that module a CPUOffloadPolicy that never pins (pinning only speeds
    # host-to-GPU copies; on the CPU platform there are none). Looked up by the module-level name (line 43).
    ("verl.workers.engine.fsdp.transformer_impl", "FSDPEngine._build_fsdp_module"): (
        "if self.engine_config.offload_policy or self.engine_config.forward_only:",
        "offload_policy = CPUOffloadPolicy(pin_memory=True)",
    ),
}

_MARK = "__speciarl_cpu_patch__"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs hooks on a module right after its first import, in this process and in its forks."""

    def __init__(self) -> None:
        self.hooks: dict[str, list[Callable[[ModuleType], None]]] = {}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, hooks = spec.loader, self.hooks
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            for hook in hooks.pop(fullname, []):
                hook(module)

        loader.exec_module = exec_module
        return spec


_AFTER_IMPORT = _AfterImport()


def after_import(module_name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` now if ``module_name`` is imported, else right after it is (patches of heavy modules)."""
    module = sys.modules.get(module_name)
    if module is not None:
        hook(module)
        return
    _AFTER_IMPORT.hooks.setdefault(module_name, []).append(hook)
    if _AFTER_IMPORT not in sys.meta_path:
        sys.meta_path.insert(0, _AFTER_IMPORT)


def _gloo_process_group(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap verl's ``initialize_global_process_group_ray``: no backend given means plain ``gloo``."""

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second: Any = None, backend: str | None = None) -> Any:
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    setattr(initialize_global_process_group_ray, _MARK, True)
    return initialize_global_process_group_ray


def maybe_fix_3d_position_ids(data: Any) -> None:
    """Replacement of verl's ``maybe_fix_3d_position_ids``: nested 3-D position ids end up ragged along the tokens.

    verl's version only relabels the ragged dim (``_ragged_idx = 2``); that is right when the
    tensor was built ragged along the tokens and lost the label in a pickle, wrong when it was
    built from equal-length pieces ragged along the position rows. Here the offsets decide.
    """
    from verl.utils.tensordict_utils import nested_tensor_from_tensor_list

    if "position_ids" not in data:
        return
    positions = data["position_ids"]
    if not (positions.is_nested and positions.dim() == 3):
        return
    values, offsets = positions.values(), positions.offsets()
    lengths = (offsets[1:] - offsets[:-1]).tolist()
    if values.dim() == 2 and sum(lengths) == values.shape[0] and sum(lengths) != values.shape[1]:
        # pieces (rows, L) were concatenated along the rows: rebuild them ragged along the tokens
        data["position_ids"] = nested_tensor_from_tensor_list(list(values.split(lengths, dim=0)), ragged_idx=2)
    else:
        positions._ragged_idx = 2


def _fixed_position_ids_first(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap verl's ``make_iterator``: put the nested position ids right before splitting the batch."""

    @functools.wraps(original)
    def make_iterator(tensordict: Any, *args: Any, **kwargs: Any) -> Any:
        maybe_fix_3d_position_ids(tensordict)
        return original(tensordict, *args, **kwargs)

    setattr(make_iterator, _MARK, True)
    return make_iterator


def _unpinned_offload_policy(transformer_impl: ModuleType) -> None:
    """verl's FSDP engine module gets a ``CPUOffloadPolicy`` whose ``pin_memory`` is always False."""
    policy = transformer_impl.CPUOffloadPolicy
    if policy is None or getattr(policy, _MARK, False):
        return

    @dataclasses.dataclass
    class CPUOffloadPolicy(policy):  # a subclass: torch's isinstance checks still hold
        def __post_init__(self) -> None:
            self.pin_memory = False

    setattr(CPUOffloadPolicy, _MARK, True)
    transformer_impl.CPUOffloadPolicy = CPUOffloadPolicy


def apply_cpu_patches() -> list[str]:
    """Apply every patch (idempotent); returns ``module.name`` of each function patched by this call."""
    import verl.utils.distributed as distributed
    import verl.utils.tensordict_utils as tensordict_utils

    done = []
    if tensordict_utils.maybe_fix_3d_position_ids is not maybe_fix_3d_position_ids:
        tensordict_utils.maybe_fix_3d_position_ids = maybe_fix_3d_position_ids
        done.append("verl.utils.tensordict_utils.maybe_fix_3d_position_ids")
    for module_name in (
        "verl.workers.engine_workers",
        "verl.workers.engine.base",
        "verl.workers.engine_workers_tinker",
    ):
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, "maybe_fix_3d_position_ids", None) not in (
            None,
            maybe_fix_3d_position_ids,
        ):
            module.maybe_fix_3d_position_ids = maybe_fix_3d_position_ids
            done.append(f"{module_name}.maybe_fix_3d_position_ids")
    if not getattr(tensordict_utils.make_iterator, _MARK, False):
        tensordict_utils.make_iterator = _fixed_position_ids_first(tensordict_utils.make_iterator)
        done.append("verl.utils.tensordict_utils.make_iterator")
    current = distributed.initialize_global_process_group_ray
    if not getattr(current, _MARK, False):
        patched = _gloo_process_group(current)
        distributed.initialize_global_process_group_ray = patched
        done.append("verl.utils.distributed.initialize_global_process_group_ray")
    patched = distributed.initialize_global_process_group_ray
    # modules that imported the function by name before the patch keep the old binding
    for module_name in ("verl.workers.engine_workers", "verl.checkpoint_engine.base"):
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, "initialize_global_process_group_ray", patched) is not patched:
            module.initialize_global_process_group_ray = patched
            done.append(f"{module_name}.initialize_global_process_group_ray")
    # heavy modules (torch's FSDP, vLLM): patched when a process imports them, not at ``import verl``
    after_import("verl.workers.engine.fsdp.transformer_impl", _unpinned_offload_policy)
    from speciarl_verl.cpu_debug.vllm_patches import apply_vllm_patches

    done.extend(apply_vllm_patches())
    return done
