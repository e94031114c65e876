"""Convexity scoring: the hull excess against the neighbour chord it replaced.

Random piecewise-linear curves (sums of 8 ReLU pieces, like a unit's response along a
line) are scored as one array.  Prints the best CPU time of a few repeats for the chord
of two neighbours (a numpy one-liner, the test the hull replaced), the hull vertices by
each of landscape.hull's two paths, and every score of ``quasi_convexity``, per shape.

    python bench/convexity_bench.py [--shapes 10000x41,1000x401,10x4001] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import xarray as xr

from landscape import hull
from landscape.convexity import quasi_convexity


def curves(m: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, n)
    w, b, c = (rng.normal(size=(m, 8, 1)) for _ in range(3))
    return (c * np.maximum(w * t + b, 0)).sum(1)


def neighbour_chord(f: np.ndarray) -> np.ndarray:
    """max_j [f_j − (f_{j−1} + f_{j+1}) / 2]⁺: the test the hull replaced."""
    return np.clip(-np.diff(f, 2, axis=1) / 2, 0, None).max(axis=1)


def best(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn(*args)
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="10000x41,1000x401,10x4001")
    parser.add_argument("--repeats", type=int, default=5)
    ns = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, cores {len(os.sched_getaffinity(0))}")
    print("| curves x samples | neighbour chord (ms) | hull, vectorised (ms) | hull, one by one (ms) "
          "| quasi_convexity, all scores (ms) | convex: chord / hull |")
    # quasi_convexity picks the vectorised path from hull.VECTORISE_FROM curves on.
    print("|---|---:|---:|---:|---:|---|")
    for shape in ns.shapes.split(","):
        m, n = (int(v) for v in shape.split("x"))
        f = curves(m, n)
        span = np.ptp(f, axis=1)
        x = np.arange(n, dtype=float)

        da = xr.DataArray(f, dims=("curve", "alpha"))
        t_chord = best(ns.repeats, neighbour_chord, f)
        t_vec = best(ns.repeats, hull._vertices_vectorised, f, x)
        t_one = best(ns.repeats, hull._vertices_one_by_one, f, x)
        t_all = best(ns.repeats, quasi_convexity, da, "alpha")
        convex_chord = (neighbour_chord(f) <= 1e-3 * span).mean()
        convex_hull = float(quasi_convexity(da, "alpha").convex.mean())
        print(f"| {m} x {n} | {1e3 * t_chord:.1f} | {1e3 * t_vec:.1f} | {1e3 * t_one:.1f} | "
              f"{1e3 * t_all:.1f} | {convex_chord:.3f} / {convex_hull:.3f} |")


if __name__ == "__main__":
    main()
