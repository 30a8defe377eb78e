# EchoLatent set-up. `make demo` runs the whole workflow on the default config,
# `make test` runs the test suite. Both create .venv on first use.
#
# GPU users: override the torch requirement, e.g.
#   make setup TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
# or use the per-rule conda envs (snakemake --sdm conda).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= all
BIN := $(VENV)/bin

.PHONY: setup slurm demo figures readme-figures browser test clean-results

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

# The SLURM executor plugin in the same environment, the project still installed editable
# (a plain `pip install ".[slurm]"` would replace the editable install).
slurm: setup
	$(BIN)/pip install --quiet -e ".[test,slurm]"

demo: setup
	$(BIN)/snakemake --cores $(CORES)

# Every figure of the study redrawn from results/ (after `make demo`; trains nothing).
figures: setup
	$(BIN)/snakemake figures --cores $(CORES)

# The README's example figures (docs/figures/), small copies of a default run's figures.
readme-figures: figures
	$(BIN)/python -m echolatent.figures.readme results/figures docs/figures

test: setup browser
	$(BIN)/python -m pytest -q --durations=15

# Headless Chromium, for the test that opens the HTML report; where it cannot be installed
# (no apt-get, not root, offline) that test is skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  ( command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium ) || \
	  echo "headless Chromium not installed: the report test will be skipped"

clean-results:
	rm -rf results logs
