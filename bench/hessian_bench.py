"""Benchmark: landscape.hessian against PyHessian on the same model and batch.

In one process, on the same model, batch and device:

* top-1 and top-k eigenvalues: wall time, Hessian-vector products (HVPs) and
  relative error against a reference computed on a float64 copy of the model
  (block Lanczos to tol 1e-10, every reduction in float64, converged by its
  explicit residual); ours is block Lanczos (block ``--block-size``, default
  2, widened only where a cluster may hide copies) at each of ``--tols``;
  PyHessian runs with its default tol 1e-3 (power iteration with deflation)
  and with tighter tolerances, to compare at equal accuracy;
* trace: Hutch++ (ours) against PyHessian's Hutchinson loop (its defaults);
* the cost of one HVP over one gradient (forward + backward);
* the peak resident memory of the process (``getrusage``), printed last.

``--heap reuse`` runs the whole benchmark, PyHessian included, inside
``landscape._heap.reuse_freed_memory`` (what ``hessian_spectrum`` and the CLI do
for our code); ``--heap default`` (the default) leaves glibc's allocator as it is
for both.

Usage::

    python bench/hessian_bench.py --model cnn --batch 128 --device cpu --top-k 5
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time

import numpy as np
import torch
from torch import nn

import landscape
from landscape._heap import reuse_freed_memory
from landscape.hessian import LossHessian, hutchpp, lanczos
from landscape.memory import use_threads


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _rel_err(values, reference) -> float:
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    return float(np.max(np.abs(values - reference) / np.abs(reference)))


class _Counter:
    """Counts PyHessian's calls of its Hessian-vector product."""

    def __init__(self, module):
        self.module, self.count = module, 0
        self.original = module.hessian_vector_product

        def counted(*args, **kwargs):
            self.count += 1
            return self.original(*args, **kwargs)

        module.hessian_vector_product = counted

    def take(self) -> int:
        n, self.count = self.count, 0
        return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=["cnn", "resnet18", "mlp"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--tols", default="1e-3",
                        help="our Lanczos tolerances (relative residual) to run")
    parser.add_argument("--block-size", type=int, default=None,
                        help="our Lanczos block size (default 2, widened where needed)")
    parser.add_argument("--reference-bottom", action="store_true",
                        help="also compute the reference bottom-k (float64)")
    parser.add_argument("--pyhessian-tols", default="1e-3,1e-4,1e-5",
                        help="PyHessian tolerances to run (its default is 1e-3)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="best wall time of this many runs of each eigenvalue method")
    parser.add_argument("--trace-probes", type=int, default=99)
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heap", choices=["default", "reuse"], default="default",
                        help="glibc allocation for the whole run, both methods alike")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores this process may use)")
    args = parser.parse_args()
    use_threads(args.threads)
    if args.heap == "reuse":
        with reuse_freed_memory():
            run(args)
    else:
        run(args)


