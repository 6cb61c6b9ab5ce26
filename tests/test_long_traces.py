"""Long loops in inference compilation: instances of an address beyond ``max_instances`` share
layers, long trace types train in checkpointed segments, and a trace of 10^5 random choices at
one call site trains in bounded memory and gets proposals from a loaded network."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import etalumis_core as et  # noqa: E402
from etalumis_core import models  # noqa: E402
from etalumis_core.data.records import collate, record_from_trace  # noqa: E402
from etalumis_core.errors import EtalumisError  # noqa: E402
from etalumis_core.nn import ProposalNetwork, Trainer  # noqa: E402

SMALL = dict(embedding_dim=8, lstm_dim=16, address_embedding_dim=4, sample_embedding_dim=4,
             head_hidden_dim=16, mixture_components=2, embedding_options={"hidden_dims": [16]})


def long_loop(n: int) -> None:
    """One call site drawing ``n`` uniforms (a rejection loop), after a named normal."""
    x = et.sample(et.Normal(0.0, 1.0), name="x")
    for _ in range(n):
        et.sample(et.Uniform(0.0, 1.0))
    et.observe(et.Normal(x, 1.0), name="y")


def _loop_simulator(n: int) -> et.PythonSimulator:
    return et.PythonSimulator(long_loop, name="long_loop", observations={"y": ()}, args=(n,))


def _network(simulator, seed: int = 0, **options) -> ProposalNetwork:
    torch.manual_seed(seed)
    return ProposalNetwork.for_simulator(simulator, **{**SMALL, **options})


def _batch(simulator, n: int = 4, seed: int = 0):
    return collate([record_from_trace(et.simulate(simulator, seed=seed + i), i) for i in range(n)])


def _loss_and_gradient(net: ProposalNetwork, batch) -> tuple[float, list]:
    loss = net.loss(batch)
    loss.backward()
    return float(loss.detach()), [p.grad if p.grad is not None else torch.zeros_like(p)
                                  for p in net.parameters()]


def test_instances_beyond_the_bound_share_layers_and_say_so_once(caplog):
    parameters = []
    for n in (40, 400):
        net = _network(_loop_simulator(n), max_instances=16)
        with caplog.at_level(logging.WARNING, logger="etalumis_core.nn.network"):
            net.prescan(_batch(_loop_simulator(n), 2))
        assert len(net.sites) == 1 + 16   # x, and instances 1..16 of the loop's site
        parameters.append(sum(p.numel() for p in net.parameters()))
    assert parameters[0] == parameters[1]  # independent of the loop's length
    warnings = [r for r in caplog.records if "share the layers of instance 16" in r.message]
    assert len(warnings) == 2             # once per network
    loop = next(a for a, *_ in net.sites if a.endswith("__Uniform__16"))
    assert net.layer_address(loop[:-2] + "400") == loop
    assert net.layer_address(loop) == loop
    assert net.layer_id(loop[:-2] + "400") == net.address_ids[loop]


def test_traces_within_the_bound_train_exactly_as_without_it():
    # The hidden Markov model reaches instance 16 of its sites: the bound changes nothing.
    sim = models.make_hidden_markov_model()
    batch = _batch(sim, 8)
    losses = []
    for bound in (16, None):
        net = _network(sim, max_instances=bound)
        net.prescan(batch)
        net.fit_normalizer(batch)
        losses.append(_loss_and_gradient(net, batch))
    assert losses[0][0] == losses[1][0]
    assert all(torch.equal(a, b) for a, b in zip(losses[0][1], losses[1][1]))


def test_checkpointed_segments_give_the_same_loss_and_gradient():
    sim = _loop_simulator(50)
    batch = _batch(sim, 3)
    results = []
    for steps in (7, 10**6):   # 8 segments of at most 7 steps; one pass
        net = _network(sim, checkpoint_steps=steps)
        net.prescan(batch)
        net.fit_normalizer(batch)
        results.append(_loss_and_gradient(net, batch))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_online_training_grows_shared_layers_once(tmp_path):
    sim = _loop_simulator(40)
    net = _network(sim)
    result = Trainer(num_threads=1, progress=False, plot=False).train(
        net, sim, tmp_path, steps=2, batch_size=2)
    assert len(result.network.sites) == 1 + 16
    assert all(math.isfinite(v) for v in result.losses)


def test_the_network_file_keeps_the_bound_and_older_files_stay_unbounded(tmp_path):
    net = _network(_loop_simulator(10), max_instances=4)
    net.prescan(_batch(_loop_simulator(10), 1))
    net.save(tmp_path / "net.pt")
    loaded = ProposalNetwork.load(tmp_path / "net.pt")
    assert loaded.config["max_instances"] == 4 and len(loaded.sites) == 1 + 4
    assert loaded.layer_address("s__Uniform__9") == "s__Uniform__4"
    header = net.header()
    del header["config"]["max_instances"]   # as written before the bound existed
    assert ProposalNetwork.from_header(header).config["max_instances"] is None


@pytest.mark.parametrize("option", [{"max_instances": 0}, {"checkpoint_steps": 0}])
def test_a_bound_below_one_is_one_clear_error(option):
    with pytest.raises(EtalumisError, match=f"{next(iter(option))} must be at least 1"):
        _network(_loop_simulator(1), **option)


# Run in a fresh process, so that its peak resident memory is this training's alone.
MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    from test_long_traces import SMALL, _batch, _loop_simulator, _network
    from etalumis_core.engines.ic import ICController
    from etalumis_core.nn import ProposalNetwork
    import etalumis_core as et

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10

    sim = _loop_simulator(100_000)
    batch = _batch(sim, 1)
    before = peak_mb()
    net = _network(sim)
    net.prescan(batch)
    net.fit_normalizer(batch)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        loss = net.loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    growth = peak_mb() - before
    net.save(sys.argv[2])
    loaded = ProposalNetwork.load(sys.argv[2], simulator="long_loop")
    controller = ICController(np.random.default_rng(1), {"y": 0.5}, loaded)
    trace = et.run_trace(_loop_simulator(10_000), controller)
    print(json.dumps({"growth_mb": growth, "losses": losses, "layers": len(net.sites),
                      "parameters": sum(p.numel() for p in net.parameters()),
                      "fallbacks": controller.fallbacks,
                      "proposed": sum(v.log_proposal is not None for v in trace.samples()),
                      "samples": len(trace.controlled_addresses)}))
""")


def test_a_loop_of_100000_draws_trains_in_bounded_memory_and_gets_proposals(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, os.path.dirname(__file__),
                          str(tmp_path / "net.pt")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    short = _network(_loop_simulator(100))
    short.prescan(_batch(_loop_simulator(100), 1))
    assert result["layers"] == 1 + 16
    assert result["parameters"] == sum(p.numel() for p in short.parameters())
    assert all(math.isfinite(v) for v in result["losses"])
    # Two steps over 10^5 steps take 47 MB here (checkpointed segments of 1,024 steps); one
    # pass without segments 243 MB, and a layer per instance over 1 GB at 2 * 10^4 steps.
    assert result["growth_mb"] < 120, result
    # The loaded network proposes every choice of a loop 10^4 long, far beyond instance 16.
    assert result["fallbacks"] == 0
    assert result["proposed"] == result["samples"] == 10_001
