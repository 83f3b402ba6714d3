"""The benchmark scripts under test, loaded as modules (benchmarks/ is no package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as the module ``<name>_benchmark``; yields it, then forgets it."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def miniature():
    yield from load_benchmark("miniature")


@pytest.fixture(scope="module")
def faults():
    yield from load_benchmark("faults")
