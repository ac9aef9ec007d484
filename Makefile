# Two entry points for a fresh machine: `make demo` (the main job on built-in virtual patients)
# and `make test` (the test suite). Each creates .venv on first use, from requirements/lock.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-out
# torch is installed on its own, first: the CPU build, found through pip's find-links. The lock
# leaves torch out (but holds its requirements), and is installed with --no-deps, so nothing in
# it can pull a multi-GB CUDA torch or nvidia-* / triton wheels.
TORCH := torch==2.13.0
# Extra pip flags for that one install, e.g. --index-url URL (PyTorch's CPU wheel index) on
# a machine whose pip has no local CPU wheel.
TORCH_PIP ?=
LOCK := requirements/lock.txt
# Where uv finds torch==2.13.0+cpu when it resolves the lock (a folder or an index page).
TORCH_WHEELS ?= /opt/wheels
UV ?= $(shell command -v uv 2>/dev/null || echo $(VENV)/bin/uv)

.PHONY: venv demo test bench docs lock clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3
	$(PY) -m pip install -q --no-deps $(TORCH_PIP) $(TORCH)
	$(PY) -m pip install -q --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	# Fails when the lock misses a requirement of something installed (e.g. after editing
	# pyproject.toml without `make lock`).
	$(PY) -m pip check
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/synthmed demo --out $(DEMO_OUT)

test: venv
	$(PY) -m pytest -q

# Every script in benchmarks/ in a quick form (a check that each still runs, minutes on a laptop),
# outputs in bench-out/; not part of `make test`. The project's figures are in
# benchmarks/RESULTS.md, each with the full command that measured it.
# `make bench BENCH_ARGS="--only ingest"`, `BENCH_ARGS="--skip reid whitebox"`, `BENCH_ARGS=--list`.
BENCH_ARGS ?=
bench: venv
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

# The CLI reference, docs/cli.md, regenerated from the typer app (tests/test_docs.py checks it).
docs: venv
	$(PY) -m synthmed.cli.docs --out docs/cli.md

# Re-resolve requirements/lock.txt from pyproject.toml (runtime + the dev extra). Pins already in
# the lock are kept where pyproject still allows them; `make lock UPGRADE=1` moves every package
# to its newest allowed release. Review the diff (no nvidia-*, no triton, no torch) and commit it.
lock:
	@test -x "$(UV)" || { $(MAKE) venv && $(PY) -m pip install -q uv==0.13.9; }
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 \
	    --override requirements/torch-cpu.txt --no-emit-package torch \
	    --find-links $(TORCH_WHEELS) $(if $(UPGRADE),--upgrade) \
	    --custom-compile-command "make lock" -o $(LOCK)
	@! grep -E -i '^(nvidia|triton|torch)' $(LOCK) || { echo "lock pulls CUDA or torch; fix pyproject.toml" >&2; exit 1; }

clean:
	rm -rf $(VENV) $(DEMO_OUT)
