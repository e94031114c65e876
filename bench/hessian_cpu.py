"""Benchmark: CPU time and products of the default top-k Hessian call against PyHessian.

``hessian_bench.py`` reports wall time, which a busy machine inflates; this
script times the same two calls by the CPU time of the process
(``time.process_time``, one torch thread), which another job on the machine
changes far less.  Ours: ``hessian_spectrum(model, x, y, top_k=k)`` with every
default (``method="lanczos"`` forced only where the model is small enough for
the dense path); PyHessian: ``eigenvalues(top_n=k, tol=--pyhessian-tol)``.
Each is the best of ``--repeats`` runs after a warm-up.  The relative error is
against ``--reference`` (comma-separated eigenvalues from ``hessian_bench.py``'s
float64 reference), when given.

Usage::

    OMP_NUM_THREADS=1 python bench/hessian_cpu.py --model cnn --top-k 5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch import nn

import landscape
from landscape.memory import use_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=["cnn", "mlp", "resnet18"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--pyhessian-tol", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--reference", default=None)
    args = parser.parse_args()
    use_threads(1)
    from pyhessian import hessian as pyhessian_class

    module = sys.modules[pyhessian_class.__module__]
    count = {"n": 0}
    original = module.hessian_vector_product

    def counted(*a, **kw):
        count["n"] += 1
        return original(*a, **kw)

    module.hessian_vector_product = counted
    model = landscape.build_model(args.model, init="xavier", seed=0)
    x, y = landscape.load_dataset("digits", n=args.batch, in_shape=model.in_shape)
    reference = None if args.reference is None else np.array(
        [float(v) for v in args.reference.split(",")])

    def ours():
        ds = landscape.hessian_spectrum(model, x, y, top_k=args.top_k)
        return ds.eigenvalue.values, int(ds.n_hvp), ds.attrs["lanczos_blocks"]

    def theirs():
        torch.manual_seed(0)
        comp = pyhessian_class(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        count["n"] = 0
        values, _ = comp.eigenvalues(top_n=args.top_k, tol=args.pyhessian_tol)
        model.zero_grad(set_to_none=True)
        return np.sort(np.asarray(values, float))[::-1], count["n"], "power iteration"

    print(f"model {args.model}, batch {args.batch}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {open('/proc/loadavg').read().split()[:3]}")
    print("\n| method | HVPs | CPU time (s) | wall time (s) | max rel. error | note |")
    print("|---|---:|---:|---:|---:|---|")
    rows = {}
    for name, fn in (("ours (default)", ours), (f"PyHessian (tol {args.pyhessian_tol:g})", theirs)):
        fn()  # warm-up
        best = None
        for _ in range(args.repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            values, n, note = fn()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            best = (cpu, wall) if best is None or cpu < best[0] else best
        err = float(np.max(np.abs(values - reference) / np.abs(reference))) \
            if reference is not None else float("nan")
        rows[name] = (n, *best)
        print(f"| {name} | {n} | {best[0]:.2f} | {best[1]:.2f} | {err:.1e} | {note} |")
    (n_o, c_o, w_o), (n_p, c_p, w_p) = rows.values()
    print(f"\nPyHessian / ours: {n_p / n_o:.1f}x by products, {c_p / c_o:.1f}x by CPU time, "
          f"{w_p / w_o:.1f}x by wall time")


if __name__ == "__main__":
    main()
