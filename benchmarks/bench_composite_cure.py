"""Cost of one simulated cure cycle of the composite_cure solver (target: at most 50 ms).

The "one-hold" benchmark cycle (20 → 180 °C by 52 min, hold to 172 min, cool to 20 °C at 222 min)
on a 30 mm AS4/8552 laminate over a 20 mm Invar tool, at the plugin's default resolution
(20 + 6 cells, dt = 60 s, thermocouple records every 5 min), on one core.

    python benchmarks/bench_composite_cure.py [--repeats 50] [--dt 60] [--cells 20 6]
"""
from __future__ import annotations

import argparse
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as the target says

from etalumis_composite_cure import CureSolver, one_hold_cycle  # noqa: E402

TARGET_MS = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--dt", type=float, default=60.0)
    parser.add_argument("--cells", type=int, nargs=2, default=(20, 6), metavar=("LAMINATE", "TOOL"))
    args = parser.parse_args()
    solver = CureSolver(0.030, 0.020, args.cells[0], args.cells[1])
    cycle = one_hold_cycle()
    duration = 222 * 60.0
    record_every = max(1, int(round(300.0 / args.dt)))
    result = solver.run(cycle, duration, dt=args.dt, record_every=record_every)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        solver.run(cycle, duration, dt=args.dt, record_every=record_every)
        times.append(time.perf_counter() - t0)
    times.sort()
    best, median = 1e3 * times[0], 1e3 * times[len(times) // 2]
    print(f"composite_cure one-hold cycle: {int(round(duration / args.dt))} steps of {args.dt:g} s, "
          f"{args.cells[0]}+{args.cells[1]} cells")
    print(f"  mid-thickness peak {result.peak_at_depth(0.015):.2f} °C, final cure "
          f"{result.cure_at_depth(0.015)[-1]:.3f}")
    print(f"  ms per cycle: median {median:.2f}, best {best:.2f} (n={args.repeats})")
    print(f"  target <= {TARGET_MS:g} ms per cycle: {'holds' if median <= TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
