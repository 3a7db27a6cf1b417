# The two front-door commands (see README.md):
#   make demo   set up, then render the bundled example clip + song into out/demo.mp4
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Trained weights for tests and CI (never committed); a user's machine has none and downloads ImageNet weights.
SHARED_WEIGHTS := $(abspath ../shared/models/inception_v3_notop_q8.weights.h5)
export DREAMVID_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)),$(SHARED_WEIGHTS),)

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,jax]"
	touch $@

demo: setup
	mkdir -p out
	$(VENV)/bin/dreamvid render examples/bigbuckbunny.mp4 --song examples/groove.wav --preset lysergic \
		--max-side 360 -o out/demo.mp4 --overwrite
	$(VENV)/bin/dreamvid dream examples/chelsea.png --preset lysergic -o out/chelsea-lysergic.png --overwrite

# `make test` covers what `make setup` installs: the test and jax extras. DREAMVID_REQUIRE names the optional parts
# a run must cover (tests/conftest.py): with one missing the run stops at once, and a skipped test of one fails it.
# The torch, Ray, UI and browser tests run when those are installed and are skipped otherwise; CI installs them
# all and requires them (DREAMVID_REQUIRE="jax torch ui browser ray live", see .ci/run).
DREAMVID_REQUIRE ?= jax
test: setup
	DREAMVID_REQUIRE="$(DREAMVID_REQUIRE)" $(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/dream_vs_tutorial.py
	$(PY) benchmarks/render.py

clean:
	rm -rf out .pytest_cache