def run(args) -> None:
    from pyhessian import hessian as pyhessian_class

    # The package re-exports the class under its module's name: fetch the module itself.
    pyhessian_module = sys.modules[pyhessian_class.__module__]

    device = torch.device(args.device)
    model = landscape.build_model(args.model, init="xavier", seed=args.seed).to(device)
    x, y = landscape.load_dataset("digits", n=args.batch, in_shape=model.in_shape)
    x, y = x.to(device), y.to(device)
    # Reference: block Lanczos to a tight tolerance on a float64 copy of the model.
    model64 = copy.deepcopy(model).double()
    ref_op = LossHessian(model64, x.double(), y)
    ref, t_ref = _timed(lambda: lanczos(ref_op, top_k=args.top_k, tol=1e-10, eigenvectors=False,
                                         seed=123))
    reference = ref.eigenvalues
    print(f"reference top-{args.top_k} (float64 model): "
          f"{np.array2string(reference, precision=7)} ({ref_op.n_products} HVPs, {t_ref:.1f} s, "
          f"converged {bool(ref.converged.all())}, max explicit residual "
          f"{ref.residuals.max():.1e})")
    if args.reference_bottom:
        # The other end of the spectrum: power iteration converges to the eigenvalues of
        # largest magnitude, which are these when they outweigh the top ones.
        low = lanczos(ref_op, top_k=0, bottom_k=args.top_k, tol=1e-10, eigenvectors=False,
                      seed=123)
        print(f"reference bottom-{args.top_k} (float64 model): "
              f"{np.array2string(low.eigenvalues, precision=7)} "
              f"(converged {bool(low.converged.all())})")
    ref_op.release()

    # Cost of one gradient and one HVP (our default engine, graph cached).
    op = LossHessian(model, x, y)
    op.gradient()
    _, t_grad = _timed(op.gradient)
    v = torch.randn(op.dim, device=device, dtype=op.dtype)
    _, t_first = _timed(lambda: op.matvec(v))  # builds the first-order graph
    times = [_timed(lambda: op.matvec(v))[1] for _ in range(3)]
    t_hvp = float(np.median(times))
    op.release()
    fo = LossHessian(model, x, y, engine="forward-over-reverse")
    fo.matvec(v)
    t_fo = float(np.median([_timed(lambda: fo.matvec(v))[1] for _ in range(3)]))

    # Ours: top-1 and top-k (best wall time of --repeats runs, each from scratch).
    tols = [float(t) for t in args.tols.split(",")]
    results = {}
    for k in sorted({1, args.top_k}):
        for tol in tols:
            best = float("inf")
            for _ in range(args.repeats):
                op = LossHessian(model, x, y)
                res, t = _timed(lambda k=k, op=op, tol=tol: lanczos(
                    op, top_k=k, tol=tol, eigenvectors=False, block_size=args.block_size))
                op.release()
                best = min(best, t)
            results["ours", k, tol] = (best, op.n_products,
                                       _rel_err(res.eigenvalues, reference[:k]),
                                       bool(res.converged.all()), res.block_size)
            print(f"ours top-{k}, tol {tol:g}: {np.array2string(res.eigenvalues, precision=7)}")

    # PyHessian: same model and batch (it switches the model to eval mode and writes .grad).
    # Its default tol (1e-3, relative change between iterations) and tighter ones,
    # to find the cheapest run that reaches our accuracy.
    ptols = [float(t) for t in args.pyhessian_tols.split(",")]
    counter = _Counter(pyhessian_module)
    for k in sorted({1, args.top_k}):
        for ptol in ptols:
            best = float("inf")
            for _ in range(args.repeats):
                torch.manual_seed(args.seed)
                comp, t_setup = _timed(lambda: pyhessian_class(
                    model, nn.CrossEntropyLoss(), data=(x, y), cuda=device.type == "cuda"))
                (values, _), t = _timed(
                    lambda k=k, comp=comp, ptol=ptol: comp.eigenvalues(top_n=k, tol=ptol))
                best = min(best, t + t_setup)
                n_products = counter.take()
                del comp
            theirs = np.sort(np.asarray(values, float))[::-1]
            results["pyhessian", k, ptol] = (best, n_products, _rel_err(theirs, reference[:k]))
            print(f"PyHessian top-{k}, tol {ptol:g}: {np.array2string(theirs, precision=6)}")
    model.zero_grad(set_to_none=True)

    trace_rows = []
    if not args.no_trace:
        op = LossHessian(model, x, y)
        est, t = _timed(lambda: hutchpp(op, n_probes=args.trace_probes, seed=args.seed))
        op.release()
        trace_rows.append(("ours (Hutch++)", t, op.n_products, f"{est.trace:.4g} ± {est.stderr:.2g}"))
        torch.manual_seed(args.seed)
        comp, t_setup = _timed(lambda: pyhessian_class(model, nn.CrossEntropyLoss(), data=(x, y),
                                                       cuda=device.type == "cuda"))
        samples, t = _timed(comp.trace)
        n = counter.take()
        se = np.std(samples, ddof=1) / np.sqrt(len(samples)) if len(samples) > 1 else float("nan")
        trace_rows.append(("PyHessian (Hutchinson)", t + t_setup, n,
                           f"{np.mean(samples):.4g} ± {se:.2g}"))
        model.zero_grad(set_to_none=True)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"\nmodel {args.model}, batch {args.batch}, device {args.device}, "
          f"{n_params} parameters, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"heap {args.heap}")
    print("\n| task | method | wall time (s) | HVPs | max rel. error vs reference | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for k in sorted({1, args.top_k}):
        for tol in tols:
            t_o, n_o, e_o, conv, p = results["ours", k, tol]
            print(f"| top-{k} | ours (block {p} Lanczos, tol {tol:g}, converged {conv}) "
                  f"| {t_o:.2f} | {n_o} | {e_o:.1e} | |")
        t_o = min((results["ours", k, tol][0] for tol in tols
                   if results["ours", k, tol][2] <= 1e-3), default=float("nan"))
        for ptol in ptols:
            t_p, n_p, e_p = results["pyhessian", k, ptol]
            print(f"| top-{k} | PyHessian (power iteration, tol {ptol:g}) | {t_p:.2f} | {n_p} "
                  f"| {e_p:.1e} | ours (fastest at error <= 1e-3) {t_p / t_o:.1f}x faster |")
    for name, t, n, value in trace_rows:
        print(f"| trace | {name} | {t:.2f} | {n} | {value} | |")
    print(f"\none gradient {t_grad * 1e3:.1f} ms; one HVP (cached graph) {t_hvp * 1e3:.1f} ms "
          f"= {t_hvp / t_grad:.2f}x a gradient; first HVP incl. graph {t_first * 1e3:.1f} ms "
          f"= {t_first / t_grad:.2f}x; forward-over-reverse HVP {t_fo * 1e3:.1f} ms "
          f"= {t_fo / t_grad:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak resident memory {peak / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
