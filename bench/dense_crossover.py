"""Benchmark: the dense Hessian path against the iterative one, by model size.

For small networks of growing parameter count (a user's two-layer tanh net,
the registered ``mlp`` and ``cnn`` at small widths), one ``hessian_spectrum``
call per method and request, in one process: Hessian-vector products, CPU time
(``time.process_time``) and wall time, and the largest relative difference of
the top/bottom eigenvalues between the two paths.  Requests: ``top-5`` (the
default call) and ``full`` (``--top-k 3 --bottom-k 3 --density --trace``).
Each cell is the best of ``--repeats`` runs after one warm-up call; ``auto``
shows what the default picks.  Then ``eigh`` alone on random symmetric float64
matrices, the cost that bounds the dense path from above.

Usage::

    OMP_NUM_THREADS=1 python bench/dense_crossover.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import landscape
from landscape.hessian.dense import choose_method, iterative_products
from landscape.memory import use_threads

REQUESTS = {
    "top-5": dict(top_k=5),
    "full": dict(top_k=3, bottom_k=3, density=True, trace=True),
}


def _user_net(hidden: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The example of docs/guide/your-own-network.md: 6 inputs, ``hidden`` tanh units,
    3 classes, 500 samples."""
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((500, 6)), dtype=torch.float32)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, 3)), x, y


def _registered(name: str, **kw) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = landscape.build_model(name, init="xavier", seed=0, **kw)
    x, y = landscape.load_dataset("digits", n=128, in_shape=model.in_shape)
    return model, x, y


def _timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eigh-sizes", default="500,1000,2000,4096")
    args = parser.parse_args()
    use_threads(None)
    cases = [(f"user h={h}", lambda h=h: _user_net(h)) for h in (16, 64, 128)]
    cases += [("mlp w=16", lambda: _registered("mlp", width=16, depth=1)),
              ("cnn w=2", lambda: _registered("cnn", width=2))]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("\n| model | params | request | method | HVPs | CPU (s) | wall (s) "
          "| max rel. diff of ends | auto picks |")
    print("|---|---:|---|---|---:|---:|---:|---:|---|")
    for label, make in cases:
        model, x, y = make()
        n = sum(p.numel() for p in model.parameters())
        landscape.hessian_spectrum(model, x, y, top_k=1, method="lanczos")  # warm-up
        for request, kw in REQUESTS.items():
            rows, values = {}, {}
            for method in ("dense", "lanczos"):
                best = None
                for _ in range(args.repeats):
                    ds, cpu, wall = _timed(lambda m=method, model=model, x=x, y=y, kw=kw:
                                           landscape.hessian_spectrum(model, x, y, method=m, **kw))
                    best = (cpu, wall) if best is None or cpu < best[0] else best
                rows[method] = (int(ds.attrs["n_hvp"]), *best)
                values[method] = ds.eigenvalue.values
            diff = float(np.max(np.abs(values["lanczos"] - values["dense"])
                                / np.abs(values["dense"]).max()))
            planned = iterative_products(kw.get("top_k", 0), kw.get("bottom_k", 0),
                                         kw.get("density", False), kw.get("trace", False),
                                         8, 80, 99)
            auto = choose_method("auto", n, planned, "cpu")
            for method, (hvp, cpu, wall) in rows.items():
                print(f"| {label} | {n} | {request} | {method} | {hvp} | {cpu:.3f} | {wall:.3f} "
                      f"| {diff:.1e} | {auto} |")
    print("\n| n | eigh CPU (s) |")
    print("|---:|---:|")
    for n in (int(s) for s in args.eigh_sizes.split(",")):
        a = torch.randn(n, n, dtype=torch.float64)
        a = (a + a.T) / 2
        _, cpu, _ = _timed(lambda a=a: torch.linalg.eigh(a))
        print(f"| {n} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
