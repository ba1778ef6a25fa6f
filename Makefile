# photoz-tools: the two Quick-start targets and a few helpers.
# `make test` and `make demo` do all the set-up themselves on a fresh Debian/Ubuntu machine.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= cnn,jax,sdss,mock,qp,scale,dev

.PHONY: test demo install system-deps lint format man bench bench-mock clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; install Python 3.11 (apt-get install python3.11 python3.11-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

# SWarp (the paper's resampler, for the cross-check) and pandoc (man pages): Debian packages,
# installed when we are root on a Debian-like system. In CI (CI=true) a failed install fails the
# run, so their tests can never turn into silent skips there; elsewhere those tests skip with a reason.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  if ! { command -v SWarp || command -v swarp; } >/dev/null 2>&1 || ! command -v pandoc >/dev/null 2>&1; then \
	    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swarp pandoc >/dev/null); then \
	      if [ "$${CI:-}" = true ]; then echo "make: apt-get install swarp pandoc failed (CI=true: failing the run)" >&2; exit 1; fi; \
	      echo "make: could not apt-get install swarp pandoc; their tests will skip" >&2; \
	    fi; \
	  fi; \
	elif [ "$${CI:-}" = true ]; then echo "make: CI=true but not root on Debian: cannot install swarp pandoc" >&2; exit 1; \
	else echo "make: not root on Debian: SWarp/pandoc tests skip unless already installed" >&2; fi

test: install system-deps
	$(PY) -m pytest -q --durations=15

demo: install
	$(PY) -m photoz_tools.demo

lint:
	$(VENV)/bin/ruff check photoz_tools tests benchmarks
	$(VENV)/bin/ruff format --check photoz_tools tests benchmarks

format:
	$(VENV)/bin/ruff format photoz_tools tests benchmarks
	$(VENV)/bin/ruff check --fix photoz_tools tests benchmarks

man: install
	$(PY) -m photoz_tools.cli.manpages man

# speed and memory figures recorded in BENCHMARKS.md (tens of minutes; ~2 GB free under /tmp)
bench: install system-deps
	$(PY) benchmarks/tables_rss.py --repeats 3
	$(PY) benchmarks/score_speed.py --point-rows 1e7 --pdf-rows 1e6 --e2e-rows 1e6
	$(PY) benchmarks/model_speed.py --arch paper --n 512 --repeats 3 --train-batch 128
	$(PY) benchmarks/model_memory.py --sizes 1000 4000 --buffer-mb 32
	$(PY) benchmarks/cutout_speed.py --runs 5 --n 200 --n-swarp 10

bench-mock: install
	benchmarks/mock_large.sh

clean:
	rm -rf $(VENV) demo-output build *.egg-info
