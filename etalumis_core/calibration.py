"""Calibration: does the truth land where the posterior says it should?

:func:`calibrate` draws events from the simulator's prior (truth seeds ``event_seed``,
``event_seed + 1``, ...), infers each one from its observations alone, and scores where the truth
of every scalar named latent and scalar tag falls in its posterior marginal. For an engine whose
posteriors are right, the central ``q`` interval holds the truth in a fraction ``q`` of the events
(up to binomial noise) and the truth's posterior rank is uniform on [0, 1]; for a discrete latent,
the most probable value is right as often as its probability says. Every claim about inference
quality is measured with this.

Layout of an output directory::

    calibration_manifest.json    the run's arguments; written first, a resumed run must repeat them
    events/event-000000.json     one event's scores, written atomically by the worker that inferred it
    calibration.json             the summary (what :func:`calibrate` returns)
    calibration_coverage.png, calibration_ranks.png, calibration_reliability.png

A killed run resumes in the same directory, skipping the events already written.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .api import _resolve, observations_of, resolve_simulator, simulate
from .engines.base import Engine
from .errors import ConfigError
from .executors import Executor, SerialExecutor
from .plugins import Plugins
from .posterior import Marginal, Posterior
from .progress import Progress
from .seeding import chunk_rng, resolve_seed
from .simulator import Simulator, simulator_name
from .trace import FACTOR, OBSERVE, Trace

__all__ = ["calibrate", "score_event", "summarize", "summary_lines", "coverage_band", "LEVELS"]

log = logging.getLogger(__name__)

LEVELS = (0.5, 0.8, 0.9, 0.95)   # nominal coverages of the central intervals scored
CONFIDENCE = 0.99                # of the binomial band around each nominal coverage
RELIABILITY_BINS = 10
# Version of the event scores: 2 splits posterior mass at the truth at a uniform draw and
# covers by the rank (1 split it evenly and covered by quantiles). A run's events must agree.
SCORING = 2
_TIE_BREAK_STREAM = 2 ** 31 - 1   # a stream of the event's seed that no engine's work item uses
MANIFEST = "calibration_manifest.json"
SUMMARY = "calibration.json"


def _key(level: float) -> str:
    return f"{level:g}"


def coverage_band(num_events: int, level: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The observed coverage that ``num_events`` events of a calibrated engine reach with
    probability at least ``confidence``: central binomial quantiles over ``num_events``."""
    from scipy.stats import binom

    tail = (1.0 - confidence) / 2
    return (float(binom.ppf(tail, num_events, level)) / num_events,
            float(binom.ppf(1.0 - tail, num_events, level)) / num_events)


# -- one event ---------------------------------------------------------------------------------
def _is_integer(value: Any) -> bool:
    return isinstance(value, (bool, int, np.integer, np.bool_))


def scalar_truths(trace: Trace, names: Sequence[str] | None = None) -> dict[str, Any]:
    """First value of every scalar named latent (sample) and tag of a trace."""
    out: dict[str, Any] = {}
    for v in trace.variables:
        if (not v.name or v.name in out or v.kind in (OBSERVE, FACTOR)
                or (names is not None and v.name not in names)):
            continue
        value = v.value.item() if isinstance(v.value, np.ndarray) and v.value.size == 1 else v.value
        if _is_integer(value) or isinstance(value, (float, np.floating)):
            out[v.name] = value
    return out


def _score(marginal: Marginal, truth: Any, discrete: bool, tie_break: float) -> dict:
    if discrete or marginal.discrete or _is_integer(truth):
        table = marginal.probabilities()
        top, p_top = next(iter(table.items()))
        p_true = sum(p for value, p in table.items() if value == truth)
        return {"kind": "discrete", "truth": truth, "top": top, "p_top": p_top,
                "p_true": p_true, "correct": bool(top == truth)}
    values, weights = marginal.values, marginal.weights
    truth = float(truth)
    # The randomised probability integral transform: the posterior CDF at the truth, with the
    # posterior's mass at the truth itself split at ``tie_break`` ~ Uniform(0, 1). It is uniform
    # on [0, 1] for a calibrated engine even where the marginal has atoms (an energy that is
    # zero whenever a particle type is absent, a tag the observation fixes). Covering by the
    # central interval of level q is then |rank - 1/2| <= q/2: without atoms, the truth between
    # the (1 - q)/2 and (1 + q)/2 quantiles; with them, an interval [0, 0] no longer covers
    # every event whose truth is 0, which would inflate the coverage.
    rank = float(weights[values < truth].sum() + tie_break * weights[values == truth].sum())
    covered = {_key(level): bool(abs(rank - 0.5) <= level / 2) for level in LEVELS}
    return {"kind": "continuous", "truth": truth, "rank": rank, "covered": covered,
            "mean": float(marginal.mean), "stddev": float(marginal.stddev)}


