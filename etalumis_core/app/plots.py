"""Plots of a posterior: marginals, trace types, and the address-transition graph."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..posterior import Posterior


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_marginals(posterior: Posterior, path: str, truth: dict[str, Any] | None = None,
                   names: list[str] | None = None) -> str | None:
    """A grid of weighted histograms (bars for discrete variables), truth in red."""
    names = names or posterior.scalar_names()[:12]
    if not names:
        return None
    plt = _pyplot()
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        marginal = posterior.marginal(name)
        if marginal.discrete:
            table = marginal.probabilities()
            keys = sorted(table)
            ax.bar([str(k) for k in keys], [table[k] for k in keys], color="tab:blue")
            ax.set_ylabel("probability")
            if len(keys) > 12:
                ax.tick_params(axis="x", labelrotation=90, labelsize=6)
        else:
            ax.hist(marginal.values, bins=40, weights=marginal.weights, density=True,
                    color="tab:blue", alpha=0.75)
            ax.axvline(float(marginal.mean), color="k", linestyle="--", label="mean")
            ax.set_ylabel("density")
        if truth is not None and name in truth and np.ndim(truth[name]) == 0:
            value = truth[name]
            if marginal.discrete:
                keys = sorted(marginal.probabilities())
                if value in keys:
                    ax.patches[keys.index(value)].set_color("tab:red")
            else:
                ax.axvline(float(value), color="tab:red", label="truth")
        ax.set_title(f"{name} (ESS {posterior.ess_of(name):.0f})", fontsize=10)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"posterior marginals: {posterior.metadata.get('engine', '')}, "
                 f"{posterior.num_traces} traces, ESS {posterior.ess:.0f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_trace_types(posterior: Posterior, path: str, limit: int = 20) -> str:
    """Posterior probability of the most probable trace types."""
    plt = _pyplot()
    table = posterior.trace_type_table()[:limit]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.5))
    labels = [f"{row['trace_type']} ({row['num_controlled']} choices)" for row in table]
    ax.barh(range(len(table)), [row["probability"] for row in table], color="tab:green")
    ax.set_yticks(range(len(table)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("posterior probability")
    ax.set_title(f"trace types ({len(posterior.trace_types)} distinct)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(address: str, width: int = 38) -> str:
    return address if len(address) <= width else "…" + address[-(width - 1):]


def plot_address_graph(posterior: Posterior, path: str, max_nodes: int = 40) -> str:
    """The address-transition graph as an arc diagram: controlled addresses top to bottom in
    their typical order, an arc from each address to the one that follows it, arc width and
    label by posterior-weighted frequency."""
    plt = _pyplot()
    edges = posterior.address_transitions()
    weight: dict[str, float] = {}
    order: dict[str, float] = {}
    for (a, b), w in edges.items():
        weight[b] = weight.get(b, 0.0) + w
    for t, m in zip(posterior.trace_types,
                    np.bincount(posterior.trace_type_id, weights=posterior.weights,
                                minlength=len(posterior.trace_types)).tolist()):
        for k, address in enumerate(t):
            order[address] = order.get(address, 0.0) + m * k / max(len(t), 1)
    inner = sorted((n for n in weight if n not in ("START", "END")),
                   key=lambda n: -weight[n])[:max_nodes]
    nodes = ["START", *sorted(inner, key=lambda n: order.get(n, 0.0) / max(weight[n], 1e-300)),
             "END"]
    y = {n: -k for k, n in enumerate(nodes)}
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(nodes) + 1.5))
    top = max(edges.values()) if edges else 1.0
    for (a, b), w in edges.items():
        if a not in y or b not in y:
            continue
        ya, yb = y[a], y[b]
        span = abs(ya - yb)
        if span == 1 or a == b:
            ax.annotate("", xy=(0, yb), xytext=(0, ya),
                        arrowprops=dict(arrowstyle="->", lw=0.5 + 3 * w / top, color="tab:blue"))
        else:
            rad = -0.5 if yb < ya else 0.5
            ax.annotate("", xy=(0, yb), xytext=(0, ya),
                        arrowprops=dict(arrowstyle="->", lw=0.5 + 3 * w / top, color="tab:orange",
                                        connectionstyle=f"arc3,rad={rad}"))
        ax.text(0.05 + 0.02 * span, (ya + yb) / 2, f"{w:.2f}", fontsize=6, va="center")
    for n in nodes:
        ax.plot(0, y[n], "o", color="k", markersize=4)
        ax.text(-0.08, y[n], _short(n), ha="right", va="center", fontsize=7)
    ax.set_xlim(-2.2, 1.2)
    ax.set_ylim(-len(nodes), 1)
    ax.axis("off")
    ax.set_title("address transitions (weight: posterior frequency; orange: jumps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(posterior: Posterior, output_dir: str, truth: dict[str, Any] | None = None) -> list[str]:
    paths = [plot_marginals(posterior, os.path.join(output_dir, "marginals.png"), truth),
             plot_trace_types(posterior, os.path.join(output_dir, "trace_types.png")),
             plot_address_graph(posterior, os.path.join(output_dir, "address_graph.png"))]
    return [p for p in paths if p]
