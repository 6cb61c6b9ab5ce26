"""Side-by-side benchmark harness: etalumis here, pyprob 1.5.0 in its own virtual environment.

pyprob pins packages (flatbuffers 2.0) that clash with ours, so it lives in
``benchmarks/.venv-pyprob`` (``make pyprob-venv``); its half of a benchmark runs there as a
subprocess that prints one JSON line. Both halves run in the same invocation, on the same
machine, one after the other, so the printed ratios compare like with like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
PYPROB_PYTHON = HERE / ".venv-pyprob" / "bin" / "python"


# The Gaussian-with-unknown-mean model on pyprob's side (ours: etalumis_core.models).
PYPROB_GAUSSIAN = """
class Gaussian(Model):
    def forward(self):
        mu = pyprob.sample(Normal(1, math.sqrt(5)))
        likelihood = Normal(mu, math.sqrt(2))
        pyprob.observe(likelihood, name='obs0')
        pyprob.observe(likelihood, name='obs1')
        return mu
"""


def pyprob_available() -> bool:
    return PYPROB_PYTHON.exists()


def run_pyprob(code: str, timeout: float = 900, env: dict | None = None) -> dict:
    """Run ``code`` with pyprob's interpreter; its last stdout line must be a JSON object."""
    if not pyprob_available():
        raise RuntimeError(f"{PYPROB_PYTHON} not found: run `make pyprob-venv` first")
    out = subprocess.run([str(PYPROB_PYTHON), "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout, env={**os.environ, **(env or {}),
                                                          "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"pyprob side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_rate(fn: Callable[[], int], repeats: int = 3) -> float:
    """Best items/second over ``repeats`` runs of ``fn`` (which returns the item count)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def table(title: str, rows: list[tuple[str, float, float | None, str]]) -> None:
    """Print ``(what, etalumis, pyprob or None, unit)`` rows with the ratio."""
    print(f"\n{title}")
    print(f"{'benchmark':40s} {'etalumis':>14s} {'pyprob':>14s} {'ratio':>8s}")
    for what, ours, theirs, unit in rows:
        ratio = f"{ours / theirs:7.1f}x" if theirs else "   n/a"
        theirs_s = f"{theirs:14.1f}" if theirs else f"{'n/a':>14s}"
        print(f"{what:40s} {ours:14.1f} {theirs_s} {ratio}   ({unit})")
    sys.stdout.flush()


def single_thread() -> None:
    """One core for both sides: torch and BLAS threads would otherwise blur the comparison."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=float))