def score_event(posterior: Posterior, truth: Trace, names: Sequence[str] | None = None,
                discrete: Sequence[str] = (), rng: np.random.Generator | None = None) -> dict:
    """Where the truth's scalar named latents and tags fall in the posterior, by name. A name
    the posterior lacks, or holds only in traces of zero weight, is left out (a latent of a
    trace type the posterior does not reach). Names in ``discrete`` are scored as categories
    even when their values are floats (a category index tagged over PPX, where every number
    is a double). ``rng`` draws the tie-breaks of the continuous ranks (default: seed 0)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    out = {}
    for name, value in scalar_truths(truth, names).items():
        try:
            marginal = posterior.marginal(name)
        except (KeyError, ValueError):
            continue
        if marginal.values.ndim == 1:
            out[name] = _score(marginal, value, name in discrete, float(rng.random()))
    return out


def _event_path(output_dir: str, index: int) -> str:
    return os.path.join(output_dir, "events", f"event-{index:06d}.json")


class _Alive:
    """Stands in for a progress bar: each finished trace of an event's inference tells the
    worker's watchdog that it is alive (``report(0)``), so a pool's per-trace timeout measures
    traces, not whole events."""

    def __init__(self, report: Callable[[int], None], progress: Any) -> None:
        self._report, self._progress = report, progress

    def update(self, n: int = 1) -> None:
        self._report(0)
        if self._progress is not None:
            self._progress.update(n)


class _AliveExecutor(SerialExecutor):
    """The serial executor an event's inference runs on inside a worker."""

    def __init__(self, report: Callable[[int], None]) -> None:
        super().__init__()
        self._report = report

    def map(self, task: Any, items: Sequence[Any], simulator: Any, progress: Any = None,
            weights: Sequence[int] | None = None) -> list:
        return super().map(task, items, simulator, _Alive(self._report, progress), weights)


def _calibrate_event(simulator: Simulator, item: tuple, report: Callable[[int], None]) -> dict:
    """Work item: simulate event ``index``, infer it serially on this worker's simulator, score
    it, and write the scores (atomically) before returning them."""
    engine, num_traces, index, truth_seed, seed, names, discrete, output_dir = item
    truth = simulate(simulator, seed=truth_seed)
    cpu, wall = time.process_time(), time.perf_counter()
    posterior = engine.run(simulator, observations_of(truth), num_traces, seed,
                           executor=_AliveExecutor(report), progress=False)
    result = {"event": index, "truth_seed": truth_seed, "seed": seed,
              "cpu_seconds": time.process_time() - cpu,
              "wall_seconds": time.perf_counter() - wall,
              "latents": score_event(posterior, truth, names, discrete,
                                     chunk_rng(seed, _TIE_BREAK_STREAM)),
              "warnings": dict(posterior.metadata.get("summary", {}).get("warnings", {}))}
    if output_dir is not None:
        _write_json(_event_path(output_dir, index), result)
    report(1)
    return result


def _write_json(path: str, obj: Any) -> None:
    from .data.hdf5 import atomic_write_text
    from .data.observation import jsonable

    atomic_write_text(path, json.dumps(obj, indent=1, default=jsonable, allow_nan=True))


# -- many events -------------------------------------------------------------------------------
_RELIABILITY_EDGES = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)


def _reliability_bin(p_top: np.ndarray) -> np.ndarray:
    """The reliability table's bin of each top-value probability."""
    return np.clip(np.digitize(p_top, _RELIABILITY_EDGES) - 1, 0, RELIABILITY_BINS - 1)


