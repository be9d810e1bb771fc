# Set-up and the two jobs of the README: `make demo` and `make test`.
# Both create .venv inside the repository on first use and reuse it afterwards.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo-data


.PHONY: demo test test-slow lint

# torch and torchvision go in first, pinned as a pair (local files on the development machines);
# everything that asks for torch later finds it satisfied.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/noldo --version
	$(BIN)/noldo build --region demo --source synthetic --out $(DEMO) --samples 64
	$(BIN)/noldo verify $(DEMO)
	$(BIN)/noldo info $(DEMO)
	$(BIN)/noldo plot $(DEMO) --sample 0 --png $(DEMO)-plots/sample-0.png
	$(BIN)/python -m benchmark.study --config benchmark/configs/study-demo.yaml --data $(DEMO)

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check noldo benchmark tests notebooks
