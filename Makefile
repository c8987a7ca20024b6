# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the project needs at run time; installed only when missing.
# fluidsynth renders the demo world's clips; chromium (with a font) runs the page's tests,
# driven by playwright with this browser (playwright downloads none); the Java runtime
# runs Spark (WMF backend "spark", the optional extra `coldtune[spark]`, which `make test`
# installs); its post-install script fails where /usr/share/man/man1 is missing (slim images).
# OpenBLAS (single-threaded: Spark runs one task per core) is the libblas.so.3 and
# liblapack.so.3 that MLlib's ALS loads; without them it falls back to Java code, 3x
# slower at 200 factors (docs/benchmarks.md).
APT_PACKAGES := fluidsynth chromium fonts-dejavu-core openjdk-17-jre-headless libopenblas0-serial

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@# "install ok installed": a removed package keeps its config files and `dpkg -s` still succeeds
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO mkdir -p /usr/share/man/man1; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU build of torch first, so nothing below pulls a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,spark]'
	touch $(STAMP)

demo: setup
	$(BIN)/coldtune demo --workspace .cache/demo

test: setup
	$(BIN)/ruff check coldtune tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check coldtune tests benchmarks
	$(BIN)/ruff format --check coldtune tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf .cache .pytest_cache .ruff_cache
