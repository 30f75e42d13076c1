# The two commands a user needs: `make run` and `make test`.
# Both create .venv when missing and install what the studio needs; torch is
# installed first and pinned (a CPU build here). On a CUDA machine:
#   make run TORCH=torch
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV  := .venv
BIN   := $(VENV)/bin
ARGS  ?=
# One thread per core is fastest on small CPUs, and PASSIVE waiting stops
# idle OpenMP threads from spinning against the server's own threads.
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: run test install install-test chromium bench train-embedded eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps make the second run instant; they are redone when pyproject changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; browser tests will be skipped"; }

run: install
	$(BIN)/imagestudio serve $(ARGS)

test: install-test chromium
	$(BIN)/python -m pytest $(ARGS)

# Both benchmarks with their defaults; each takes options when run alone:
#   .venv/bin/python -m bench.bench_engine --help
bench: install-test
	$(BIN)/python -m bench.bench_engine
	$(BIN)/python -m bench.bench_server

# Training keeps both cores busy with many small ops: PASSIVE waiting there costs a
# futex sleep/wake per op (measured: half the CPU time in the kernel, 4.2 s per UNet
# step against 3.4 s with libgomp's default policy).
train-embedded: install
	env -u OMP_WAIT_POLICY $(BIN)/imagestudio train $(ARGS)

eval: install
	env -u OMP_WAIT_POLICY $(BIN)/imagestudio eval $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
