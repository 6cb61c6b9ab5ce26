# etalumis: set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PLUGINS := plugins/toy_tau_decay plugins/composite_cure plugins/cnn3d_lstm plugins/sherpa_adapter \
           plugins/pythia8_adapter
INSTALLED := $(VENV)/.installed
# The C++ PPX test simulators need a compiler, ZeroMQ and FlatBuffers (Debian packages).
SYSTEM_PACKAGES := g++ libzmq3-dev libflatbuffers-dev flatbuffers-compiler

.PHONY: install demo test system-deps pyprob-venv pythia8 bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# CPU build of torch first: an unpinned torch would pull several GB of CUDA packages.
$(INSTALLED): $(BIN)/python pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dask,test]' $(addprefix -e ,$(PLUGINS))
	touch $@

install: $(INSTALLED)

system-deps:
	@if command -v g++ >/dev/null && command -v flatc >/dev/null && [ -f /usr/include/zmq.h ] \
	    && [ -f /usr/include/flatbuffers/flatbuffers.h ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES); \
	else \
	    echo "missing: $(SYSTEM_PACKAGES) (install them with apt-get as root; C++ tests will skip)"; \
	fi

# The main job on its embedded default: a tau-decay event simulated with known truth, inferred.
demo: install
	$(BIN)/etalumis

test: install system-deps pyprob-venv pythia8
	$(BIN)/python -m pytest

# Pythia 8.318 from PyPI's source distribution, its PPX front end and in-process library (a few
# minutes the first time, cached in plugins/pythia8_adapter/build/). Without a compiler the Pythia
# tests skip.
pythia8: install system-deps
	@if command -v g++ >/dev/null && command -v flatc >/dev/null && [ -f /usr/include/zmq.h ]; then \
	    $(MAKE) --no-print-directory -C plugins/pythia8_adapter PYTHON=$(abspath $(BIN)/python); \
	else echo "g++, flatc or ZeroMQ missing: Pythia 8 is not built (its tests will skip)"; fi

# pyprob 1.5.0 pins flatbuffers 2.0, which clashes with ours: it gets its own environment.
pyprob-venv: benchmarks/.venv-pyprob/bin/python
benchmarks/.venv-pyprob/bin/python:
	$(PYTHON) -m venv benchmarks/.venv-pyprob
	benchmarks/.venv-pyprob/bin/python -m pip install -q --upgrade pip
	benchmarks/.venv-pyprob/bin/python -m pip install -q torch==2.13.0
	benchmarks/.venv-pyprob/bin/python -m pip install -q pyprob==1.5.0

bench: install pyprob-venv
	cd benchmarks && for b in bench_*.py; do echo "== $$b"; ../$(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) benchmarks/.venv-pyprob outputs multirun plugins/pythia8_adapter/build
