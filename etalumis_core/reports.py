"""The domain-free parts of a simulator's report.

A simulator's ``report(posterior, truth, output_dir)`` summarises a posterior in its own terms
(a tau decay channel, a cure temperature). What such reports share lives here, so that a plugin
keeps only its own tables (labels, priors, which variables it names):

* a discrete latent (a channel, a regime, a tag): its posterior probabilities with labels
  (:func:`category_probabilities`, :func:`category_summary`) and a bar chart
  (:func:`plot_categories`);
* named scalars: their marginals with the truth and whether it lies inside the central 90% and
  95% intervals (:func:`scalar_summary`, :func:`count_summary`) and a row of histograms with the
  truth marked (:func:`plot_scalars`); a 3-D array as three projections (:func:`plot_projections`);
* :func:`posterior_summary`: all of these for one discrete variable and groups of named scalars;
* a :func:`headline` saying what is most probable and whether the truth is covered.

Everything reads a posterior through ``marginal(name)`` and a ground truth through
``values_by_name()`` (or a plain mapping), so it works for any engine's posterior. Where a
simulator calls a variable differently from its report, :func:`renamed` and :func:`truth_values`
map the report's names to the simulator's.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

import numpy as np

__all__ = ["truth_values", "renamed", "category_probabilities", "category_summary",
           "scalar_summary", "count_summary", "scalar_summaries", "posterior_summary",
           "observed_value", "headline", "plot_categories", "plot_scalars", "plot_projections"]


def truth_values(truth: Any, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The named values of a ground truth (a trace or a mapping), also under the report's names:
    ``names`` maps a report name to the simulator's (``{"e_visible": "visible_energy"}``)."""
    if truth is None:
        return {}
    values = dict(truth) if isinstance(truth, Mapping) else truth.values_by_name()
    for ours, theirs in (names or {}).items():
        if theirs in values:
            values[ours] = values[theirs]
    return values


class _Renamed:
    """A posterior whose marginals are looked up under the simulator's own names."""

    def __init__(self, posterior: Any, names: Mapping[str, str]) -> None:
        self._posterior = posterior
        self._names = dict(names)

    def marginal(self, name: str) -> Any:
        return self._posterior.marginal(self._names.get(name, name))

    def __getattr__(self, item: str) -> Any:
        return getattr(self._posterior, item)


def renamed(posterior: Any, names: Mapping[str, str] | None) -> Any:
    """``posterior`` with ``marginal(name)`` looking up ``names.get(name, name)``."""
    return _Renamed(posterior, names) if names else posterior


def _marginal(posterior: Any, name: str) -> Any | None:
    try:
        return posterior.marginal(name)
    except (KeyError, ValueError):
        return None


def _number(x: Any) -> float | int:
    x = float(np.asarray(x))
    return int(x) if x.is_integer() and abs(x) < 2 ** 53 else x


def category_probabilities(posterior: Any, name: str, num_categories: int) -> np.ndarray:
    """Posterior probability of each category ``0 .. num_categories-1`` of the discrete
    variable ``name`` (zeros where no trace has it, and everywhere if no trace has ``name``)."""
    probs = np.zeros(num_categories)
    m = _marginal(posterior, name)
    if m is not None:
        np.add.at(probs, np.asarray(m.values, dtype=np.int64), m.weights)
    return probs


def category_summary(probs: np.ndarray, labels: Sequence[str], true_index: Any = None,
                     prior: Sequence[float] | None = None,
                     other_labels: Mapping[str, Sequence[str]] | None = None) -> dict:
    """The most probable category, the categories with posterior mass (most probable first:
    index, label as ``name``, each of ``other_labels`` (e.g. ``{"ascii_name": [...]}``),
    probability, and the prior where given) and, with a true index, its label, probability
    and rank (1 = most probable). Without any mass, ``map_index`` and ``map_name`` are None."""
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs)
    entries = []
    for i in order:
        if probs[i] > 0.0:
            entry = {"index": int(i), "name": labels[i]}
            entry.update((key, names[i]) for key, names in (other_labels or {}).items())
            entry["probability"] = float(probs[i])
            if prior is not None:
                entry["prior"] = float(prior[i])
            entries.append(entry)
    # No mass anywhere (no trace has the variable, or it was conditioned on): no MAP either.
    top = int(order[0]) if entries else None
    out: dict[str, Any] = {"map_index": top, "map_name": labels[top] if entries else None,
                           "probabilities": entries}
    if true_index is not None:
        t = int(_number(true_index))
        out.update(true_index=t, true_name=labels[t], true_probability=float(probs[t]),
                   true_rank=int(np.where(order == t)[0][0]) + 1)
    return out


