"""The projection embedding of a voxel grid and its registration as
``proposal=calorimeter_projections``."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

import etalumis_core as et  # noqa: E402
from etalumis_core.data import generate_dataset  # noqa: E402
from etalumis_core.errors import ConfigError  # noqa: E402
from etalumis_core.nn import ProposalNetwork  # noqa: E402
from etalumis_core.plugins import embedding_factory  # noqa: E402

from etalumis_cnn3d_lstm.projections import (  # noqa: E402
    ProjectionEmbedding, calorimeter_projections)

torch.set_num_threads(1)

SMALL = dict(embedding_dim=16, lstm_dim=32, address_embedding_dim=8, head_hidden_dim=16,
             mixture_components=3)


def _conf(name: str) -> dict:
    text = resources.files("etalumis_cnn3d_lstm.conf").joinpath(f"proposal/{name}.yaml")
    return yaml.safe_load(text.read_text())


@pytest.fixture(scope="module")
def tau_dataset(tmp_path_factory):
    from etalumis_toy_tau_decay.model import TauDecaySimulator

    path = tmp_path_factory.mktemp("tau") / "data"
    return generate_dataset(TauDecaySimulator(), path, 32, seed=3, chunk_size=32,
                            progress=False)


def test_default_config_on_the_35x35x20_calorimeter_is_deterministic():
    conf = _conf("calorimeter_projections")
    assert conf["name"] == "calorimeter_projections"
    torch.manual_seed(0)
    emb = calorimeter_projections({"calorimeter": (35, 35, 20)}, 32, **conf["params"])
    # Two 3x3 convolutions, each followed by a 2x2 max-pool: 35x35 -> 8x8, 35x20 -> 8x5.
    assert {k: p.output_dim for k, p in emb.projections.items()} == {
        "xy": 32 * 8 * 8, "xz": 32 * 8 * 5, "yz": 32 * 8 * 5}
    x = {"calorimeter": torch.poisson(torch.full((3, 35, 35, 20), 0.05))}
    with torch.no_grad():
        out = emb(x)
        assert out.shape == (3, 32)
        torch.testing.assert_close(emb(x), out, rtol=0, atol=0)
    torch.manual_seed(0)
    twin = calorimeter_projections({"calorimeter": (35, 35, 20)}, 32, **conf["params"])
    with torch.no_grad():
        torch.testing.assert_close(twin(x), out, rtol=0, atol=0)
    # Each event's embedding is its own: a batch of one gives the same row.
    with torch.no_grad():
        torch.testing.assert_close(emb({"calorimeter": x["calorimeter"][1:2]})[0], out[1])


def test_each_projection_sees_where_the_deposit_is():
    torch.manual_seed(1)
    emb = ProjectionEmbedding({"c": (6, 5, 4)}, 8, channels=[4], pool=1, activation="tanh")
    grid = torch.zeros(1, 6, 5, 4)
    grid[0, 2, 3, 1] = 5.0
    outputs = []
    for move in ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)):
        g = torch.roll(grid, shifts=move, dims=(1, 2, 3))
        with torch.no_grad():
            outputs.append(emb({"c": g}))
    for moved in outputs[1:]:
        assert not torch.allclose(moved, outputs[0])


def test_any_grid_shape_and_extra_inputs():
    shapes = {"flat": (12 * 10 * 6,), "energy": (3,)}
    emb = ProjectionEmbedding(shapes, 16, grid_shape=[12, 10, 6], channels=[4, 8],
                              hidden_dims=[20])
    assert emb.observation == "flat" and emb.others == ["energy"]
    x = {"flat": torch.rand(5, 720), "energy": torch.rand(5, 3)}
    out = emb(x)
    assert out.shape == (5, 16)
    y = dict(x, energy=x["energy"] + 1.0)
    assert not torch.allclose(emb(y), out)


def test_configuration_errors_say_what_to_change():
    with pytest.raises(ConfigError, match="calorimeter_projections cannot tell"):
        calorimeter_projections({"a": (4, 4, 4), "b": (4, 4, 4)}, 8)
    with pytest.raises(ConfigError, match="odd"):
        calorimeter_projections({"a": (4, 4, 4)}, 8, kernel_size=2)
    with pytest.raises(ConfigError, match="activation"):
        calorimeter_projections({"a": (4, 4, 4)}, 8, activation="gelu")


def test_registered_by_name_with_the_network_sizes_of_cnn3d_lstm():
    plugins = et.load_plugins()
    assert plugins.proposals.get("calorimeter_projections").plugin == "cnn3d_lstm"
    # Same LSTM, embeddings and heads as the 3DCNN-LSTM: their losses compare.
    assert _conf("calorimeter_projections")["network"] == _conf("cnn3d_lstm")["network"]
    net = ProposalNetwork({"calorimeter": (35, 35, 20)}, embedding="calorimeter_projections",
                          embeddings=embedding_factory, **SMALL)
    assert isinstance(net.observation_embedding, ProjectionEmbedding)


def test_gradients_reach_every_weight_and_training_lowers_the_loss(tau_dataset):
    torch.manual_seed(0)
    net = ProposalNetwork.for_dataset(tau_dataset, embedding="calorimeter_projections",
                                      embedding_options={"channels": [4, 8]},
                                      embeddings=embedding_factory, **SMALL)
    batch = tau_dataset.batch(np.arange(len(tau_dataset)))
    net.fit_normalizer(batch)
    net.loss(batch).backward()
    for name, p in net.observation_embedding.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = net.loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    # 15 Adam steps on one batch of 32 tau traces: measured 15.6 -> 10.6 nats per trace.
    assert losses[-1] < losses[0] - 3.0


def test_network_file_round_trip(tmp_path, tau_dataset):
    torch.manual_seed(0)
    net = ProposalNetwork.for_dataset(tau_dataset, embedding="calorimeter_projections",
                                      embedding_options={"channels": [4], "hidden_dims": [12]},
                                      embeddings=embedding_factory, **SMALL)
    net.fit_normalizer(tau_dataset.batch(np.arange(8)))
    net.save(tmp_path / "net.pt")
    again = ProposalNetwork.load(tmp_path / "net.pt", embeddings=embedding_factory)
    assert isinstance(again.observation_embedding, ProjectionEmbedding)
    batch = tau_dataset.batch(np.arange(8))
    with torch.no_grad():
        torch.testing.assert_close(again.loss(batch), net.eval().loss(batch), rtol=0, atol=0)
