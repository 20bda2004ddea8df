# Two commands on a fresh machine: `make train` and `make test`. Everything else installs itself.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# ACCEL=cpu (the default) installs CPU-only JAX; ACCEL=cuda12 or cuda13 adds JAX's CUDA plugin for
# NVIDIA GPUs (pyproject.toml's extras of those names). The choice is remembered in .venv/.accel,
# so later `make` commands keep it; `make install ACCEL=cpu` goes back to CPU-only.
ACCELS := cpu cuda12 cuda13
ACCEL ?= $(or $(shell cat $(VENV)/.accel 2>/dev/null),cpu)
ifeq ($(filter $(ACCEL),$(ACCELS)),)
$(error ACCEL=$(ACCEL) is unknown; valid: $(ACCELS))
endif
EXTRAS := dev$(if $(filter cpu,$(ACCEL)),,,$(ACCEL))
STAMP := $(VENV)/.installed-$(ACCEL)

.PHONY: install train eval test test-fast lint docs format bench clean

install: $(STAMP)

# Reinstalls when pyproject.toml or ACCEL changes. `editable_mode=compat` keeps the repo on
# sys.path so Hydra still discovers the hydra_plugins namespace (hydra issue 2359). pip compiles
# the bytecode of what it installs but not an editable install's sources: compiled here, they are
# not compiled again at every start where PYTHONDONTWRITEBYTECODE is set.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(filter cpu,$(ACCEL)),$(BIN)/python -m pip freeze | grep -o '^jax-cuda[0-9]*-[a-z]*' \
		| xargs -r $(BIN)/python -m pip uninstall --quiet --yes)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' --config-settings editable_mode=compat
	$(BIN)/python -m compileall -q zoo hydra_plugins > /dev/null
	rm -f $(VENV)/.installed*
	echo $(ACCEL) > $(VENV)/.accel
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py model=deep_nested

eval: $(STAMP)
	$(BIN)/python eval.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The edit loop: tests/unit only (tests/e2e is marked slow: subprocesses, venvs, signals; so are
# the few unit tests that compile many programs).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

# Not part of `make test`: timings on a shared machine are measured, never asserted.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py
	cd benchmarks && ../$(BIN)/python lm_bench.py
	$(BIN)/python benchmarks/vision_bench.py
	$(BIN)/python benchmarks/predict_bench.py --rows 50000

# Style, then the import contracts of pyproject.toml (layers, JAX-free config, no cycles).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The documentation site into site/, offline, every warning an error (mkdocs.yml: strict).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs multirun build site *.egg-info