def scalar_summary(posterior: Any, name: str, truth: Mapping[str, Any]) -> dict | None:
    """Mean, standard deviation, median, the 2.5/5/95/97.5% quantiles and ESS of a named scalar;
    with its true value: the value, whether it lies in the central 90% and 95% intervals, and
    the pull. ``None`` when no trace has ``name``."""
    m = _marginal(posterior, name)
    if m is None:
        return None
    q = m.quantile([0.025, 0.05, 0.5, 0.95, 0.975])
    out = {"mean": float(m.mean), "stddev": float(m.stddev), "q025": float(q[0]),
           "q05": float(q[1]), "median": float(q[2]), "q95": float(q[3]), "q975": float(q[4]),
           "ess": float(m.ess)}
    if name in truth:
        t = float(np.asarray(truth[name]))
        out["true"] = t
        out["true_within_90"] = bool(q[1] <= t <= q[3])
        out["true_within_95"] = bool(q[0] <= t <= q[4])
        out["pull"] = (out["mean"] - t) / out["stddev"] if out["stddev"] > 0 else None
    return out


def count_summary(posterior: Any, name: str, truth: Mapping[str, Any]) -> dict | None:
    """Mean, probability of each integer value, and mode of a named count; its true value
    where known. ``None`` when no trace has ``name``."""
    m = _marginal(posterior, name)
    if m is None:
        return None
    table: dict[int, float] = {}
    for v, w in zip(np.rint(m.values).astype(int).tolist(), m.weights.tolist()):
        table[v] = table.get(v, 0.0) + w
    out = {"mean": float(m.mean),
           "probabilities": {str(k): table[k] for k in sorted(table)},
           "mode": int(max(table, key=table.get))}
    if name in truth:
        out["true"] = _number(truth[name])
    return out


def scalar_summaries(posterior: Any, names: Sequence[str], truth: Mapping[str, Any],
                     counts: bool = False) -> dict[str, dict]:
    """:func:`scalar_summary` (or :func:`count_summary`) of each name that some trace has."""
    summary = count_summary if counts else scalar_summary
    out = {}
    for name in names:
        if (s := summary(posterior, name, truth)) is not None:
            out[name] = s
    return out


def posterior_summary(posterior: Any, truth: Any = None, *, category: str,
                      labels: Sequence[str], prior: Sequence[float] | None = None,
                      other_labels: Mapping[str, Sequence[str]] | None = None,
                      groups: Mapping[str, Sequence[str]] | None = None,
                      counts: Collection[str] = (),
                      names: Mapping[str, str] | None = None) -> dict:
    """A JSON-serialisable summary: ``num_traces``, ``ess``, then under ``category`` the
    :func:`category_summary` of that discrete variable (``labels``, ``prior`` and
    ``other_labels`` per category), then for each of ``groups`` (``{"momentum": ("px", "py",
    "pz")}``) the :func:`scalar_summaries` of its names (count summaries for the groups named in
    ``counts``). ``names`` maps the names used here to the simulator's, where they differ."""
    posterior = renamed(posterior, names)
    tv = truth_values(truth, names)
    probs = category_probabilities(posterior, category, len(labels))
    out: dict[str, Any] = {
        "num_traces": int(getattr(posterior, "num_traces", 0)),
        "ess": float(getattr(posterior, "ess", float("nan"))),
        category: category_summary(probs, labels, tv.get(category), prior, other_labels),
    }
    for group, group_names in (groups or {}).items():
        out[group] = scalar_summaries(posterior, group_names, tv, counts=group in counts)
    return out


def observed_value(name: str, truth: Any = None, posterior: Any = None) -> np.ndarray | None:
    """The value ``name`` of the true event: the truth trace's result entry (for a simulator
    whose result holds the noise-free observation), else its observed value, else a mapping's
    entry, else the observation the engine recorded in the posterior's metadata."""
    if truth is not None and not isinstance(truth, Mapping):
        result = getattr(truth, "result", None)
        if isinstance(result, Mapping) and name in result:
            return np.asarray(result[name], dtype=float)
        for v in truth.observations():
            if v.name == name and v.value is not None:
                return np.asarray(v.value, dtype=float)
    if isinstance(truth, Mapping) and name in truth:
        return np.asarray(truth[name], dtype=float)
    meta = getattr(posterior, "metadata", None) or {}
    obs = meta.get("observations") if isinstance(meta, Mapping) else None
    if isinstance(obs, Mapping) and name in obs:
        return np.asarray(obs[name], dtype=float)
    return None


