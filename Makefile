# Two commands on a fresh machine: `make train` and `make test`. Everything else installs itself.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train eval test test-fast lint format bench clean

install: $(STAMP)

# Reinstalls only when pyproject.toml changes. `editable_mode=compat` keeps the repo on sys.path
# so Hydra still discovers the hydra_plugins namespace (hydra issue 2359).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py model=deep_nested

eval: $(STAMP)
	$(BIN)/python eval.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The edit loop: everything but the tests marked slow (subprocesses, venvs, signals), in < 60 s.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

# Not part of `make test`: timings on a shared machine are measured, never asserted.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs multirun build *.egg-info
