# etalumis: set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PLUGINS := plugins/toy_tau_decay plugins/composite_cure plugins/cnn3d_lstm plugins/sherpa_adapter \
           plugins/pythia8_adapter
INSTALLED := $(VENV)/.installed
# The C++ PPX test simulators need a compiler, ZeroMQ and FlatBuffers (Debian packages).
SYSTEM_PACKAGES := g++ libzmq3-dev libflatbuffers-dev flatbuffers-compiler

.PHONY: install demo test system-deps pyprob-venv pythia8 network bench clean

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

# The proposal network that ships with the toy_tau_decay plugin (for engine=ic and ic_smc):
# the calorimeter's axis projections and an LSTM, trained online from the simulator with seed 0
# on one thread, so the same machine gives the same network. About 90 minutes on two cores (the
# trainer and one simulator worker); a killed run resumes from its checkpoint in
# build/tau_network. The result replaces the files in the plugin's network/ folder (network.pt,
# its training config, log, loss plot and summary).
TAU_NETWORK := plugins/toy_tau_decay/etalumis_toy_tau_decay/network
TAU_NETWORK_TRAINING := simulator=toy_tau_decay proposal=calorimeter_projections seed=0 \
	num_traces=1800000 batch_size=64 network_dtype=float16 proposal.network.embedding_dim=128 \
	proposal.network.lstm_dim=128 proposal.network.address_embedding_dim=16 \
	proposal.network.head_hidden_dim=32 proposal.network.mixture_components=5 \
	trainer.params.num_threads=1 trainer.params.data_workers=1 trainer.params.lr_decay_power=1.0 \
	trainer.params.validation_size=256 trainer.params.validation_interval=500 \
	trainer.params.checkpoint_interval=500 +trainer.params.prescan_traces=1000

network: install
	$(BIN)/etalumis train $(TAU_NETWORK_TRAINING) output=build/tau_network \
	    hydra.run.dir=build/tau_network/run
	mkdir -p $(TAU_NETWORK)
	cp build/tau_network/network.pt build/tau_network/summary.json \
	    build/tau_network/training_log.csv build/tau_network/loss.png $(TAU_NETWORK)/
	cp build/tau_network/run/.hydra/config.yaml $(TAU_NETWORK)/training_config.yaml

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