def headline(what: str, labels: Sequence[str], category: Mapping[str, Any],
             scalars: Mapping[str, Mapping[str, Any]] | None = None,
             scalars_what: str = "values") -> str | None:
    """``most probable {what}: {label} (posterior probability p); the true {what} is {label}``
    and, for the ``scalars`` summaries with a truth, a second line ``true {scalars_what} inside
    the central 95% interval: px yes, py NO``. ``None`` when no category has posterior mass."""
    if not category.get("probabilities"):
        return None
    top = category["probabilities"][0]
    line = (f"most probable {what}: {labels[top['index']]} "
            f"(posterior probability {top['probability']:.2f})")
    if category.get("true_index") is not None:
        line += f"; the true {what} is {labels[category['true_index']]}"
    inside = {k: v["true_within_95"] for k, v in (scalars or {}).items()
              if v and "true_within_95" in v}
    if inside:
        line += (f"\ntrue {scalars_what} inside the central 95% interval: "
                 + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in inside.items()))
    return line


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib is imported when one is drawn)


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def plot_categories(probs: np.ndarray, labels: Sequence[str], path: str, *,
                    true_index: int | None = None, prior: Sequence[float] | None = None,
                    prior_label: str = "prior", title: str = "", floor: float = 1e-6) -> None:
    """Posterior probability of each category on a log scale (down to ``floor``), the prior as
    a grey step line where given, the true category in red."""
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * n + 0.6), 4.5))
    x = np.arange(n)
    colours = ["tab:blue"] * n
    if true_index is not None:
        colours[true_index] = "tab:red"
    ax.bar(x, np.maximum(probs, floor), color=colours, label="posterior")
    if prior is not None:
        ax.step(x, prior, where="mid", color="grey", lw=1, label=prior_label)
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylabel("probability")
    if true_index is not None:
        title += f" (true: {labels[true_index]}, red)"
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scalars(posterior: Any, names: Sequence[str], truth: Mapping[str, Any], path: str, *,
                 title: str = "", unit: str = "") -> None:
    """One weighted histogram per named scalar, in a row, the true value as a red line."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes.flat, names):
        m = _marginal(posterior, name)
        if m is not None:
            ax.hist(m.values, bins=40, weights=m.weights, density=True, color="tab:blue",
                    alpha=0.7, label="posterior")
        if name in truth:
            ax.axvline(float(truth[name]), color="tab:red", lw=2, label="true")
        ax.set_xlabel(f"{name} [{unit}]" if unit else name)
        if ax.get_legend_handles_labels()[0]:   # a name with neither posterior nor truth
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_projections(volume: np.ndarray, path: str,
                     extent: Sequence[float] | None = None, axes: Sequence[str] = ("x", "y", "z"),
                     unit: str = "", title: str = "") -> None:
    """The x-y, x-z and y-z sums of a 3-D array (a voxel grid), ``extent`` =
    ``(x0, x1, y0, y1, z0, z1)`` (default: voxel indices)."""
    plt = _pyplot()
    volume = np.asarray(volume, dtype=float)
    if extent is None:
        extent = [v for n in volume.shape for v in (0.0, float(n))]
    x0, x1, y0, y1, z0, z1 = extent
    a, b, c = axes
    fig, panels = plt.subplots(1, 3, figsize=(13, 4))
    views = [(volume.sum(axis=2).T, (x0, x1, y0, y1), a, b),
             (volume.sum(axis=1).T, (x0, x1, z0, z1), a, c),
             (volume.sum(axis=0).T, (y0, y1, z0, z1), b, c)]
    for ax, (img, ext, h, v) in zip(panels, views):
        im = ax.imshow(img, origin="lower", extent=ext, aspect="auto", cmap="viridis")
        ax.set_xlabel(h)
        ax.set_ylabel(v)
        ax.set_title(f"{h}-{v} projection")
        fig.colorbar(im, ax=ax, label=unit)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
