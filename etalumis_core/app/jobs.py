"""The jobs behind the CLI, as plain functions of plain arguments (usable without Hydra).

Each ``*_from_config`` function is the only place that reads a Hydra config: it turns it into
objects and calls the plain function, which writes everything into ``output_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from typing import Any, Mapping

import numpy as np

from .. import __version__
from ..api import observations_of, simulate
from ..data.hdf5 import atomic_write_text
from ..data.observation import (jsonable, load_observation, save_observation, truth_trace,
                                truth_values)
from ..engines.base import Engine
from ..errors import ConfigError
from ..seeding import resolve_seed
from ..executors import Executor
from ..plugins import Plugins, load_plugins
from ..posterior import PosteriorBuilder
from ..simulator import Simulator, SimulatorSpec
from ..trace import Trace
from . import plots

log = logging.getLogger("etalumis")


# -- config to objects -------------------------------------------------------------------------
def _params(node: Any) -> dict:
    from omegaconf import OmegaConf

    params = node.get("params") if node is not None else None
    return dict(OmegaConf.to_container(params, resolve=True)) if params else {}


def simulator_spec(plugins: Plugins, node: Any) -> SimulatorSpec:
    entry = plugins.simulators.get(node.name)
    return SimulatorSpec(entry.factory, _params(node), name=node.name)


def build(plugins: Plugins, kind: str, node: Any) -> Any:
    return plugins.registries[kind].create(node.name, **_params(node))


def versions(plugins: Plugins) -> dict:
    out = {"python": platform.python_version(), "etalumis-core": __version__}
    for info in plugins.describe().values():
        out[info["distribution"]] = info["version"]
    return out


def write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=jsonable, allow_nan=True))


# -- infer -------------------------------------------------------------------------------------
class SimulatorOnDemand:
    """One simulator built from its spec at first use, shared by everything this process does
    outside the executor (simulating the truth, the simulator's report), and closed once: a PPX
    simulator is a process launch."""

    def __init__(self, spec: SimulatorSpec) -> None:
        self.spec = spec
        self._built: Simulator | None = None

    def get(self) -> Simulator:
        if self._built is None:
            self._built = self.spec.build()
        return self._built

    def close(self) -> None:
        if self._built is not None:
            self._built.close()
            self._built = None

    def __enter__(self) -> "SimulatorOnDemand":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_inference(simulator: SimulatorSpec, engine: Engine, executor: Executor,
                  observations: Mapping[str, Any], num_traces: int, seed: int | None,
                  output_dir: str, truth: Trace | None = None, make_plots: bool = True,
                  progress: bool | None = None, extra: dict | None = None,
                  plugins: Plugins | None = None,
                  local: SimulatorOnDemand | None = None) -> dict:
    """Infer, then write ``posterior.h5``, ``posterior_arviz.nc``, ``summary.json`` and plots
    into ``output_dir``. The summary carries what the engine says of its posterior
    (:meth:`Engine.summarize`: ESS and its kind, evidence, acceptance, rounds, warnings);
    ``local`` is the simulator this process may build for the simulator's report."""
    os.makedirs(output_dir, exist_ok=True)
    posterior = engine.run(simulator, observations, num_traces, seed, executor, progress)
    posterior.save(os.path.join(output_dir, "posterior.h5"))
    posterior.to_arviz(os.path.join(output_dir, "posterior_arviz.nc"), observations=observations)
    meta = posterior.metadata
    reported = {k: v for k, v in posterior.engine_summary.items() if k != "ess_by_latent"}
    summary: dict[str, Any] = {
        "engine": meta.get("engine"), "engine_options": meta.get("options"),
        "simulator": simulator.name, "simulator_params": simulator.kwargs,
        "executor": meta.get("executor"), "num_workers": meta.get("num_workers"),
        "seed": meta.get("seed"), "num_traces": posterior.num_traces,
        "wall_time_s": meta.get("wall_time_s"), "traces_per_second": meta.get("traces_per_second"),
        "retried_tasks": meta.get("retried_tasks"),
        **reported, "ess": posterior.ess,
        "versions": versions(plugins or load_plugins()),
        "trace_types": posterior.trace_type_table()[:50],
        "num_trace_types": len(posterior.trace_types),
        "latents": posterior.summary()["variables"],
        **(extra or {}),
    }
    truth_dict = truth.values_by_name() if truth is not None else None
    if truth_dict is not None:
        summary["truth"] = {k: jsonable(v) for k, v in truth_dict.items() if np.size(v) <= 64}
    if make_plots:
        summary["plots"] = [os.path.basename(p) for p in plots.plot_all(posterior, output_dir,
                                                                        truth_dict)]
        with SimulatorOnDemand(simulator) as own:
            report = (local or own).get().report(posterior, truth, output_dir)
        if report:
            summary["report"] = report
            extra_plots = report.get("plots", [])
            if isinstance(extra_plots, dict):
                extra_plots = list(extra_plots.values())
            summary["plots"] += [os.path.basename(p) for p in extra_plots]
    write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


def resolve_observation(cfg: Any, local: SimulatorOnDemand) -> tuple[dict, Trace | None, str]:
    """The observation to condition on: a file, the simulator config's ``observe``, or a
    synthetic event simulated with ``truth_seed`` on ``local`` (whose trace is the truth)."""
    if cfg.get("observation"):
        observations, truth, meta = load_observation(cfg.observation)
        written_by = meta.get("simulator")
        if written_by is not None and written_by != local.spec.name:
            raise ConfigError(f"{cfg.observation} is an observation of simulator {written_by!r}, "
                              f"not {local.spec.name!r}: pass simulator={written_by}, or an "
                              f"observation written by `etalumis simulate "
                              f"simulator={local.spec.name}`")
        return observations, truth_trace(truth) if truth else None, str(cfg.observation)
    fixed = cfg.simulator.get("observe")
    if fixed:
        from omegaconf import OmegaConf

        return dict(OmegaConf.to_container(fixed, resolve=True)), None, "simulator config"
    if cfg.get("truth_seed") is None:
        raise ValueError("no observation: pass observation=PATH (from `etalumis simulate`) or "
                         "truth_seed=N to simulate one")
    trace = simulate(local.get(), seed=int(cfg.truth_seed))
    return observations_of(trace), trace, f"simulated with truth_seed={cfg.truth_seed}"


def result_message(summary: Mapping[str, Any], output_dir: str) -> str:
    """What the CLI prints after inference: the engine's own report, then where to look."""
    ess = summary.get("ess")
    line = (f"{summary.get('engine')}: {summary.get('num_traces')} traces, "
            f"ESS {ess if ess is None else round(ess, 1)}")
    if summary.get("ess_kind"):
        line += f" ({summary['ess_kind']})"
    if summary.get("acceptance") is not None:
        line += f", acceptance {summary['acceptance']:.2f}"
    if summary.get("rounds"):
        line += f", {summary['rounds']} rounds"
    if summary.get("log_evidence") is not None:
        line += f", log evidence {summary['log_evidence']:.3f}"
        if summary.get("log_evidence_error") is not None:
            line += f" ± {summary['log_evidence_error']:.3f}"
    line += "".join(f"\nwarning: {w}" for w in summary.get("warnings", {}).values())
    headline = summary.get("report", {}).get("headline")
    return (f"{line}\n" + (f"{headline}\n" if headline else "")
            + f"results in {output_dir}: summary.json, posterior.h5, posterior_arviz.nc"
            + "".join(f", {p}" for p in summary.get("plots", [])))


def given_latents(cfg: Any) -> dict:
    """Latents the job conditions on by name (``+given.channel=10``), besides the observation."""
    from omegaconf import OmegaConf

    given = cfg.get("given")
    return dict(OmegaConf.to_container(given, resolve=True)) if given else {}


def infer_from_config(cfg: Any, output_dir: str, plugins: Plugins | None = None) -> dict:
    plugins = plugins or load_plugins()
    spec = simulator_spec(plugins, cfg.simulator)
    engine = build(plugins, "engines", cfg.engine)
    with SimulatorOnDemand(spec) as local:
        observations, truth, source = resolve_observation(cfg, local)
        given = given_latents(cfg)
        with build(plugins, "executors", cfg.executor) as executor:
            summary = run_inference(spec, engine, executor, {**observations, **given},
                                    int(cfg.num_traces), cfg.seed, output_dir, truth,
                                    bool(cfg.plots), bool(cfg.progress),
                                    extra={"observation": source,
                                           **({"given": given} if given else {})},
                                    plugins=plugins, local=local)
    summary["message"] = result_message(summary, output_dir)
    return summary


# -- simulate ----------------------------------------------------------------------------------
def run_simulate(simulator: SimulatorSpec, num_traces: int, seed: int | None, output_dir: str,
                 make_plots: bool = True) -> dict:
    """Draw ``num_traces`` forward traces; the first is written as ``observation.h5`` (with its
    truth), all of them as ``prior.h5`` (a posterior file with equal weights)."""
    os.makedirs(output_dir, exist_ok=True)
    seed = resolve_seed(seed)
    sim = simulator.build()
    builder = PosteriorBuilder()
    try:
        first = None
        for i in range(num_traces):
            trace = simulate(sim, seed=seed + i)
            first = first or trace
            builder.add(trace, 0.0)
    finally:
        sim.close()
    truth = truth_values(first)
    save_observation(os.path.join(output_dir, "observation.h5"), observations_of(first), truth,
                     {"simulator": simulator.name, "seed": seed})
    prior = builder.build({"engine": "prior", "seed": seed, "simulator": simulator.name})
    prior.save(os.path.join(output_dir, "prior.h5"))
    summary = {"simulator": simulator.name, "seed": seed, "num_traces": num_traces,
               "observations": {k: list(np.shape(v)) for k, v in observations_of(first).items()},
               "truth": {k: v for k, v in truth.items() if np.size(v) <= 64}}
    if make_plots and num_traces > 1:
        summary["plots"] = [os.path.basename(p) for p in [plots.plot_marginals(
            prior, os.path.join(output_dir, "prior_marginals.png"))] if p]
    write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


def simulate_from_config(cfg: Any, output_dir: str, plugins: Plugins | None = None) -> dict:
    spec = simulator_spec(plugins or load_plugins(), cfg.simulator)
    summary = run_simulate(spec, int(cfg.num_traces), cfg.seed, output_dir, bool(cfg.plots))
    summary["message"] = (f"observation with truth written to "
                          f"{os.path.join(output_dir, 'observation.h5')}")
    return summary


# -- serve -------------------------------------------------------------------------------------
def serve_from_config(cfg: Any, output_dir: str, plugins: Plugins | None = None) -> None:
    from ..ppx import serve

    spec = simulator_spec(plugins or load_plugins(), cfg.simulator)
    sim = spec.build()
    log.info("serving simulator %r over PPX at %s", spec.name, cfg.address)
    try:
        serve(sim, cfg.address, max_traces=cfg.get("max_traces"),
              session_timeout=float(cfg.get("session_timeout", 30.0)))
    finally:
        sim.close()


# -- dataset and train -------------------------------------------------------------------------
def dataset_from_config(cfg: Any, output_dir: str, plugins: Plugins | None = None) -> Any:
    from ..data.dataset import generate_dataset

    plugins = plugins or load_plugins()
    spec = simulator_spec(plugins, cfg.simulator)
    target = cfg.get("output") or os.path.join(output_dir, "dataset")
    with build(plugins, "executors", cfg.executor) as executor:
        generate_dataset(spec, target, int(cfg.num_traces), seed=cfg.seed,
                         executor=executor, chunk_size=int(cfg.chunk_size),
                         prior_inflation=bool(cfg.prior_inflation), progress=bool(cfg.progress))
    return {"message": f"dataset of {cfg.num_traces} traces in {target}", "dataset": target}


def run_training(simulator: SimulatorSpec, trainer: Any, output_dir: str, num_traces: int,
                 batch_size: int, proposal: str = "feedforward",
                 proposal_options: Mapping[str, Any] | None = None,
                 network_options: Mapping[str, Any] | None = None,
                 dataset: str | None = None, resume: bool = True, seed: int = 0,
                 embeddings: Any = None, network_dtype: str = "float32") -> dict:
    """Train an inference network online (fresh traces from ``simulator``) or from a dataset
    directory; writes ``network.pt``, ``checkpoint.pt``, ``training_log.csv`` and ``loss.png``.
    A checkpoint already in ``output_dir`` is resumed exactly. ``proposal`` names the
    observation embedding, found through ``embeddings`` (default: the plugin registry).
    ``network_dtype="float16"`` writes ``network.pt`` at half the size (training and the
    checkpoint stay in float32)."""
    import torch

    from ..data.dataset import TraceDataset
    from ..errors import ConfigError
    from ..nn import ProposalNetwork
    from ..plugins import embedding_factory

    options = dict(embedding=proposal, embedding_options=dict(proposal_options or {}),
                   embeddings=embeddings or embedding_factory, **dict(network_options or {}))
    if dataset:
        data: Any = TraceDataset(dataset)
        if data.simulator != simulator.name:
            raise ConfigError(f"dataset {dataset} holds traces of simulator {data.simulator!r}, "
                              f"not {simulator.name!r}: train with simulator={data.simulator}, "
                              f"or make a dataset of {simulator.name!r} with `etalumis dataset "
                              f"simulator={simulator.name}`")
    if network_dtype not in ("float32", "float16"):
        raise ConfigError(f"network_dtype must be float32 or float16, got {network_dtype!r}")
    torch.manual_seed(seed)  # the network's initial weights are part of the run's result
    if dataset:
        network = ProposalNetwork.for_dataset(data, **options)
    else:
        built = simulator.build()
        try:
            network = ProposalNetwork.for_simulator(built, **options)
        finally:
            built.close()
        network.simulator = simulator.name
        data = simulator   # the source builds it (and its data workers build their own)
    result = trainer.train(network, data, output_dir, num_traces=num_traces,
                           batch_size=batch_size, resume=resume)
    path = os.path.join(output_dir, "network.pt")
    writer = getattr(trainer, "is_writer", True)   # one writer among distributed ranks
    if network_dtype == "float16" and writer:
        network.save(path, dtype=torch.float16)
    summary = {"simulator": simulator.name, "proposal": proposal, "dataset": dataset,
               "num_traces": num_traces, "batch_size": batch_size, "network": path,
               "network_dtype": network_dtype,
               "result": {k: v for k, v in vars(result).items()
                          if isinstance(v, (int, float, str, list)) and k != "losses"}}
    if writer:
        write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


def train_from_config(cfg: Any, output_dir: str, plugins: Plugins | None = None) -> dict:
    from omegaconf import OmegaConf

    plugins = plugins or load_plugins()
    spec = simulator_spec(plugins, cfg.simulator)
    params = {"progress": bool(cfg.get("progress", True)), **_params(cfg.trainer)}
    trainer = plugins.trainers.create(cfg.trainer.name, seed=int(cfg.seed), **params)
    network_options = OmegaConf.to_container(cfg.proposal.get("network") or {}, resolve=True)
    target = cfg.get("output") or output_dir
    embeddings = {name: entry.factory for name, entry in plugins.proposals.entries.items()}
    summary = run_training(spec, trainer, target, int(cfg.num_traces), int(cfg.batch_size),
                           cfg.proposal.name, _params(cfg.proposal), network_options,
                           cfg.get("dataset"), resume=True, seed=int(cfg.seed),
                           embeddings=embeddings,
                           network_dtype=str(cfg.get("network_dtype", "float32")))
    summary["message"] = (f"network written to {summary['network']} (use it with engine=ic "
                          f"engine.params.network={summary['network']})")
    return summary


# -- calibrate ---------------------------------------------------------------------------------
def calibrate_from_config(cfg: Any, output_dir: str, plugins: Plugins | None = None) -> dict:
    from ..calibration import calibrate, summary_lines

    plugins = plugins or load_plugins()
    spec = simulator_spec(plugins, cfg.simulator)
    engine = build(plugins, "engines", cfg.engine)
    target = cfg.get("output") or output_dir
    names = list(cfg.names) if cfg.get("names") else None
    with build(plugins, "executors", cfg.executor) as executor:
        summary = calibrate(spec, engine, num_events=int(cfg.num_events),
                            event_seed=int(cfg.event_seed), num_traces=int(cfg.num_traces),
                            seed=int(cfg.seed), output_dir=target, executor=executor,
                            progress=bool(cfg.progress), plots=bool(cfg.plots), names=names,
                            discrete=list(cfg.get("discrete") or ()))
    lines = summary_lines(summary)
    summary["message"] = "\n".join(lines) + f"\nresults in {target}: calibration.json" + "".join(
        f", {p}" for p in summary.get("plots", []))
    return summary
