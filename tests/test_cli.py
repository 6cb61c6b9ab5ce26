"""The etalumis command as a user runs it: real processes, real output directories."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

import etalumis_core as et

ETALUMIS = [sys.executable, "-m", "etalumis_core.app.cli"]


def run(args, cwd, check=True):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(ETALUMIS + args, cwd=cwd, capture_output=True, text=True, env=env,
                         timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"etalumis {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def test_plugins_prints_json(tmp_path):
    info = json.loads(run(["plugins"], tmp_path).stdout)
    assert "gaussian" in info["etalumis_core"]["simulators"]
    assert info["etalumis_core"]["version"]


def test_multirun_over_two_engines(tmp_path):
    run(["-m", "simulator=gaussian", "engine=importance,rmh", "num_traces=300",
         "hydra.sweep.dir=sweep"], tmp_path)
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 2
    engines = set()
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        engines.add(summary["engine"])
        assert summary["num_traces"] == 300
        mu = summary["latents"]["mu"]
        assert abs(mu["mean"] - 7.25) < 4 * 0.912871 / mu["ess"] ** 0.5
        # One ESS, the engine's: the top line is the smallest per latent, of the same kind.
        assert summary["ess"] == min(v["ess"] for v in summary["latents"].values())
        assert summary["ess_kind"] and isinstance(summary["warnings"], dict)
        for plot in ("marginals.png", "trace_types.png", "address_graph.png"):
            assert (job / plot).stat().st_size > 1000
        post = et.Posterior.load(job / "posterior.h5")
        assert post.num_traces == 300
    assert engines == {"importance", "rmh"}


def test_defaults_are_read_from_the_packaged_configs():
    from etalumis_core.app.cli import defaults

    assert defaults("infer") == {"simulator": "toy_tau_decay", "engine": "${simulator}",
                                 "executor": "process"}
    assert defaults("train")["proposal"] == "feedforward"


def composed(args, cwd):
    from omegaconf import OmegaConf

    return OmegaConf.create(run([*args, "--cfg", "job", "--resolve"], cwd).stdout)


def test_each_simulator_runs_its_own_engine_unless_told_otherwise(tmp_path):
    """The default job infers tau events with the shipped network (toy_tau_decay's engine
    config, calibrated at two populations of 50 particles and five sweeps a round); a simulator
    without one runs smc with 1000; naming the engine or the size overrides either."""
    tau = composed([], tmp_path)
    assert tau.engine.name == "ic_smc" and tau.num_traces == 100
    assert tau.engine.params.network == "pkg://etalumis_toy_tau_decay/network/network.pt"
    assert tau.engine.params.stratify == "channel"
    assert (tau.engine.params.populations, tau.engine.params.max_moves) == (2, 5)
    for args in (["simulator=gaussian"], ["engine=smc"], ["calibrate"]):
        other = composed(args, tmp_path)
        assert other.engine.name == "smc" and other.num_traces == 1000, args
    assert composed(["num_traces=7"], tmp_path).num_traces == 7
    calibrate = composed(["calibrate", "simulator=toy_tau_decay"], tmp_path)
    assert calibrate.engine.name == "ic_smc" and calibrate.num_traces == 100
    # an engine named after a simulator is that simulator's engine config
    assert composed(["simulator=gaussian", "engine=toy_tau_decay"], tmp_path).engine.name == "ic_smc"


def test_infer_job_loads_plugins_once_and_builds_one_simulator_beside_the_executor(
        tmp_path, monkeypatch):
    """The truth and the report share one simulator; the (serial) executor builds its own;
    the plugins the CLI loaded are passed down, not loaded again."""
    from omegaconf import OmegaConf

    from etalumis_core.app import jobs

    plugins = et.load_plugins()
    monkeypatch.setattr(jobs, "load_plugins", lambda: pytest.fail("plugins loaded again"))
    built = []
    build = et.SimulatorSpec.build
    monkeypatch.setattr(et.SimulatorSpec, "build", lambda self: built.append(self.name) or build(self))
    cfg = OmegaConf.create({"simulator": {"name": "gaussian"}, "engine": {"name": "importance"},
                            "executor": {"name": "serial"}, "num_traces": 200, "seed": 0,
                            "observation": None, "truth_seed": 3, "plots": True,
                            "progress": False})
    summary = jobs.infer_from_config(cfg, str(tmp_path), plugins)
    assert built == ["gaussian", "gaussian"]
    assert summary["ess"] == summary["latents"]["mu"]["ess"]
    assert "ESS" in summary["message"] and "(kish)" in summary["message"]
    if summary["ess"] < 30:
        assert "warning: the effective sample size" in summary["message"]


def test_infer_job_conditions_on_latents_given_by_name(tmp_path):
    """``+given.n=2``: the number of clusters is fixed, so it is no latent of the posterior."""
    from omegaconf import OmegaConf

    from etalumis_core.app import jobs

    cfg = OmegaConf.create({"simulator": {"name": "poisson_mixture"},
                            "engine": {"name": "importance"}, "executor": {"name": "serial"},
                            "num_traces": 200, "seed": 0, "observation": None, "truth_seed": 3,
                            "given": {"n": 2}, "plots": False, "progress": False})
    summary = jobs.infer_from_config(cfg, str(tmp_path))
    assert summary["given"] == {"n": 2}
    assert "n" not in summary["latents"]
    assert summary["latents"]["clusters"]["mean"] == pytest.approx(2.0, abs=1e-12)


def test_simulate_then_infer_from_the_observation_file(tmp_path):
    run(["simulate", "simulator=poisson_mixture", "seed=4", "num_traces=20",
         "hydra.run.dir=sim"], tmp_path)
    observation = tmp_path / "sim" / "observation.h5"
    with h5py.File(observation) as f:
        assert f.attrs["format"] == b"etalumis-observation"
    truth = json.loads((tmp_path / "sim" / "summary.json").read_text())["truth"]
    assert set(truth) >= {"n", "clusters", "total"}
    assert et.Posterior.load(tmp_path / "sim" / "prior.h5").num_traces == 20
    run(["simulator=poisson_mixture", "engine=importance", f"observation={observation}",
         "num_traces=500", "hydra.run.dir=inf"], tmp_path)
    summary = json.loads((tmp_path / "inf" / "summary.json").read_text())
    assert summary["truth"]["total"] == truth["total"]
    assert summary["observation"] == str(observation)
    assert summary["num_trace_types"] >= 2


def test_typo_in_a_config_name_lists_the_valid_names(tmp_path):
    out = run(["simulator=gausian"], tmp_path, check=False)
    assert out.returncode == 2
    assert "unknown simulator 'gausian'" in out.stderr
    assert "gaussian (from etalumis_core)" in out.stderr
    out = run(["engine=mhh", "simulator=gaussian"], tmp_path, check=False)
    assert out.returncode == 2 and "rmh (from etalumis_core)" in out.stderr


def test_serve_and_infer_over_ppx_from_the_command_line(tmp_path):
    """`etalumis serve` in one process, `etalumis simulator=ppx` in another, real sockets."""
    address = f"ipc://{tmp_path}/gaussian.sock"
    server = subprocess.Popen(ETALUMIS + ["serve", "simulator=gaussian", f"address={address}",
                                          "hydra.run.dir=serve"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # One served process answers one engine: a serial executor, not a pool of workers.
        run(["simulator=ppx", f"simulator.params.address={address}", "simulator.params.timeout=20",
             "executor=serial", "engine=importance", "num_traces=300", "truth_seed=3", "plots=false",
             "hydra.run.dir=remote"], tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=10)
    run(["simulator=gaussian", "engine=importance", "num_traces=300", "truth_seed=3",
         "plots=false", "hydra.run.dir=local", "~simulator.observe"], tmp_path)
    remote = et.Posterior.load(tmp_path / "remote" / "posterior.h5")
    local = et.Posterior.load(tmp_path / "local" / "posterior.h5")
    # Same seed, same simulator: the remote run equals the in-process one bit for bit.
    assert remote.trace_types == local.trace_types
    assert (remote.log_weights == local.log_weights).all()
    assert (remote.marginal("mu").values == local.marginal("mu").values).all()


def test_dataset_train_and_ic_from_the_command_line(tmp_path):
    run(["dataset", "simulator=gaussian", "num_traces=256", "chunk_size=64", "executor=process",
         "executor.params.num_workers=2", "hydra.run.dir=data"], tmp_path)
    dataset = tmp_path / "data" / "dataset"
    assert len(list(dataset.glob("shard-*.h5"))) == 4
    run(["train", "simulator=gaussian", f"dataset={dataset}", "num_traces=2048",
         "batch_size=64", "hydra.run.dir=net"], tmp_path)
    network = tmp_path / "net" / "network.pt"
    assert network.exists() and (tmp_path / "net" / "training_log.csv").exists()
    assert (tmp_path / "net" / "loss.png").stat().st_size > 1000
    run(["simulator=gaussian", "engine=ic", f"engine.params.network={network}",
         "num_traces=500", "plots=false", "hydra.run.dir=ic"], tmp_path)
    summary = json.loads((tmp_path / "ic" / "summary.json").read_text())
    assert summary["engine"] == "ic" and summary["num_traces"] == 500
    # Even a briefly trained network proposes clearly better than the prior, whose ESS on
    # this observation is under 1% of the traces.
    assert summary["ess"] > 0.025 * 500
    # The finished run again with network_dtype=float16: it resumes at its end and rewrites
    # network.pt at half the size, which loads as float32 with the weights rounded.
    full = tmp_path / "network32.pt"
    full.write_bytes(network.read_bytes())
    run(["train", "simulator=gaussian", f"dataset={dataset}", "num_traces=2048",
         "batch_size=64", "network_dtype=float16", "hydra.run.dir=net"], tmp_path)
    assert json.loads((tmp_path / "net" / "summary.json").read_text())["network_dtype"] == "float16"
    assert network.stat().st_size < 0.6 * full.stat().st_size
    import torch
    from etalumis_core.nn import ProposalNetwork

    stored = torch.load(network, weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    half, single = ProposalNetwork.load(network), ProposalNetwork.load(full)
    for (name, a), (_, b) in zip(half.state_dict().items(), single.state_dict().items()):
        assert a.dtype == b.dtype
        if b.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