def _reliability(p_top: np.ndarray, correct: np.ndarray, confidence: float) -> list[dict]:
    # A calibrated engine's number right in a bin is a sum of independent Bernoullis with the
    # predicted probabilities; the binomial at their mean has at least that variance, so its
    # band is the conservative one.
    which = _reliability_bin(p_top)
    table = []
    for b in range(RELIABILITY_BINS):
        mask = which == b
        if mask.any():
            count = int(mask.sum())
            predicted = float(np.clip(p_top[mask].mean(), 0.0, 1.0))
            fraction = float(correct[mask].mean())
            band = coverage_band(count, predicted, confidence)
            table.append({"low": float(_RELIABILITY_EDGES[b]),
                          "high": float(_RELIABILITY_EDGES[b + 1]), "count": count,
                          "mean_predicted": predicted, "fraction_correct": fraction,
                          "band": list(band), "within_band": band[0] <= fraction <= band[1]})
    return table


def summarize(events: Sequence[Mapping[str, Any]], confidence: float = CONFIDENCE) -> dict:
    """Per latent, over events: coverage of each central interval with its binomial band and
    the truth's ranks (continuous); top-1 accuracy, mean probability of the true value and the
    reliability table, each bin with the binomial band of its fraction right (discrete).
    ``within_band``: every level, or every bin, inside its band."""
    # Older runs' event files lack the warnings, or kept their sentences without their kinds.
    kept_warnings = all("warnings" in e for e in events)
    kept_kinds = all(isinstance(e.get("warnings"), Mapping) for e in events)
    by_name: dict[str, list[dict]] = {}
    warned: dict[str, list[set]] = {}   # per latent, what each scoring event warned of
    for event in events:
        warnings = event.get("warnings")
        kinds = {"any", *(warnings if kept_kinds else ())} if warnings else set()
        for name, score in event["latents"].items():
            by_name.setdefault(name, []).append(score)
            warned.setdefault(name, []).append(kinds)
    out: dict[str, dict] = {}
    for name, scores in by_name.items():
        n = len(scores)
        if scores[0]["kind"] == "continuous":
            coverage = {_key(level): float(np.mean([s["covered"][_key(level)] for s in scores]))
                        for level in LEVELS}
            band = {_key(level): list(coverage_band(n, level, confidence)) for level in LEVELS}
            out[name] = {"kind": "continuous", "num_events": n, "coverage": coverage,
                         "coverage_band": band,
                         "within_band": all(band[k][0] <= coverage[k] <= band[k][1]
                                            for k in coverage),
                         "ranks": [s["rank"] for s in scores]}
        else:
            p_top = np.array([s["p_top"] for s in scores])
            correct = np.array([s["correct"] for s in scores], dtype=np.float64)
            table = _reliability(p_top, correct, confidence)
            out[name] = {"kind": "discrete", "num_events": n, "top1": float(correct.mean()),
                         "mean_p_top": float(p_top.mean()),
                         "mean_p_true": float(np.mean([s["p_true"] for s in scores])),
                         "reliability": table,
                         "within_band": all(row["within_band"] for row in table)}
            if kept_warnings:
                out[name]["by_warning"] = _split_by_warning(warned[name], p_top, correct)
    return out


def _split_by_warning(kinds: list[set], p_top: np.ndarray, correct: np.ndarray) -> dict:
    """Per kind of warning ("any": one of them), top-1, the mean probability of the top value
    and the certain answers (the top reliability bin) where the engine warned and elsewhere."""
    certain = _reliability_bin(p_top) == RELIABILITY_BINS - 1
    out = {}
    for kind in sorted(set().union(*kinds), key=lambda k: (k != "any", k)):
        flags = np.array([kind in k for k in kinds])
        out[kind] = {
            label: {"num_events": int(mask.sum()), "top1": float(correct[mask].mean()),
                    "mean_p_top": float(p_top[mask].mean()),
                    "certain": int((mask & certain).sum()),
                    "certain_right": int((mask & certain & (correct > 0)).sum())}
            for label, mask in (("warned", flags), ("unwarned", ~flags)) if mask.any()}
    return out


