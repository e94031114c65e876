"""One table of the GPU figures: slice engines against the per-point loop, Hessian
top-k against PyHessian, the cost of an HVP over a gradient, SAE training
throughput, each with its peak GPU memory.

Run by ``bench/gpu.sh`` (see there).  ``--smoke`` runs every row on the CPU at toy
size, to check the code paths; peak memory is then not measured.

Rows, on ``--model`` (default resnet18) with digits images:

* slice ``--grid``² points on ``--samples`` samples: the per-point reference loop
  of ``bench/slice_bench.py`` and ``loss_slice`` with engines ``loop``, ``vmap``
  and ``auto`` (which picks ``vmap`` on CUDA without measuring: this row checks
  the choice); ``check`` is the largest difference from the reference surface;
* Hessian top-``--top-k`` at batch ``--batch``: our Lanczos and PyHessian's
  power iteration, both at tolerance 1e-3; ``check`` is the largest relative
  difference between the two sets of eigenvalues;
* one Hessian-vector product over one gradient (median of 5);
* ``landscape.train_sae`` on ``--sae-tokens`` activations of width ``--sae-width``
  (synthetic sparse codes on a random dictionary): tokens per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the package, then the other benchmarks

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hessian_bench import _Counter, _rel_err  # noqa: E402
from slice_bench import reference_loop, timed  # noqa: E402
from torch import nn  # noqa: E402

import landscape  # noqa: E402
from landscape.directions import parameter_directions  # noqa: E402
from landscape.hessian import LossHessian, lanczos  # noqa: E402
from landscape.memory import format_bytes, use_threads  # noqa: E402

SMOKE = dict(model="mlp", grid=3, samples=32, batch=32, top_k=2, sae_tokens=512, sae_width=16,
             sae_expansion=4, sae_k=4)
FULL = dict(model="resnet18", grid=21, samples=512, batch=512, top_k=5, sae_tokens=2**18,
            sae_width=512, sae_expansion=16, sae_k=32)


class Peak:
    """Peak GPU memory of what runs inside (``torch.cuda.max_memory_allocated``)."""

    def __init__(self, device: torch.device):
        self.device, self.bytes = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)

    def __str__(self) -> str:
        return "n/a (cpu)" if self.bytes is None else format_bytes(self.bytes)


def slice_rows(args, device, sync):
    model = landscape.build_model(args.model, init="xavier", bias_scale=0.1, seed=0).to(device).eval()
    x, y = landscape.load_dataset("digits", n=args.samples, in_shape=model.in_shape)
    x, y = x.to(device), y.to(device)
    dirs = parameter_directions(model, "filter", 2, seed=1)
    grid = np.linspace(-1, 1, args.grid)
    n_points = args.grid ** 2
    reference_loop(model, x, y, dirs, grid[:1], grid[:1], args.samples)  # warm-up
    with Peak(device) as peak:
        t_ref, ref = timed(sync, 1, reference_loop, model, x, y, dirs, grid, grid, args.samples)
    rows = [("slice", "per-point loop (reference)", t_ref, f"{n_points / t_ref:.1f} points/s",
             peak, "")]
    for engine in ("loop", "vmap", "auto"):
        landscape.loss_slice(model, x, y, directions=dirs, grid=grid[:2], engine=engine,
                             batch_size=args.samples)  # warm-up
        with Peak(device) as peak:
            t, ds = timed(sync, 1, landscape.loss_slice, model, x, y, directions=dirs, grid=grid,
                          engine=engine, batch_size=args.samples)
        label = f"loss_slice {engine}" + (f" (chose {ds.attrs['engine']})" if engine == "auto" else "")
        rows.append(("slice", label, t, f"{n_points / t:.1f} points/s", peak,
                     f"max abs diff {np.abs(ds.loss.values - ref).max():.1e}"))
    return rows


def hessian_rows(args, device, sync):
    from pyhessian import hessian as pyhessian_class

    pyhessian_module = sys.modules[pyhessian_class.__module__]
    model = landscape.build_model(args.model, init="xavier", seed=0).to(device)
    x, y = landscape.load_dataset("digits", n=args.batch, in_shape=model.in_shape)
    x, y = x.to(device), y.to(device)
    rows = []
    with Peak(device) as peak:
        sync()
        start = time.perf_counter()
        op = LossHessian(model, x, y)
        ours = lanczos(op, top_k=args.top_k, tol=1e-3, eigenvectors=False)
        sync()
        t_ours = time.perf_counter() - start
    n_ours = op.n_products
    op.release()
    counter = _Counter(pyhessian_module)
    with Peak(device) as peak_theirs:
        sync()
        start = time.perf_counter()
        torch.manual_seed(0)
        comp = pyhessian_class(model, nn.CrossEntropyLoss(), data=(x, y), cuda=device.type == "cuda")
        theirs, _ = comp.eigenvalues(top_n=args.top_k, tol=1e-3)
        sync()
        t_theirs = time.perf_counter() - start
    del comp
    model.zero_grad(set_to_none=True)
    theirs = np.sort(np.asarray(theirs, float))[::-1]
    check = f"rel. diff {_rel_err(ours.eigenvalues, theirs):.1e}"
    rows.append((f"Hessian top-{args.top_k}", "Lanczos (ours, tol 1e-3)", t_ours,
                 f"{n_ours} HVPs", peak, check))
    rows.append((f"Hessian top-{args.top_k}", "PyHessian (tol 1e-3)", t_theirs,
                 f"{counter.take()} HVPs", peak_theirs, f"{t_theirs / t_ours:.2g}x our time"))

    op = LossHessian(model, x, y)
    op.gradient()
    v = torch.randn(op.dim, device=device, dtype=op.dtype)
    op.matvec(v)

    def median(fn) -> float:
        times = []
        for _ in range(5):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    t_grad = median(op.gradient)
    with Peak(device) as peak:
        t_hvp = median(lambda: op.matvec(v))
    op.release()
    rows.append(("HVP / gradient", f"batch {args.batch}", t_hvp, f"{t_hvp / t_grad:.2f}x a gradient",
                 peak, f"gradient {t_grad * 1e3:.1f} ms"))
    return rows


def sae_rows(args, device, sync):
    try:
        train_sae = landscape.train_sae
    except (AttributeError, ImportError):
        return [("SAE training", "n/a (landscape.train_sae missing)", None, "", None, "")]
    gen = torch.Generator().manual_seed(0)
    d, m = args.sae_width, args.sae_width * args.sae_expansion
    dictionary = torch.nn.functional.normalize(torch.randn(m, d, generator=gen), dim=1)
    codes = torch.rand(args.sae_tokens, m, generator=gen)
    codes = codes * (codes > 1 - args.sae_k / m)  # about k active latents per token
    acts = (codes @ dictionary).to(device)
    train_sae(acts[:2 * args.sae_k + 2], expansion=args.sae_expansion, k=args.sae_k, seed=0,
              device=device)  # warm-up
    with Peak(device) as peak:
        t, _ = timed(sync, 1, train_sae, acts, expansion=args.sae_expansion, k=args.sae_k, seed=0,
                     device=device)
    return [("SAE training", f"TopK, {d} x {args.sae_expansion}, k {args.sae_k}", t,
             f"{args.sae_tokens / t:,.0f} tokens/s", peak, f"{args.sae_tokens:,} tokens")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    parser.add_argument("--threads", type=int, default=None, help="default: the usable cores")
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None)
    args = parser.parse_args()
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    threads = use_threads(args.threads)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {threads}, model "
          f"{args.model}, slice {args.grid}x{args.grid} on {args.samples} samples, Hessian batch "
          f"{args.batch}" + (" [smoke]" if args.smoke else ""))
    rows = []
    for part in (slice_rows, hessian_rows, sae_rows):
        start = time.perf_counter()
        rows += part(args, device, sync)
        print(f"  {part.__name__}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print("\n| what | method | time (s) | rate | peak GPU memory | check |")
    print("|---|---|---:|---:|---:|---|")
    for what, method, t, rate, peak, check in rows:
        time_cell = "" if t is None else f"{t:.3f}"
        print(f"| {what} | {method} | {time_cell} | {rate} | {'' if peak is None else peak} "
              f"| {check} |")


if __name__ == "__main__":
    main()
