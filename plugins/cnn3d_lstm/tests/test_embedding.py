"""The 3-D CNN observation embedding and its registration as ``proposal=cnn3d_lstm``."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

import etalumis_core as et  # noqa: E402
from etalumis_core.errors import ConfigError  # noqa: E402
from etalumis_core.nn import ProposalNetwork  # noqa: E402
from etalumis_core.plugins import embedding_factory  # noqa: E402

from etalumis_cnn3d_lstm.embedding import CNN3DEmbedding, cnn3d  # noqa: E402

torch.set_num_threads(1)


def _conf(group: str, name: str) -> dict:
    text = resources.files("etalumis_cnn3d_lstm.conf").joinpath(f"{group}/{name}.yaml").read_text()
    return yaml.safe_load(text)


def test_default_architecture_on_the_35x35x20_calorimeter():
    conf = _conf("proposal", "cnn3d_lstm")
    assert conf["name"] == "cnn3d_lstm"
    emb = cnn3d({"calorimeter": (35, 35, 20)}, 32, **conf["params"])
    # Two blocks of 3^3 convolutions and 2^3 max-pools, as the published 3DCNN-LSTM.
    assert emb.feature_shape == (128, 4, 4, 1)
    convs = [m for m in emb.cnn if isinstance(m, torch.nn.Conv3d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 128]
    with torch.no_grad():
        out = emb({"calorimeter": torch.rand(2, 35, 35, 20)})
    assert out.shape == (2, 32)


def test_any_grid_shape_downsampling_and_extra_inputs():
    shapes = {"flat": (12 * 10 * 6,), "energy": (3,)}
    emb = CNN3DEmbedding(shapes, 16, grid_shape=[12, 10, 6], channels=[[4], [8]],
                         downsample=[2, 2, 1], padding=1, hidden_dims=[20])
    # 12x10x6 -> avg-pool 6x5x6 -> pool 3x2x3 -> pool 1x1x1 (clipped where a side is 1)
    assert emb.feature_shape == (8, 1, 1, 1)
    assert emb.observation == "flat" and emb.others == ["energy"]
    x = {"flat": torch.rand(5, 720), "energy": torch.rand(5, 3)}
    out = emb(x)
    assert out.shape == (5, 16)
    # the extra observation reaches the output
    y = dict(x, energy=x["energy"] + 1.0)
    assert not torch.allclose(emb(y), out)
    odd = CNN3DEmbedding({"c": (35, 35, 20)}, 8, channels=[[4]], downsample=[5, 5, 3])
    assert odd.cnn(torch.zeros(1, 1, 35, 35, 20)).shape[2:] == (2, 2, 2)   # 7x7x7 -> 5^3 -> 2^3


def test_configuration_errors_say_what_to_change():
    with pytest.raises(ConfigError, match="too small"):
        cnn3d({"c": (8, 8, 4)}, 8, channels=[[4, 4], [4, 4]])
    with pytest.raises(ConfigError, match="observation=NAME"):
        cnn3d({"a": (4, 4, 4), "b": (4, 4, 4)}, 8, channels=[[2]])
    with pytest.raises(ConfigError, match="grid_shape"):
        cnn3d({"a": (100,)}, 8, observation="a", grid_shape=[4, 4, 4], channels=[[2]])
    assert cnn3d({"a": (4, 4, 4), "b": (4, 4, 4)}, 8, observation="b", channels=[[2]],
                 padding=1).observation == "b"


def test_registered_proposal_builds_saves_and_reloads_a_network(tmp_path):
    plugins = et.load_plugins()
    assert plugins.proposals.get("cnn3d_lstm").plugin == "cnn3d_lstm"
    assert plugins.trainers.get("distributed").plugin == "cnn3d_lstm"
    assert ("cnn3d_lstm", "pkg://etalumis_cnn3d_lstm.conf") in plugins.config_paths
    options = {"channels": [[4], [4]], "downsample": [5, 5, 4], "padding": 1}
    torch.manual_seed(0)
    net = ProposalNetwork({"calorimeter": (35, 35, 20)}, simulator="toy_tau_decay",
                          embedding="cnn3d_lstm", embedding_options=options, embedding_dim=16,
                          lstm_dim=16, embeddings=embedding_factory)
    assert isinstance(net.observation_embedding, CNN3DEmbedding)
    net.save(tmp_path / "net.pt")
    again = ProposalNetwork.load(tmp_path / "net.pt", simulator="toy_tau_decay",
                                 embeddings=embedding_factory)
    obs = {"calorimeter": np.random.default_rng(0).random((3, 35, 35, 20))}
    with torch.no_grad():
        torch.testing.assert_close(net.embed_observations(obs), again.embed_observations(obs))
    # The IC engine, made through the registry, finds the architecture a network file names.
    engine = plugins.engines.create("ic", network=str(tmp_path / "net.pt"))
    assert isinstance(engine.network.observation_embedding, CNN3DEmbedding)
    # Without a way to look names up, only the built-in architecture is known.
    with pytest.raises(et.EtalumisError, match="'cnn3d_lstm' is not built in"):
        ProposalNetwork.load(tmp_path / "net.pt")


def test_every_config_option_is_accepted_by_its_factory():
    conf = _conf("trainer", "distributed")
    assert conf["name"] == "distributed"
    trainer = et.load_plugins().trainers.create("distributed", **conf["params"])
    assert trainer.options["lr_scaling"] == "linear"


def test_loading_the_plugin_does_not_import_torch():
    code = ("import sys, etalumis_cnn3d_lstm.plugin, etalumis_cnn3d_lstm; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
