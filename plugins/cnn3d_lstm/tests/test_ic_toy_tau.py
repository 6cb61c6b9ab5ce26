"""Inference compilation with the 3DCNN-LSTM on toy_tau_decay against prior importance sampling.

A small network (a 3-D CNN over the full 35 x 35 x 20 grid, 4/8/16 channels) is trained online
for a fixed number of steps (about 60 s on one core), then both engines run on the same
synthetic events with the same number of traces. The simulator is configured so that the
comparison measures the proposal, not the rejection loops: no resonances, no pi0/eta decays,
deposit counts not controlled, and a fixed-width likelihood (sigma0 = 0.05 GeV per voxel) under
which prior importance sampling keeps an ESS of a few percent.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
tau = pytest.importorskip("etalumis_toy_tau_decay.model")

import etalumis_core as et  # noqa: E402
from etalumis_core.nn import ProposalNetwork  # noqa: E402

from etalumis_cnn3d_lstm.distributed import DistributedTrainer  # noqa: E402

SIMULATOR = dict(likelihood="fixed_normal", sigma0=0.05, control_deposit_counts=False,
                 resonances=False, decay_pi0=False, decay_eta=False)
EVENTS = (1001, 1002, 1003)
TRACES = 400          # IC
PRIOR_TRACES = 2000   # prior importance sampling is cheap: a sharper estimate of its ESS per trace
STEPS = 300


# Measured on the 2-core development machine (seeds as below): after 300 steps of 16 traces
# (about 60 s) IC's ESS per trace beats prior sampling's on all three events, by 1.20x, 1.93x
# and 1.18x (geometric mean 1.40x). A longer training run gives a wider margin.
def test_ic_with_the_3dcnn_lstm_beats_prior_importance_sampling(tmp_path):
    torch.set_num_threads(1)
    sim = tau.TauDecaySimulator(**SIMULATOR)
    torch.manual_seed(0)
    net = ProposalNetwork.for_simulator(
        sim, embedding="cnn3d_lstm", embedding_dim=32, lstm_dim=64, head_hidden_dim=32,
        mixture_components=3,
        embedding_options={"channels": [[4], [8], [16]], "padding": 1,
                           "input_transform": "log1p"})
    result = DistributedTrainer(lr=5e-3, prescan_traces=200, seed=0, log_interval=50,
                                plot=False, progress=False, num_threads=1).train(
        net, sim, tmp_path / "train", steps=STEPS, batch_size=16)
    first, last = result.losses[:10], result.losses[-10:]
    assert sum(last) < sum(first)   # the loss went down
    log_ratios = []
    for seed in EVENTS:
        truth = et.simulate(sim, seed=seed)
        observed = {"calorimeter": truth.result["calorimeter"]}
        prior = et.infer(sim, observe=observed, engine="importance", num_traces=PRIOR_TRACES,
                         seed=1, progress=False)
        ic = et.infer(sim, observe=observed, engine="ic", network=net, num_traces=TRACES,
                      seed=1, progress=False)
        per_trace = (ic.ess / TRACES, prior.ess / PRIOR_TRACES)
        log_ratios.append(math.log(per_trace[0] / per_trace[1]))
        print(f"event {seed}: ESS per trace IC {per_trace[0]:.4f}, prior {per_trace[1]:.4f}")
    # Clearly better: IC's ESS per trace is higher on every event, and by at least 1.2x in
    # geometric mean. Over seeds a 400-trace ESS varies by 15-20 % (measured for prior sampling
    # on these events), so the mean of three log-ratios has a standard error near 0.1; an IC no
    # better than the prior would pass this with a probability of a few percent at most.
    assert all(r > 0 for r in log_ratios), log_ratios
    assert math.exp(sum(log_ratios) / len(log_ratios)) > 1.2