def _options_beyond_defaults(simulator: Any, options: Mapping[str, Any]) -> dict:
    """The simulator options that differ from its factory's defaults, so that a run records the
    same simulator the same way whether its options were spelled out (the command line spells
    out the whole configuration) or left out (the Python API), and either can resume the other."""
    try:
        defaults = {k: p.default for k, p in
                    inspect.signature(getattr(simulator, "factory", None)).parameters.items()
                    if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):   # not a spec, or a factory without a signature
        defaults = {}
    from .data.observation import jsonable

    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, default=jsonable, sort_keys=True) == json.dumps(
            b, default=jsonable, sort_keys=True)

    return {k: v for k, v in options.items() if not (k in defaults and same(v, defaults[k]))}


def _check_manifest(output_dir: str, manifest: dict) -> None:
    """Write the manifest of a new run; a resumed run must have asked for the same thing."""
    from .data.observation import jsonable

    manifest = json.loads(json.dumps(manifest, default=jsonable))
    path = os.path.join(output_dir, MANIFEST)
    if not os.path.exists(path):
        _write_json(path, manifest)
        return
    with open(path) as f:
        old = json.load(f)
    if old.get("scoring", 1) != manifest["scoring"]:
        raise ConfigError(f"{output_dir} holds events scored by an earlier version of calibrate "
                          f"(scoring {old.get('scoring', 1)}, now {manifest['scoring']}); its "
                          f"summary would mix the two, so start the run again in another "
                          f"output directory")
    if old != manifest:
        diff = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
        raise ConfigError(f"{output_dir} already holds a different calibration run (differences, "
                          f"existing vs requested: {diff}); repeat its arguments to resume it, "
                          f"or use another output directory")


def _load_done(output_dir: str, index: int, truth_seed: int, seed: int) -> dict | None:
    path = _event_path(output_dir, index)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    if (result.get("event"), result.get("truth_seed"), result.get("seed")) != (index, truth_seed, seed):
        raise ConfigError(f"{path} belongs to another calibration run (its event, truth seed or "
                          f"seed differ); use another output directory")
    return result


