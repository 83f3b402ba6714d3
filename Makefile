# Two commands for a fresh machine:
#   make demo   create .venv if missing, install the locked environment, run the main job on CPU
#   make test   same set-up, lint (ruff check + format check), run the whole test suite
# and two for maintainers:
#   make lock   re-resolve requirements/*.lock and gpu-constraints.txt (after a dependency change)
#   make policy rebuild the shipped tiny policy (speciarl_verl/cpu_debug/shipped_policy) with the builder's defaults
#   make policy-hidden  the graded-visibility task's policy (shipped_policy_hidden), going on from shipped_policy
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
LOCK := requirements/cpu-test.lock
# uv installs the lock; its own version is the one the lock pins.
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK))
# Package indexes this machine's pip is configured with (a local wheel mirror, say) are offered to
# uv as well; the hashes in the lock decide what may be installed, whichever index serves it.
PIP_INDEXES := $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
UV_INDEXES := $(if $(PIP_INDEXES),$(addprefix --extra-index-url ,$(PIP_INDEXES)) --index-strategy unsafe-best-match)
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled \
	TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0

SHIPPED_POLICY := speciarl_verl/cpu_debug/shipped_policy
SHIPPED_HIDDEN_POLICY := speciarl_verl/cpu_debug/shipped_policy_hidden

.PHONY: demo test install lock lint clean policy policy-hidden

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(LOCK) pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) --require-hashes $(UV_INDEXES) $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(OFFLINE) $(PY) -m speciarl_verl.demo

test: lint
	$(OFFLINE) $(PY) -m pytest -q --durations=15

lock: install
	UV=$(UV) bash requirements/lock.sh

policy: install
	rm -rf $(SHIPPED_POLICY)
	$(OFFLINE) $(PY) -m speciarl_verl.cpu_debug.tiny_policy build --out $(SHIPPED_POLICY)
	$(OFFLINE) $(PY) -m speciarl_verl.cpu_debug.tiny_policy check --policy $(SHIPPED_POLICY)

policy-hidden: install
	rm -rf $(SHIPPED_HIDDEN_POLICY)
	$(OFFLINE) $(PY) -m speciarl_verl.cpu_debug.tiny_policy build --task hidden --out $(SHIPPED_HIDDEN_POLICY)
	$(OFFLINE) $(PY) -m speciarl_verl.cpu_debug.tiny_policy check --task hidden --policy $(SHIPPED_HIDDEN_POLICY)

lint: install
	$(PY) -m ruff check speciarl_verl tests examples benchmarks
	$(PY) -m ruff format --check speciarl_verl tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
