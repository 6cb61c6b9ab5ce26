"""The overview of a multirun sweep: one row per job (its overrides, ESS, the means of its
latents, wall time), written at the sweep's root as ``overview.csv`` and ``overview.md``."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ..data.hdf5 import atomic_write_text

log = logging.getLogger("etalumis")

MAX_LATENT_COLUMNS = 8


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """A row for each job directory (numbered, as Hydra names them) holding a summary."""
    rows = []
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                  key=lambda p: int(p.name))
    for job in jobs:
        row: dict[str, Any] = {"job": job.name}
        overrides = job / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            row["overrides"] = [line[2:].strip() for line in overrides.read_text().splitlines()
                                if line.startswith("- ")]
        summary_path = job / "summary.json"
        if not summary_path.is_file():
            row["status"] = "no summary (failed or still running)"
            rows.append(row)
            continue
        summary = json.loads(summary_path.read_text())
        row["status"] = "done"
        for key in ("engine", "num_traces", "ess", "wall_time_s"):
            if summary.get(key) is not None:
                row[key] = summary[key]
        latents = summary.get("latents") or {}
        scalar = [(n, v) for n, v in latents.items() if isinstance(v, dict) and "mean" in v
                  and isinstance(v["mean"], (int, float))]
        for name, value in scalar[:MAX_LATENT_COLUMNS]:
            row[f"mean {name}"] = value["mean"]
        rows.append(row)
    # What every job shares says nothing about the difference between them.
    shared = set.intersection(*(set(r.get("overrides", [])) for r in rows)) if len(rows) > 1 \
        else set()
    for row in rows:
        row["overrides"] = " ".join(o for o in row.get("overrides", []) if o not in shared)
    return rows


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_overview(sweep_dir: str | Path) -> list[dict[str, Any]]:
    sweep_dir = Path(sweep_dir)
    rows = sweep_rows(sweep_dir)
    if not rows:
        return rows
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(str(sweep_dir / "overview.csv"), buffer.getvalue())
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    atomic_write_text(str(sweep_dir / "overview.md"), "\n".join(table) + "\n")
    return rows


class SweepOverview(Callback):
    """Hydra callback: at the end of a multirun, the overview table at the sweep's root."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = write_overview(sweep_dir)
            if rows:
                print(f"sweep of {len(rows)} jobs: overview in {sweep_dir / 'overview.md'}")
