"""Benchmark: a 2-D loss surface by `landscape.loss_slice` against the reference
method and against plain inference, in one process, on the same grid and data.

* reference: copy the model, write each grid point's weights into it in place,
  evaluate the data in batches (the per-point loop of Li et al.'s code);
* ours: `loss_slice` with each engine (`auto`, `vmap`, `loop`);
* plain inference: the same number of forward passes of the unchanged model,
  the throughput limit of any method that evaluates every point on all data.

Prints grid points per second (best of ``--repeats`` runs) and the ratios
ours/reference and ours/plain-inference.  Our time is that of the whole
``loss_slice`` call, quasi-convexity scoring of the surface included.

``loss_slice`` keeps freed memory in the heap while it runs (``landscape._heap``);
the baselines run as their users run them, with glibc's default allocation, and
again inside the same setting (rows marked "heap reuse", columns "vs loop*" and
"vs infer*"), to show how much of a ratio the allocator accounts for.

    python bench/slice_bench.py --models mlp,cnn,resnet18 --grid 21 --samples 512
"""

from __future__ import annotations

import argparse
import copy
import time
from functools import partial

import numpy as np
import torch

import landscape
from landscape._heap import reusing_freed_memory
from landscape.directions import parameter_directions
from landscape.losses import Objective
from landscape.memory import use_threads
from landscape.slicing import parse_grid


def reference_loop(model, x, y, dirs, alphas, betas, batch_size):
    net = copy.deepcopy(model).eval()
    base = {k: p.detach().clone() for k, p in model.named_parameters()}
    params = dict(net.named_parameters())
    out = np.zeros((len(alphas), len(betas)))
    with torch.no_grad():
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                for k, p in params.items():
                    p.copy_(base[k] + a * dirs[0][k] + b * dirs[1][k])
                total = 0.0
                for s in range(0, len(x), batch_size):
                    xb, yb = x[s:s + batch_size], y[s:s + batch_size]
                    total += Objective(net)(net(xb), xb, yb).item() * len(xb)
                out[i, j] = total / len(x)
    return out


def plain_inference(model, x, n_points, batch_size):
    with torch.inference_mode():
        for _ in range(n_points):
            for s in range(0, len(x), batch_size):
                model(x[s:s + batch_size]).sum().item()


def timed(sync, repeats, fn, *args, **kwargs):
    """Best wall time of ``repeats`` calls, and the last call's result."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        sync()
        best = min(best, time.perf_counter() - t)
    return best, result


def _row(model, n_points, baselines, label, t, diff=None):
    ratios = " ".join(f"{b / t:{w}.2f}" for b, w in zip(baselines, (8, 9, 9, 9)))
    tail = "" if diff is None else f" {diff:10.2e}"
    print(f"{model:10s} {label:30s} {n_points / t:9.1f} {ratios}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,resnet18")
    parser.add_argument("--grid", type=int, default=21, help="points per axis")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engines", default="auto,vmap,loop")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed runs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores this process may use)")
    args = parser.parse_args()
    use_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    grid = f"-1:1:{args.grid}"
    alphas = parse_grid(grid)
    n_points = args.grid ** 2
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"grid {args.grid}x{args.grid}, {args.samples} samples, batch {args.batch_size}, "
          f"best of {args.repeats}")
    print(f"{'model':10s} {'method':30s} {'points/s':>9s} {'vs loop':>8s} {'vs infer':>9s} "
          f"{'vs loop*':>9s} {'vs infer*':>9s} {'max |diff|':>10s}")
    for name in args.models.split(","):
        model = landscape.build_model(name, init="xavier", bias_scale=0.1, seed=0).to(device).eval()
        x, y = landscape.load_dataset("digits", n=args.samples, in_shape=model.in_shape)
        x, y = x.to(device), y.to(device)
        dirs = parameter_directions(model, "filter", 2, seed=1)
        # Warm-up: one point of each method.
        reference_loop(model, x, y, dirs, alphas[:1], alphas[:1], args.batch_size)
        plain_inference(model, x, 1, args.batch_size)
        t_ref, ref = timed(sync, args.repeats, reference_loop, model, x, y, dirs, alphas, alphas,
                           args.batch_size)
        t_inf, _ = timed(sync, args.repeats, plain_inference, model, x, n_points, args.batch_size)
        t_ref2, _ = timed(sync, args.repeats, reusing_freed_memory(reference_loop), model, x, y, dirs,
                          alphas, alphas, args.batch_size)
        t_inf2, _ = timed(sync, args.repeats, reusing_freed_memory(plain_inference), model, x,
                          n_points, args.batch_size)
        row = partial(_row, name, n_points, (t_ref, t_inf, t_ref2, t_inf2))
        row("reference loop", t_ref)
        row("plain inference", t_inf)
        row("reference loop, heap reuse", t_ref2)
        row("plain inference, heap reuse", t_inf2)
        for engine in args.engines.split(","):
            # The reference's statistics: an eval-mode model's running ones (bn="auto" would
            # recompute a never-trained network's).
            landscape.loss_slice(model, x, y, directions=dirs, grid=alphas[:3], engine=engine,
                                 batch_size=args.batch_size, bn="eval")
            t, ds = timed(sync, args.repeats, landscape.loss_slice, model, x, y, directions=dirs, grid=grid,
                          engine=engine, batch_size=args.batch_size, bn="eval")
            label = f"ours {engine}" + (f" ({ds.attrs['engine']})" if engine == "auto" else "")
            row(label, t, np.abs(ds.loss.values - ref).max())


if __name__ == "__main__":
    main()
