"""Inference compilation across processes: a dataset and a network made with one Sherpa
process serve a fresh one, because the address dictionary on disk keeps every id."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import etalumis_core as et  # noqa: E402
from etalumis_core.data import generate_dataset  # noqa: E402
from etalumis_core.engines.ic import ICController  # noqa: E402
from etalumis_core.nn import ProposalNetwork, Trainer  # noqa: E402
from etalumis_core.simulator import run_trace  # noqa: E402
from etalumis_sherpa_adapter import AddressDictionary, SherpaSimulator  # noqa: E402

SMALL = dict(embedding_dim=8, lstm_dim=16, address_embedding_dim=4, sample_embedding_dim=4,
             head_hidden_dim=16, mixture_components=2, embedding_options={"hidden_dims": (16,)})


def _sim(binary, dictionary) -> SherpaSimulator:
    return SherpaSimulator(command=[str(binary), "{address}"], address_dictionary=dictionary,
                           timeout=10.0, startup_timeout=10.0)


def test_dataset_and_network_of_one_process_serve_a_fresh_one(sherpa_binary, tmp_path) -> None:
    study = tmp_path / "study"
    dictionary = study / "addresses.jsonl"     # beside the dataset and the network
    with _sim(sherpa_binary, dictionary) as sim:
        dataset = generate_dataset(sim, study / "dataset", 64, seed=0, chunk_size=64,
                                   progress=False)
        first_pid = sim.pid
        entries = sim.addresses.entries()
    trained_addresses = set(dataset.addresses)
    assert all(a.startswith("a") and ":" in a and len(a) < 60 for a in trained_addresses)
    torch.manual_seed(0)
    network = ProposalNetwork.for_dataset(dataset, **SMALL)
    Trainer().train(network, dataset, study / "training", steps=3, batch_size=16, plot=False,
                    progress=False)
    network.save(study / "network.pt")

    loaded = ProposalNetwork.load(study / "network.pt", simulator="sherpa")
    with _sim(sherpa_binary, dictionary) as fresh:
        # The fresh process starts from the dictionary on disk: same strings, same ids.
        assert fresh.addresses.entries() == entries
        truth = et.simulate(fresh, seed=11)
        assert fresh.pid != first_pid
        observe = {"calorimeter": truth.result["calorimeter"]}
        controller = ICController(np.random.default_rng(1), observe, loaded)
        for _ in range(24):
            trace = run_trace(fresh, controller)
            known = [a for a in trace.controlled_addresses if a in loaded.address_ids]
            unknown = [a for a in trace.controlled_addresses if a not in loaded.address_ids]
            # The network proposes at every address it was trained on; the prior is used
            # only at addresses the training data never had (rare channels).
            assert {a for a in unknown} & trained_addresses == set()
            assert {v.address for v in trace.samples() if v.log_proposal is not None} == set(known)
            assert trace.controlled_addresses[:4] == tuple(
                a for a in sorted(trained_addresses) if a.split(":")[0] in ("a0", "a1", "a2", "a3"))
        posterior = et.infer(fresh, observe=observe, engine=et.InferenceCompilation(loaded),
                             num_traces=16, seed=2, progress=False)
    assert posterior.num_traces == 16
    assert not set(posterior.metadata["ic"]["unknown_addresses"]) & trained_addresses
    # Every long address the fresh process used is in the dictionary file, under one id.
    reread = AddressDictionary.load(dictionary)
    assert reread.entries()[:len(entries)] == entries
    for a in trained_addresses:
        assert reread.compact(reread.long(a)) == a.partition("__")[0]
