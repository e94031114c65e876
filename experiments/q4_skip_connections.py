"""Q4: skip connections.  resnet18 against resnet18-noskip, random and trained: 2-D loss
surfaces, the fraction of quasi-convex 1-D loss slices, and |λmin/λmax| at the centre and
on a coarse grid of the plane.

The claim under test (Li, Xu, Taylor, Studer & Goldstein, *Visualizing the Loss
Landscape of Neural Nets*, NeurIPS 2018): skip connections keep loss surfaces smooth and
nearly convex, whereas the same network without them becomes chaotic and non-convex as
it gets deep; the Hessian ratio |λmin/λmax| maps where a surface is convex (≈ 0) and
where it is not.  Their setting: ResNet-20/56/110 and their no-skip twins on CIFAR-10,
trained to convergence (300 epochs), BatchNorm in eval mode with the trained running
statistics; the chaos appears at 56 layers and more (at 20 layers the two look alike).
Here, far smaller (resnet18, 1 epoch, 16×16 digits): what is measured is a verdict at
this scale, not a test of theirs.  On digits (16×16 inputs, one channel), for each seed:

* a random network (default init) and the same one trained with
  :func:`landscape.train.train` (SGD, a few epochs), for both architectures;
* 1-D loss slices along ``lines`` filter-normalised directions per seed (Li et al.'s
  normalisation; BatchNorm and bias parameters get no direction), pooled over seeds:
  the fraction that is quasi-convex, with flat curves (``loss_constant``) counted and
  left out;
* a 2-D surface :func:`landscape.loss_slice` on the plane of the first two of those
  directions, with the quasi-convexity scores of its rows, columns and diagonals;
* the top and bottom Hessian eigenvalue (single-vector Lanczos on
  :class:`landscape.hessian.LossHessian`, at least ``min_steps`` products, relative
  tolerance ``tol``, converged flags and residuals kept) at the centre, and for seed 0
  at the points ``hessian_grid`` of the plane (trained networks only at the default
  size: Li et al.'s maps are of trained networks, and a resnet18 Hessian-vector product
  costs ≈ 1 s of CPU).  The explicit residual of λmin over λmax bounds the error of
  |λmin/λmax|; an unconverged bottom Ritz value lies inside the spectrum.

BatchNorm: every loss and Hessian uses the statistics of the slice batch recomputed at
the centre and then held fixed over the whole plane (``bn="recompute"`` in
:func:`landscape.loss_slice`; at an off-centre grid point the Hessian is taken with the
centre's statistics loaded into the moved copy, ``bn="eval"``), so each Hessian is that
of the very surface plotted.  Random networks need recomputed statistics (theirs are the
fresh 0/1); trained ones get the same treatment so that the two are comparable (frozen
statistics, as in Li et al.'s eval mode, for both architectures).  Every seed's lines are
scored again with ``bn="batch"`` (each point normalised with its own batch statistics, as
in training mode; ``--full``: seed 0's centre Hessian too): the same directions under
the other mode.

A prediction that could fail (Li et al.): trained resnet18-noskip is less convex than
trained resnet18: a lower fraction of quasi-convex lines and a larger |λmin/λmax|, by
more than the spread over seeds.  "No difference" is claimed only by an equivalence test
(TOST, ``_common.tost``) at the margins fixed below before the run (``MARGINS``): per-seed
fractions of quasi-convex lines within ±0.15, |λmin/λmax| within ±0.03; otherwise the
difference is "not detected" with its power.  Second question: does the BatchNorm mode
move the verdicts more than the skips do?  The mode's effect (frozen minus batch, paired
by seed and direction) against the skips' effect (skip minus noskip) per mode, each with
a 95 % interval over seeds.

Writes results/q4_skip_connections/ (summary.json) and figures/q4_*.png.

    python experiments/q4_skip_connections.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import (
    equivalence_text,
    lanczos_extremes,
    parse_args,
    save_figure,
    stat,
    timing,
    tost,
    write_summary,
)

import landscape
from landscape.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q4_skip_connections"
ARCHS = ("resnet18", "resnet18-noskip")
STATES = ("random", "trained")
BN = "recompute"
MODES = (BN, "batch")  # every line is scored under both: frozen centre statistics, batch ones
LANCZOS_TOL = 1e-3
# Equivalence margins, fixed before the run: a difference of 0.15 in the fraction of
# quasi-convex lines (about one line in seven) and of 0.03 in |λmin/λmax| (three times the
# ratio's error bound from λmin's residual) is the smallest one would call a difference.
MARGINS = {"lines_qcvx": 0.15, "ratio_min_max": 0.03}

TINY = str(Path(__file__).resolve()) + ":tiny_resnet"  # the --quick stand-in, with BatchNorm
SQUARE = [(a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)]  # (α, β) of the Hessians
AXIS = [(0.0, 0.0), (-1.0, 0.0), (1.0, 0.0)]

SIZES = {
    "quick": dict(archs={"tiny-skip": dict(name=TINY, model_args={"skip": True}),
                         "tiny-noskip": dict(name=TINY, model_args={"skip": False})},
                  in_shape=(1, 8, 8), seeds=2, train_samples=200, epochs=1, n=16,
                  surface="-1:1:5", line_grid="-1:1:9", lines=3, hessian_grid=SQUARE,
                  tol=LANCZOS_TOL, min_steps=None, max_steps=40, grid_states=STATES,
                  bn_check_hessian=True),
    # resnet18 costs ≈ 1 s of CPU per Hessian-vector product and ≈ 1.6 s per 11-point line
    # (its direction drawn included); the 20 centre Hessians (5 seeds x 4 conditions, λmin
    # to tol 1e-2, i.e. the ratio within ±0.01, after at least 16 products: fewer can take
    # a null direction for λmin, see _common.lanczos_extremes) take most of the budget, so
    # the default takes 4 seeds (4 independently trained networks per architecture), 8
    # lines per seed (32 per condition) scored under both BatchNorm modes, a 5 x 5 surface,
    # the grid on the α axis of trained seed 0 only, and no bn="batch" Hessian.
    "default": dict(archs={a: dict(name=a) for a in ARCHS}, in_shape=(1, 16, 16), seeds=4,
                    train_samples=None, epochs=1, n=32, surface="-1:1:5", line_grid="-1:1:11",
                    lines=8, hessian_grid=AXIS, tol=1e-2, min_steps=16, max_steps=24,
                    grid_states=("trained",), bn_check_hessian=False),
    "full": dict(archs={a: dict(name=a) for a in ARCHS}, in_shape=(3, 32, 32), seeds=5,
                 train_samples=None, epochs=20, n=1000, surface="-1:1:51", line_grid="-1:1:41",
                 lines=32, hessian_grid=[(a, b) for a in (-1, -.5, 0, .5, 1) for b in (-1, -.5, 0, .5, 1)],
                 tol=LANCZOS_TOL, min_steps=30, max_steps=200, grid_states=STATES,
                 bn_check_hessian=True),
}


class _TinyBlock(torch.nn.Module):
    def __init__(self, width: int, skip: bool):
        super().__init__()
        self.skip = skip
        self.conv1 = torch.nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.conv2 = torch.nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(width)

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + x if self.skip else out)


def tiny_resnet(skip: bool = True, width: int = 3, blocks: int = 2, channels: int = 1):
    """A toy ResNet (stem, ``blocks`` basic blocks with or without their shortcut, global
    pooling, linear head) with BatchNorm: the --quick stand-in for resnet18."""
    layers = [torch.nn.Conv2d(channels, width, 3, padding=1, bias=False), torch.nn.BatchNorm2d(width),
              torch.nn.ReLU(), *[_TinyBlock(width, skip) for _ in range(blocks)],
              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 10)]
    return torch.nn.Sequential(*layers)


def build(spec: dict, seed: int, in_shape) -> torch.nn.Module:
    return landscape.build_model(spec["name"], seed=seed, in_shape=in_shape,
                                 **({"model_args": spec["model_args"]} if "model_args" in spec else {}))


# ----------------------------------------------------------------------------- pieces

def centre_statistics(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple]:
    """Per BatchNorm layer, the mean and population variance of its input over ``x`` as one
    batch in training mode (each layer normalising with the batch's statistics): what
    ``bn="recompute"`` holds fixed.  Computed on a copy; ``{}`` without BatchNorm."""
    net = copy.deepcopy(model).train()
    stats, handles = {}, []
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            def hook(_m, inputs, name=name):
                z = inputs[0].detach().double()
                dims = [0] + list(range(2, z.dim()))
                stats[name] = (z.mean(dims), z.var(dims, unbiased=False))
            handles.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return stats


def moved(model: torch.nn.Module, directions: list[dict], coeffs, stats: dict) -> torch.nn.Module:
    """A copy of ``model`` at θ + Σ c_i d_i with the BatchNorm statistics ``stats`` (the
    centre's) as running statistics, in eval mode."""
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            for c, d in zip(coeffs, directions):
                p.add_(float(c) * d[name].to(p.dtype))
        for name, m in net.named_modules():
            if name in stats:
                mean, var = stats[name]
                m.running_mean.copy_(mean.to(m.running_mean.dtype))
                m.running_var.copy_(var.to(m.running_var.dtype))
                m.num_batches_tracked.fill_(1)
    return net


@torch.no_grad()
def eval_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.cross_entropy(model.eval()(x), y))


def ratio(model: torch.nn.Module, x, y, bn: str, max_steps: int, seed: int,
          tol: float = LANCZOS_TOL, min_steps: int | None = None) -> dict:
    """Top and bottom eigenvalue (single-vector Lanczos), their residuals and converged
    flags, and |λmin/λmax|."""
    r = lanczos_extremes(model, x, y, top_k=1, bottom_k=1, tol=tol, max_steps=max_steps,
                         min_steps=min_steps, block=1, bn=bn, seed=seed)
    return {"lambda_max": r["lambda_max"], "lambda_min": r["lambda_min"],
            "ratio_min_max": r["ratio_min_max"], "converged_max": r["converged_top"],
            "converged_min": r["converged_min"], "residual_max": r["residual_top"],
            "residual_min": r["residual_min"], "lambda_min_half": r["lambda_min_half"],
            "n_hvp": r["lanczos_hvp"], "tol": tol, "bn": r["bn"]}


def lines(model, x, y, directions: list[dict], grid, bn: str) -> list[dict]:
    """Scores of the 1-D loss slice along each direction (``loss_slice``, one per call)."""
    out = []
    for d in directions:
        ds = landscape.loss_slice(model, x, y, directions=[d], dims=1, grid=grid, bn=bn)
        out.append({"quasi_convex": bool(ds.loss_quasi_convex), "quasi_concave": bool(ds.loss_quasi_concave),
                    "constant": bool(ds.loss_constant), "barrier": float(ds.loss_qcvx_barrier),
                    "n_minima": int(ds.loss_n_minima), "loss": ds.loss.values.tolist(),
                    "centre_is_min": bool(np.argmin(ds.loss.values) == len(ds.alpha) // 2)})
    return out


def line_fractions(scored: list[dict]) -> dict:
    """Fractions over the lines that are not flat, and the flat share over all (NaN curves
    would be dropped by the scores; none arise here)."""
    flat = np.array([s["constant"] for s in scored])
    kept = [s for s in scored if not s["constant"]]

    def frac(key: str) -> float:
        return float(np.mean([s[key] for s in kept])) if kept else float("nan")

    return {"n_lines": len(scored), "n_flat": int(flat.sum()), "frac_flat": float(flat.mean()),
            "frac_quasi_convex": frac("quasi_convex"), "frac_quasi_concave": frac("quasi_concave"),
            "frac_centre_is_min": frac("centre_is_min"),
            "mean_barrier": float(np.mean([s["barrier"] for s in kept])) if kept else float("nan")}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a binomial fraction k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


# ----------------------------------------------------------------------------- the run

def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start, cpu0 = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    x, y = landscape.load_dataset("digits", n=cfg["train_samples"], split="train",
                                  in_shape=cfg["in_shape"])
    xt, yt = landscape.load_dataset("digits", split="test", in_shape=cfg["in_shape"])
    xs, ys = x[:cfg["n"]], y[:cfg["n"]]  # the fixed batch of every slice and Hessian
    records: list[dict] = []
    surfaces: dict = {}
    # Seeds outermost: the records written after each (seed, architecture) then hold whole
    # seeds of both architectures if a run is cut short (partial.json).
    for seed in range(cfg.get("first_seed", 0), cfg["seeds"]):
        for arch in cfg["archs"]:
            t0 = time.time()
            nets = {"random": build(cfg["archs"][arch], seed, cfg["in_shape"])}
            trained = copy.deepcopy(nets["random"])
            history, _ = train(trained, x, y, xt, yt, epochs=cfg["epochs"], seed=seed)
            nets["trained"] = trained
            for state, net in nets.items():
                rec = {"arch": arch, "seed": seed, "state": state}
                if state == "trained":
                    rec["train_loss"] = history["train_loss"][-1]
                # The plane of the surface is spanned by the first two line directions.
                dirs = landscape.parameter_directions(net, "filter", n=cfg["lines"], seed=2000 + seed)
                plane = dirs[:2]
                surf = landscape.loss_slice(net, xs, ys, directions=plane, dims=2,
                                            grid=cfg["surface"], bn=BN)
                rec["centre_loss"] = float(surf.loss.sel(alpha=0.0, beta=0.0, method="nearest"))
                rec["surface"] = {k: float(surf.attrs[f"loss_{k}"]) for k in (
                    "frac_quasi_convex", "frac_quasi_concave", "frac_constant")}
                rec["surface_range"] = float(surf.loss.max() - surf.loss.min())
                if seed == 0:
                    surfaces[arch, state] = surf
                    # Kept beside the summary, so that the figure can be redrawn (replot()).
                    landscape.save(surf, out / f"surface_{arch}_{state}.nc", overwrite=True)
                rec["lines"] = lines(net, xs, ys, dirs, cfg["line_grid"], BN)
                hess = dict(max_steps=cfg["max_steps"], seed=seed, tol=cfg["tol"],
                            min_steps=cfg["min_steps"])
                rec["centre"] = ratio(net, xs, ys, BN, **hess)
                if seed == 0 and state in cfg["grid_states"]:
                    stats = centre_statistics(net, xs)
                    grid = []
                    for a, b in cfg["hessian_grid"]:
                        net_ab = moved(net, plane, (a, b), stats)
                        if a == 0 and b == 0:
                            point = dict(rec["centre"])
                        else:
                            point = ratio(net_ab, xs, ys, "eval", **hess)
                        point.update(alpha=a, beta=b, loss=eval_loss(net_ab, xs, ys),
                                     surface_loss=float(surf.loss.sel(alpha=a, beta=b,
                                                                      method="nearest")))
                        grid.append(point)
                    rec["hessian_grid"] = grid
                rec["lines_batch"] = lines(net, xs, ys, dirs, cfg["line_grid"], "batch")
                if seed == 0 and cfg["bn_check_hessian"]:
                    rec["batch_bn"] = {"centre": ratio(net, xs, ys, "batch", **hess)}
                records.append(rec)
                fr = line_fractions(rec["lines"])
                print(f"{arch} seed {seed} {state}: loss {rec['centre_loss']:.3f} lines qcvx "
                      f"{fr['frac_quasi_convex']:.2f} (flat {fr['n_flat']}; batch bn "
                      f"{line_fractions(rec['lines_batch'])['frac_quasi_convex']:.2f}) surface qcvx "
                      f"{rec['surface']['frac_quasi_convex']:.2f} |λmin/λmax| "
                      f"{rec['centre']['ratio_min_max']:.4f} (λmax {rec['centre']['lambda_max']:.4g}, "
                      f"converged {rec['centre']['converged_max']:d}/{rec['centre']['converged_min']:d}, "
                      f"{rec['centre']['n_hvp']} hvp)", flush=True)
            print(f"{arch} seed {seed}: {time.time() - t0:.1f} s", flush=True)
            write_summary(out, {"records": records, "partial": True,
                                "cpu_seconds": time.process_time() - cpu0})
            (out / "summary.json").rename(out / "partial.json")
    summary = summarise(records, cfg)
    summary["figures"] = [str(plot_surfaces(surfaces, records, figures / "q4_surfaces.png")),
                          str(plot_summary(summary, figures / "q4_convexity.png"))]
    summary["records"] = records
    write_summary(out, timing(summary, start, cpu0))
    return summary


# ----------------------------------------------------------------------------- summary

def summarise(records: list[dict], cfg: dict) -> dict:
    summary: dict = {"config": {k: v for k, v in cfg.items()} | {
        "archs": list(cfg["archs"]), "bn": BN, "modes": MODES, "margins": MARGINS},
                     "conditions": {}}
    for arch in cfg["archs"]:
        for state in STATES:
            sel = [r for r in records if r["arch"] == arch and r["state"] == state]
            pooled = line_fractions([s for r in sel for s in r["lines"]])
            kept = pooled["n_lines"] - pooled["n_flat"]
            k = int(round(pooled["frac_quasi_convex"] * kept)) if kept else 0
            per_seed = [line_fractions(r["lines"]) for r in sel]
            e = {"lines_pooled": pooled, "lines_qcvx_wilson95": wilson(k, kept),
                 "lines_qcvx_per_seed": stat([f["frac_quasi_convex"] for f in per_seed]),
                 "lines_flat_per_seed": stat([f["frac_flat"] for f in per_seed]),
                 "surface_qcvx": stat([r["surface"]["frac_quasi_convex"] for r in sel]),
                 "surface_flat": stat([r["surface"]["frac_constant"] for r in sel]),
                 "centre_loss": stat([r["centre_loss"] for r in sel]),
                 "surface_range": stat([r["surface_range"] for r in sel])}
            for key in ("ratio_min_max", "lambda_max", "lambda_min"):
                e[f"centre_{key}"] = stat([r["centre"][key] for r in sel])
            e["centre_converged_max"] = float(np.mean([r["centre"]["converged_max"] for r in sel]))
            e["centre_converged_min"] = float(np.mean([r["centre"]["converged_min"] for r in sel]))
            e["centre_ratio_converged"] = stat([r["centre"]["ratio_min_max"] for r in sel
                                                if r["centre"]["converged_max"]
                                                and r["centre"]["converged_min"]])
            # The explicit residual of λmin over λmax bounds the error of the ratio.
            e["centre_ratio_error_bound"] = float(max(r["centre"]["residual_min"]
                                                      / abs(r["centre"]["lambda_max"]) for r in sel))
            e["centre_n_hvp"] = stat([r["centre"]["n_hvp"] for r in sel])
            grid = next((r["hessian_grid"] for r in sel if "hessian_grid" in r), None)
            if grid:
                e["grid_ratio"] = stat([p["ratio_min_max"] for p in grid])
                e["grid_ratio_max"] = float(max(p["ratio_min_max"] for p in grid))
                e["grid_converged_min"] = float(np.mean([p["converged_min"] for p in grid]))
                e["grid_loss_mismatch"] = float(max(abs(p["loss"] - p["surface_loss"]) for p in grid))
            batch_pooled = line_fractions([s for r in sel for s in r["lines_batch"]])
            kept_b = batch_pooled["n_lines"] - batch_pooled["n_flat"]
            k_b = int(round(batch_pooled["frac_quasi_convex"] * kept_b)) if kept_b else 0
            e["lines_batch_pooled"] = batch_pooled
            e["lines_batch_qcvx_wilson95"] = wilson(k_b, kept_b)
            e["lines_batch_qcvx_per_seed"] = stat([line_fractions(r["lines_batch"])["frac_quasi_convex"]
                                                   for r in sel])
            batch = next((r["batch_bn"] for r in sel if "batch_bn" in r), None)
            if batch:
                e["batch_bn_seed0"] = batch
            if state == "trained":
                e["train_loss"] = stat([r["train_loss"] for r in sel])
            summary["conditions"][f"{arch}/{state}"] = e
    if len(cfg["archs"]) == 2:
        a, b = cfg["archs"]
        summary["prediction"] = {}
        for state in STATES:
            skip, noskip = summary["conditions"][f"{a}/{state}"], summary["conditions"][f"{b}/{state}"]
            summary["prediction"][state] = {
                "lines_qcvx_skip_minus_noskip": skip["lines_pooled"]["frac_quasi_convex"]
                - noskip["lines_pooled"]["frac_quasi_convex"],
                "surface_qcvx_skip_minus_noskip": skip["surface_qcvx"]["mean"]
                - noskip["surface_qcvx"]["mean"],
                "ratio_noskip_minus_skip": noskip["centre_ratio_min_max"]["mean"]
                - skip["centre_ratio_min_max"]["mean"],
                "ratio_seed_std": max(skip["centre_ratio_min_max"]["std"],
                                      noskip["centre_ratio_min_max"]["std"]),
            }
        summary["equivalence"] = equivalence(records, cfg)
        summary["bn_vs_skip"] = bn_versus_skip(records, cfg)
    return summary


def per_seed_fractions(records: list[dict], arch: str, state: str, key: str,
                       seeds=None) -> list[float]:
    """Fraction of quasi-convex lines (of the non-flat) of each seed (of ``seeds``, default
    every one), in seed order."""
    sel = sorted((r for r in records if r["arch"] == arch and r["state"] == state
                  and (seeds is None or r["seed"] in seeds)), key=lambda r: r["seed"])
    return [line_fractions(r[key])["frac_quasi_convex"] for r in sel]


def equivalence(records: list[dict], cfg: dict) -> dict:
    """Skip against noskip, per state: TOST of the per-seed fractions of quasi-convex lines
    under each BatchNorm mode and of the centre |λmin/λmax| (Welch over independently
    trained seeds), at the margins of ``MARGINS``."""
    a, b = cfg["archs"]
    out = {}
    for state in STATES:
        for mode, key in zip(MODES, ("lines", "lines_batch")):
            r = tost(per_seed_fractions(records, b, state, key),  # Δ = skip − noskip
                     per_seed_fractions(records, a, state, key), MARGINS["lines_qcvx"])
            out[f"{state}/lines_qcvx/{mode}"] = r | {"text": equivalence_text(r)}
        ratios = {arch: [r["centre"]["ratio_min_max"] for r in records
                         if r["arch"] == arch and r["state"] == state] for arch in (a, b)}
        r = tost(ratios[b], ratios[a], MARGINS["ratio_min_max"])
        out[f"{state}/ratio_min_max"] = r | {"text": equivalence_text(r)}
    return out


def _mean_ci(values) -> dict:
    """Mean and 95 % t interval over seeds."""
    from scipy import stats as st

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return {"mean": float(v.mean()) if len(v) else float("nan"), "ci": [float("nan")] * 2,
                "n": int(len(v))}
    half = float(st.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": float(v.mean()), "ci": [float(v.mean() - half), float(v.mean() + half)],
            "n": int(len(v))}


def bn_versus_skip(records: list[dict], cfg: dict) -> dict:
    """Per state: the BatchNorm mode's effect on the fraction of quasi-convex lines
    (frozen minus batch, the same directions, per seed; per architecture) and the skips'
    effect (skip minus noskip, per mode; seeds paired by index only, they are independent
    networks), each with a 95 % t interval over seeds."""
    a, b = cfg["archs"]
    out = {}
    for state in STATES:
        entry = {}
        for arch in (a, b):
            frozen = per_seed_fractions(records, arch, state, "lines")
            batch = per_seed_fractions(records, arch, state, "lines_batch")
            entry[f"mode_effect/{arch}"] = _mean_ci(np.subtract(frozen, batch))
        both = ({r["seed"] for r in records if r["arch"] == a and r["state"] == state}
                & {r["seed"] for r in records if r["arch"] == b and r["state"] == state})
        for mode, key in zip(MODES, ("lines", "lines_batch")):
            entry[f"skip_effect/{mode}"] = _mean_ci(np.subtract(
                per_seed_fractions(records, a, state, key, both),
                per_seed_fractions(records, b, state, key, both)))
        out[state] = entry
    return out


# ----------------------------------------------------------------------------- figures

def plot_surfaces(surfaces: dict, records: list[dict], path: Path) -> Path:
    keys = list(surfaces)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.9), squeeze=False,
                             layout="constrained")
    for ax, key in zip(axes[0], keys):
        surf = surfaces[key]
        a, b = surf.alpha.values, surf.beta.values
        z = np.log10(np.maximum(surf.loss.values.T, 1e-6))
        cs = ax.contourf(a, b, z, levels=20, cmap="viridis")
        ax.contour(a, b, z, levels=10, colors="k", linewidths=0.3)
        rec = next(r for r in records if (r["arch"], r["state"]) == key and r["seed"] == 0)
        for p in rec.get("hessian_grid", []):
            # Inside the plane at its edges, on a dark box that any colour leaves readable.
            ha = "left" if p["alpha"] < 0 else "right" if p["alpha"] > 0 else "center"
            va = "bottom" if p["beta"] < 0 else "top" if p["beta"] > 0 else "center"
            ax.text(p["alpha"], p["beta"], f"{p['ratio_min_max']:.2f}", fontsize=7, color="w",
                    ha=ha, va=va, bbox=dict(boxstyle="round,pad=0.15", fc="0.15", ec="none",
                                            alpha=0.7))
        bar = fig.colorbar(cs, ax=ax, shrink=0.85)
        bar.ax.tick_params(labelsize=7)
        bar.locator = matplotlib.ticker.MaxNLocator(5)
        bar.update_ticks()
        ax.set_title(f"{key[0]}\n{key[1]}, seed 0", fontsize=8)
        ax.set_xticks([-1, 0, 1])
        ax.set_yticks([-1, 0, 1])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("α")
    axes[0][0].set_ylabel("β")
    fig.suptitle("log10 loss on the plane of two filter-normalised directions (BatchNorm: "
                 "centre statistics, frozen); numbers: |λmin/λmax| (Lanczos)", fontsize=8)
    return save_figure(fig, path)


def plot_summary(summary: dict, path: Path) -> Path:
    conds = list(summary["conditions"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    xs = np.arange(len(conds))
    shown = set()

    def point(ax, x, y, err, fmt, colour, label):
        ax.errorbar(x, y, yerr=err, fmt=fmt, color=colour, capsize=3,
                    label=None if label in shown else label)
        shown.add(label)

    for i, c in enumerate(conds):
        e = summary["conditions"][c]
        for dx, key, fmt, colour, label in (
                (-0.15, "lines", "o", "C0", "1-D lines, frozen BatchNorm (95 % Wilson)"),
                (0.0, "lines_batch", "^", "C3", "1-D lines, batch BatchNorm (95 % Wilson)")):
            lo, hi = e[f"{key}_qcvx_wilson95"]
            p = e[f"{key}_pooled"]["frac_quasi_convex"]
            point(axes[0], i + dx, p, [[max(0.0, p - lo)], [max(0.0, hi - p)]], fmt, colour, label)
        point(axes[0], i + 0.15, e["surface_qcvx"]["mean"], e["surface_qcvx"]["std"], "s", "C1",
              "surface rows/cols/diagonals, frozen (± std)")
        r = e["centre_ratio_min_max"]
        point(axes[1], i, r["mean"], r["std"], "o", "C0", "centre, mean ± std over seeds")
        if "grid_ratio" in e:
            point(axes[1], i + 0.15, e["grid_ratio"]["mean"], e["grid_ratio"]["std"], "s", "C2",
                  "(α, 0) grid points, seed 0")
    axes[0].set_ylabel("fraction quasi-convex")
    axes[0].set_ylim(-0.05, 1.4)  # room for the legend above the points
    axes[0].set_yticks(np.linspace(0, 1, 6))
    axes[1].set_ylabel("|λmin/λmax|")
    for ax in axes:
        ax.set_xticks(xs, [c.replace("/", "\n") for c in conds], fontsize=7)
        ax.legend(fontsize=6, loc="upper center" if ax is axes[0] else "best")
    return save_figure(fig, path)


def combine_runs(folders: list[Path], out: Path, figures: Path, size: str = "default") -> dict:
    """One summary from runs of disjoint seeds (``SIZES[size]["first_seed"]`` set per run,
    run side by side): their records (``summary.json``, else ``partial.json``) pooled,
    summarised and drawn as one run (seed 0's surfaces from the first folder)."""
    import json

    records, cpu = [], 0.0
    for folder in folders:
        path = Path(folder) / "summary.json"
        path = path if path.is_file() else Path(folder) / "partial.json"
        part = json.loads(path.read_text())
        records += part["records"]
        cpu += part.get("cpu_seconds", 0.0)
    records.sort(key=lambda r: (r["seed"], list(SIZES[size]["archs"]).index(r["arch"])))
    cfg = dict(SIZES[size], seeds=len({r["seed"] for r in records}))
    summary = summarise(records, cfg)
    summary["records"] = records
    summary["combined_from"] = [str(f) for f in folders]
    summary["cpu_seconds"] = cpu
    Path(out).mkdir(parents=True, exist_ok=True)
    write_summary(out, summary)
    summary["figures"] = [str(p) for p in replot(out, figures, surfaces=folders[0])]
    write_summary(out, summary)
    return summary


def replot(out: Path, figures: Path, surfaces: Path | None = None) -> list[Path]:
    """Redraw both figures from a finished run's ``summary.json`` and seed-0 surfaces
    (in ``out``, or in ``surfaces``)."""
    import json

    summary = json.loads((Path(out) / "summary.json").read_text())
    records = summary["records"]
    where = Path(surfaces or out)
    surfaces = {(r["arch"], r["state"]): landscape.load(where / f"surface_{r['arch']}_{r['state']}.nc")
                for r in records if r["seed"] == 0}
    return [plot_surfaces(surfaces, records, Path(figures) / "q4_surfaces.png"),
            plot_summary(summary, Path(figures) / "q4_convexity.png")]


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv)
    summary = run(size, out, figures)
    for c, e in summary["conditions"].items():
        p = e["lines_pooled"]
        print(f"{c}: lines qcvx {p['frac_quasi_convex']:.3f} {e['lines_qcvx_wilson95']} "
              f"(flat {p['n_flat']}/{p['n_lines']}), surface qcvx {e['surface_qcvx']['mean']:.3f}"
              f"±{e['surface_qcvx']['std']:.3f}, |λmin/λmax| {e['centre_ratio_min_max']['mean']:.4f}"
              f"±{e['centre_ratio_min_max']['std']:.4f} (λmin converged "
              f"{e['centre_converged_min']:.0%}, error ≤ {e['centre_ratio_error_bound']:.3g})")
    if "prediction" in summary:
        print(f"prediction: {summary['prediction']}")
        for key, r in summary["equivalence"].items():
            print(f"skip vs noskip {key}: {r['text']}")
        for state, entry in summary["bn_vs_skip"].items():
            print(f"{state}: " + "; ".join(f"{k} {v['mean']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
                                           for k, v in entry.items()))
    print(f"{summary['seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