def calibrate(simulator: Any, engine: str | Engine = "importance", num_events: int = 100,
              event_seed: int = 0, num_traces: int = 1000, seed: int = 0,
              output_dir: str | os.PathLike | None = None, executor: str | Executor | None = None,
              progress: bool | None = None, plots: bool = True, names: Sequence[str] | None = None,
              discrete: Sequence[str] = (),
              plugins: Plugins | None = None, simulator_options: Mapping[str, Any] | None = None,
              executor_options: Mapping[str, Any] | None = None,
              **engine_options: Any) -> dict:
    """Infer ``num_events`` events drawn from the prior and measure how well calibrated the
    posteriors are.

    Event ``i`` is simulated with truth seed ``event_seed + i`` and inferred with ``num_traces``
    traces and a seed drawn from ``(seed, i)``; events are spread over ``executor``, one event
    per task, the engine running serially inside the worker. ``names`` limits the scored latents
    (default: every scalar named latent and scalar tag of each truth); names in ``discrete``
    are scored as categories (top-1, reliability) though their values are floats. With ``output_dir``, each
    event's scores, ``calibration.json`` and the plots are written there, and a killed run
    resumes where it stopped (same arguments required). Returns the summary::

        {"simulator", "engine", "num_events", "event_seed", "cpu_seconds_per_event",
         "wall_seconds", "latents": {NAME: {"kind": "continuous", "coverage": {"0.5": f, ...},
         "ranks": [...], ...} | {"kind": "discrete", "top1": f, "mean_p_true": f,
         "reliability": [{"low", "high", "count", "mean_predicted", "fraction_correct",
         "band", "within_band"}, ...], ...}}, "within_band": bool}

    ``cpu_seconds_per_event`` is the process time of the workers spent inferring an event;
    ``wall_seconds`` the duration of this call (``wall_seconds_per_event``: of one inference).
    """
    started = time.perf_counter()
    if isinstance(num_events, bool) or not isinstance(num_events, (int, np.integer)) or num_events < 1:
        raise ValueError(f"num_events must be a positive integer, got {num_events!r}")
    if isinstance(num_traces, bool) or not isinstance(num_traces, (int, np.integer)) or num_traces < 1:
        raise ValueError(f"num_traces must be a positive integer, got {num_traces!r}")
    event_seed, seed = resolve_seed(event_seed), resolve_seed(seed)
    simulator, plugins = resolve_simulator(simulator, plugins, simulator_options)
    engine_obj, plugins = _resolve("engines", engine, plugins, engine_options)
    if executor is None or not isinstance(executor, str):
        executor_obj, owned = executor or SerialExecutor(), executor is None
    else:
        executor_obj, plugins = _resolve("executors", executor, plugins, executor_options or {})
        owned = True
    name = simulator_name(simulator)
    out = os.fspath(output_dir) if output_dir is not None else None
    if out is not None:
        os.makedirs(out, exist_ok=True)
        _check_manifest(out, {
            "format": "etalumis-calibration", "scoring": SCORING, "simulator": name,
            "simulator_options": _options_beyond_defaults(
                simulator, getattr(simulator, "kwargs", None) or {}),
            "engine": engine_obj.name, "engine_options": engine_obj.options(),
            "engine_class": f"{type(engine_obj).__module__}.{type(engine_obj).__qualname__}",
            "num_events": int(num_events), "event_seed": event_seed, "num_traces": int(num_traces),
            "seed": seed, "names": list(names) if names is not None else None,
            **({"discrete": sorted(discrete)} if discrete else {})})

    results: list[dict | None] = [None] * num_events
    items, todo = [], []
    for i in range(num_events):
        truth_seed = event_seed + i
        event_inference_seed = int(chunk_rng(seed, i).integers(2 ** 62))
        done = _load_done(out, i, truth_seed, event_inference_seed) if out is not None else None
        if done is not None:
            results[i] = done
            continue
        todo.append(i)
        items.append((engine_obj, int(num_traces), i, truth_seed, event_inference_seed,
                      list(names) if names is not None else None, list(discrete), out))
    if num_events - len(todo):
        log.info("resuming calibration in %s: %d of %d events already inferred", out,
                 num_events - len(todo), num_events)
    try:
        with Progress(num_events, f"calibrating {engine_obj.name} on {name}", progress,
                      unit="event") as bar:
            bar.update(num_events - len(todo))
            if items:
                for i, result in zip(todo, executor_obj.map(_calibrate_event, items, simulator,
                                                            bar)):
                    results[i] = result
    finally:
        if owned:
            executor_obj.close()

    events = [r for r in results if r is not None]
    summary = {
        "simulator": name, "engine": engine_obj.name, "engine_options": engine_obj.options(),
        "num_events": int(num_events), "event_seed": event_seed, "num_traces": int(num_traces),
        "seed": seed, "confidence": CONFIDENCE,
        "cpu_seconds_per_event": float(np.mean([e["cpu_seconds"] for e in events])),
        "wall_seconds_per_event": float(np.mean([e["wall_seconds"] for e in events])),
        "wall_seconds": time.perf_counter() - started,
        "latents": summarize(events),
    }
    summary["within_band"] = all(v["within_band"] for v in summary["latents"].values())
    if out is not None:
        if plots:
            summary["plots"] = [os.path.basename(p) for p in plot_calibration(summary, out)]
        _write_json(os.path.join(out, SUMMARY), summary)
    return summary


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary in words, a line per latent, naming what falls outside its band."""
    lines = [f"{summary['engine']} on {summary['simulator']}: {summary['num_events']} events, "
             f"{summary['cpu_seconds_per_event']:.3g} CPU-s per event"]
    percent = f"{summary['confidence']:.0%}"
    for name, latent in summary["latents"].items():
        if latent["kind"] == "continuous":
            flag = "" if latent["within_band"] else f"  OUTSIDE the {percent} band"
            lines.append(f"  {name}: coverage " + ", ".join(
                f"{k} -> {v:.2f}" for k, v in latent["coverage"].items()) + flag)
            continue
        flag = "".join(
            f"  OUTSIDE the {percent} band where p(top) is {r['low']:.1f}-{r['high']:.1f}: "
            f"{round(r['fraction_correct'] * r['count'])} of {r['count']} right, a calibrated "
            f"engine {round(r['band'][0] * r['count'])}-{round(r['band'][1] * r['count'])}"
            for r in latent["reliability"] if not r["within_band"])
        lines.append(f"  {name}: top-1 {latent['top1']:.2f} (mean probability of the top value "
                     f"{latent['mean_p_top']:.2f}), mean p(truth) {latent['mean_p_true']:.2f}"
                     + flag)
        if latent.get("by_warning"):
            lines.append("    where the engine warned, top-1 there | elsewhere: " + ", ".join(
                f"{'any warning' if kind == 'any' else kind} ({split['warned']['num_events']} "
                f"events) {split['warned']['top1']:.2f} | "
                + (f"{split['unwarned']['top1']:.2f}" if "unwarned" in split else "-")
                for kind, split in latent["by_warning"].items()))
    return lines


# -- plots -------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, count: int, title: str) -> tuple[Any, list]:
    cols = min(4, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig, list(axes.flat)[:count]


def plot_calibration(summary: Mapping[str, Any], output_dir: str, limit: int = 16) -> list[str]:
    """Observed against nominal coverage (with the binomial band), rank histograms, and the
    reliability diagram of discrete latents; returns the paths written."""
    from scipy.stats import binom

    plt = _pyplot()
    latents = summary["latents"]
    continuous = [k for k, v in latents.items() if v["kind"] == "continuous"][:limit]
    discrete = [k for k, v in latents.items() if v["kind"] == "discrete"][:limit]
    title = (f"{summary['engine']} on {summary['simulator']}, {summary['num_events']} events, "
             f"{summary['num_traces']} traces each")
    paths = []
    if continuous:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        n = summary["num_events"]
        grid = np.linspace(0.01, 0.99, 99)
        tail = (1 - summary["confidence"]) / 2
        ax.fill_between(grid, binom.ppf(tail, n, grid) / n, binom.ppf(1 - tail, n, grid) / n,
                        color="0.85", label=f"{summary['confidence']:.0%} band, {n} events")
        ax.plot([0, 1], [0, 1], color="k", lw=0.8)
        for name in continuous:
            coverage = latents[name]["coverage"]
            ax.plot([float(k) for k in coverage], list(coverage.values()), "o-", label=name)
        ax.set_xlabel("nominal coverage of the central interval")
        ax.set_ylabel("observed coverage")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        paths.append(os.path.join(output_dir, "calibration_coverage.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

        bins = 10
        fig, axes = _grid(plt, len(continuous), f"posterior rank of the truth: {title}")
        for ax, name in zip(axes, continuous):
            ranks = latents[name]["ranks"]
            m = len(ranks)
            ax.hist(ranks, bins=bins, range=(0, 1), color="tab:blue", alpha=0.8)
            ax.axhline(m / bins, color="k", lw=0.8)
            ax.axhspan(binom.ppf(tail, m, 1 / bins), binom.ppf(1 - tail, m, 1 / bins),
                       color="0.85", zorder=0)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("rank")
        fig.tight_layout()
        paths.append(os.path.join(output_dir, "calibration_ranks.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if discrete:
        fig, axes = _grid(plt, len(discrete), f"reliability of the most probable value: {title}")
        for ax, name in zip(axes, discrete):
            table = latents[name]["reliability"]
            ax.plot([0, 1], [0, 1], color="k", lw=0.8)
            ax.scatter([r["mean_predicted"] for r in table], [r["fraction_correct"] for r in table],
                       s=[10 + 4 * r["count"] for r in table], alpha=0.5,
                       c=["tab:orange" if r["within_band"] else "tab:red" for r in table])
            for r in table:   # the band a calibrated engine's bin stays inside, drawn on top
                ax.errorbar(r["mean_predicted"], sum(r["band"]) / 2,
                            yerr=(r["band"][1] - r["band"][0]) / 2, color="k", lw=1, capsize=3)
                right = round(r["fraction_correct"] * r["count"])
                ax.annotate(f"{right}/{r['count']}", (r["mean_predicted"], r["fraction_correct"]),
                            textcoords="offset points", ha="right",
                            xytext=(-8, -14 if r["fraction_correct"] > 0.5 else 6),
                            fontsize=7)
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{name}: top-1 {latents[name]['top1']:.2f}", fontsize=9)
            ax.set_xlabel("probability of the top value")
            ax.set_ylabel("fraction correct")
        fig.tight_layout()
        paths.append(os.path.join(output_dir, "calibration_reliability.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
