"""A verl platform for CPU debugging runs: device ``cpu``, process-group backend ``gloo``.

verl 0.9.1 knows only accelerator platforms (nvidia, huawei, amd) and falls back to ``nvidia``
on a CPU box, which then asks for NCCL. :class:`PlatformCPU` is registered with verl's
``PlatformRegistry`` under the name ``cpu``; a run selects it with ``VERL_PLATFORM=cpu`` (the
platform manager's own override) after :mod:`speciarl_verl.cpu_debug.activate` has been imported.

Two choices keep the rest of verl unchanged:

- the Ray resource stays ``GPU``: verl's resource pools ask Ray for GPUs with ``use_gpu=True``
  hard-coded, so a CPU run declares fake logical GPUs (``ray_init.num_gpus``) and each worker
  holds one of them while computing on the CPU;
- the device module is :data:`CPU_DEVICE_MODULE`, ``torch.cpu`` plus the memory calls verl makes
  on every device module (``empty_cache``, ``memory_allocated``, ...), which ``torch.cpu`` lacks.
  They report zero and do nothing, which is true of a CPU run: there is no device cache.

Example::

    VERL_PLATFORM=cpu VERL_USE_EXTERNAL_MODULES=speciarl_verl.cpu_debug.activate python -m verl.trainer.main_ppo ...
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

PLATFORM_NAME = "cpu"


def _zero(*_args: Any, **_kwargs: Any) -> int:
    return 0


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


def _cpu_device_module() -> types.ModuleType:
    """``torch.cpu`` with the CUDA-style memory calls verl uses, as no-ops that report zero."""
    module = types.ModuleType("speciarl_verl_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(module, name, getattr(torch.cpu, name))
    for name in (
        "memory_allocated",
        "memory_reserved",
        "max_memory_allocated",
        "max_memory_reserved",
    ):
        setattr(module, name, _zero)
    for name in ("empty_cache", "ipc_collect", "reset_peak_memory_stats", "set_per_process_memory_fraction"):
        setattr(module, name, _nothing)
    module.get_rng_state = torch.get_rng_state
    module.set_rng_state = torch.set_rng_state
    # verl's flops counter looks the name up in its table of accelerators; "CPU" is what it uses for torch.cpu
    module.get_device_name = lambda *_a, **_k: "CPU"
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: "cpu"
    module.set_device = _nothing
    module.synchronize = _nothing
    module.mem_get_info = lambda *_a, **_k: (0, 0)
    module.memory_stats = lambda *_a, **_k: {}
    return module


CPU_DEVICE_MODULE = _cpu_device_module()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl platform of a CPU-only debugging run (never auto-detected: select it with ``VERL_PLATFORM=cpu``)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Auto-detection must never pick a debugging platform; only VERL_PLATFORM=cpu selects it.
        return False

    def current_device(self) -> str:  # type: ignore[override]  # verl passes it to .to(); "cpu" is the device
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for the fake logical GPU of each worker; nothing reads it on the CPU.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
