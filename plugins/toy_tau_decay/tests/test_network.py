"""The proposal network that ships with the plugin (made by `make network`): it loads safely,
says how it was trained, and proposes every random choice of the demo event itself."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

import etalumis_core as et
from etalumis_core.engines.ic import network_file
from etalumis_toy_tau_decay import TauDecaySimulator

pytest.importorskip("torch")
pytest.importorskip("etalumis_cnn3d_lstm")   # the network's observation embedding

NETWORK = "pkg://etalumis_toy_tau_decay/network/network.pt"
DEMO_TRUTH_SEED = 3   # the default job's event (conf/infer.yaml): tau -> pi- pi0 nu


@pytest.fixture(scope="module")
def folder():
    return os.path.dirname(network_file(NETWORK))


def test_network_loads_without_unpickling_and_says_how_it_was_trained(folder):
    from etalumis_core.nn import ProposalNetwork
    from etalumis_core.plugins import embedding_factory

    path = os.path.join(folder, "network.pt")
    assert os.path.getsize(path) < 20 * 2 ** 20
    network = ProposalNetwork.load(path, embeddings=embedding_factory)   # weights_only=True
    assert network.simulator == "toy_tau_decay"
    with open(os.path.join(folder, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(folder, "training_config.yaml")) as f:
        config = yaml.safe_load(f)
    assert network.traces_trained == summary["result"]["traces"] == config["num_traces"]
    assert config["seed"] == 0 and config["proposal"]["name"] == "calorimeter_projections"
    validation = summary["result"]["validation"]
    assert validation and validation[-1][1] < validation[0][1]   # (step, loss) pairs
    # trained on the simulator as it is configured by default
    assert config["simulator"]["params"] == TauDecaySimulator().config()
    # an engine named by the registry is given the installed embeddings
    engine = et.load_plugins().engines.create("ic_smc", network=NETWORK)
    assert engine.network.simulator == "toy_tau_decay"


def test_network_proposes_every_choice_of_the_demo_event():
    """Inference compilation on the demo event draws every controlled value from the network
    (no address falls back to the prior), and the network proposes the true channel most."""
    sim = TauDecaySimulator()
    truth = et.simulate(sim, seed=DEMO_TRUTH_SEED).result
    post = et.infer(sim, observe={"calorimeter": truth["calorimeter"]}, engine="ic",
                    network=NETWORK, num_traces=200, seed=0, progress=False, executor="serial")
    assert post.metadata["ic"]["prior_fallbacks"] == 0
    assert post.metadata["ic"]["unknown_addresses"] == {}
    _, channels = post.values_of("channel")
    proposed = np.bincount(np.asarray(channels, dtype=int))   # unweighted: the network's draws
    assert int(np.argmax(proposed)) == truth["channel"]


def test_network_guided_smc_names_the_demo_event_and_keeps_the_tau_moves_for_the_end():
    """ic_smc with the shipped network names the demo event's channel (τ → π⁻ π⁰ ν, with a
    share for its look-alike τ → K⁻ π⁰ ν); the plugin's moves of the tau momentum (which the
    network would have to score before the last round) run in the last round only, and are
    accepted there."""
    sim = TauDecaySimulator()
    truth = et.simulate(sim, seed=DEMO_TRUTH_SEED).result
    post = et.infer(sim, observe={"calorimeter": truth["calorimeter"]}, engine="ic_smc",
                    network=NETWORK, num_traces=50, seed=0, progress=False, executor="serial")
    rounds = post.metadata["round_stats"]
    assert all(r["tried_model"] == 0 for r in rounds[:-1]), rounds
    assert rounds[-1]["beta"] == 1.0 and rounds[-1]["acceptance_model"] > 0.5, rounds[-1]
    assert post.metadata["ic"]["prior_fallbacks"] == 0
    probabilities = post.marginal("channel").probabilities()
    # The rest goes to the kaon the calorimeter cannot tell from the pion (smc: about 0.1);
    # the recycled proposals of the last sweep give the other channels next to nothing (1e-5:
    # a split's landings, near the data since the split works in the lab).
    assert probabilities[truth["channel"]] > 0.75, probabilities
    assert sum(p for c, p in probabilities.items() if c not in (truth["channel"], 9)) < 1e-3
