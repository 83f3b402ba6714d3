"""Turns a verl process into a CPU debugging process: import it through ``VERL_USE_EXTERNAL_MODULES``.

Importing this module (and only this one; the package's ``verl.plugins`` entry point does not)
registers the CPU platform and the ``hf_cpu`` rollout with verl's registries and applies
:mod:`speciarl_verl.cpu_debug.verl_patches`. A CPU run passes it to every Ray process::

    VERL_USE_EXTERNAL_MODULES=speciarl_verl.cpu_debug.activate   # this module
    VERL_PLATFORM=cpu                                            # verl's platform override -> PlatformCPU
    VERL_ENGINE_DEVICE=cuda                                      # verl's engine-lookup override, see below

(``speciarl_verl/config/cpu_debug/tiny_cpu.yaml`` sets all three in Ray's runtime_env.) This is
the one module of the package whose import changes verl's behaviour: that is its job, and
nothing imports it unasked.

verl imports this module from inside ``import verl``, so it must not import, at module level,
anything that may itself be the module a process was importing when ``verl`` got initialised
(a circular import): the rollout classes are registered by dotted path and loaded lazily.

verl's FSDP engine is registered for devices ``cuda`` and ``npu`` only. Its code is device
neutral (it asks the platform for the device), so instead of registering it for ``cpu`` from
here (which would import the whole engine stack into every process at ``import verl``) the run
sets verl's own ``VERL_ENGINE_DEVICE`` override to look the engine up under ``cuda``.
"""

from __future__ import annotations

import importlib

from verl.workers.rollout.base import _ROLLOUT_REGISTRY
from verl.workers.rollout.replica import RolloutReplicaRegistry

from speciarl_verl.cpu_debug import platform as _platform
from speciarl_verl.cpu_debug.verl_patches import apply_cpu_patches

ROLLOUT_NAME = "hf_cpu"
ROLLOUT_MODULE = "speciarl_verl.cpu_debug.hf_rollout"
#: What a CPU run's Ray processes need in their environment (the config's runtime_env.env_vars).
CPU_RUN_ENV = {
    "VERL_USE_EXTERNAL_MODULES": __name__,
    "VERL_PLATFORM": _platform.PLATFORM_NAME,
    "VERL_ENGINE_DEVICE": "cuda",
}


def _load_replica() -> type:
    return importlib.import_module(ROLLOUT_MODULE).HFCpuReplica


def register_hf_cpu_rollout() -> None:
    """Register ``hf_cpu`` in verl's rollout adapter dict and ``RolloutReplicaRegistry`` (idempotent)."""
    _ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = f"{ROLLOUT_MODULE}.HFCpuServerAdapter"
    RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)


register_hf_cpu_rollout()
apply_cpu_patches()
