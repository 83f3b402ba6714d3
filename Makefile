# Two commands for a fresh machine:
#   make demo   create .venv if missing, install, run the main job on CPU
#   make test   same set-up, run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch first: verl does not pin it, and an unpinned resolve pulls the newest CUDA build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
CPU_PINS := verl==0.9.1 transformers==5.10.4 qwen-vl-utils==0.0.14
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled \
	TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0

.PHONY: demo test install lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[train,test]" $(CPU_PINS)
	touch $@

install: $(VENV)/.installed

demo: install
	$(OFFLINE) $(PY) -m speciarl_verl.demo

test: install
	$(OFFLINE) $(PY) -m pytest -q

lint: install
	$(PY) -m ruff check speciarl_verl tests examples benchmarks
	$(PY) -m ruff format --check speciarl_verl tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
