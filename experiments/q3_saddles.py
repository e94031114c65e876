"""Q3: saddles.  The Hessian's negative mass (index), |λmin/λmax| and top eigenvalues of
random against trained networks, and the index along training against the training loss.

The claim under test (Dauphin et al., *Identifying and attacking the saddle point
problem in high-dimensional non-convex optimization*, NeurIPS 2014): in high
dimensions critical points with a large loss are saddles, not minima, and the index
(the fraction of negative Hessian eigenvalues) falls with the loss, roughly linearly
(their figure "index vs error").  On digits, for mlp, cnn and resnet18, each seed is
trained with :func:`landscape.train.train` keeping its trajectory; at points along it
(step 0 is the random network, the last step the "trained" one) the spectrum of the
loss Hessian on a fixed batch is measured with :func:`landscape.hessian_spectrum`:

* Lanczos: the top eigenvalues and the bottom one, their residuals and ``converged``
  flags (relative residual ``LANCZOS_TOL``), ``ratio_min_max = |λmin/λmax|``, also
  summarised over the converged points only;
* SLQ density, broadened by σ = ``SIGMA_REL`` × (λmax − λmin) (narrow, so that the zero
  cluster does not leak into the negative mass), and its negative / zero / positive
  masses split at ±ε, ε = ``zero_tol`` × the spectral range, at several ``zero_tol``
  (the API's masses at ``API_ZERO_TOL``; the others integrated from the same density).

Ground truth where it can be had: the mlp is small enough for its dense Hessian
(``torch.func.hessian`` in float64 + ``eigvalsh``), so its exact index (fraction of
eigenvalues below 0, and below −ε) is measured beside the SLQ estimate at every point:
the difference is the estimator's noise floor.

BatchNorm (resnet18): every Hessian and loss uses ``bn="recompute"`` (statistics of the
Hessian batch itself, what training mode computes on that batch), for random and
trained networks alike: a random network's running statistics are the fresh 0/1, and
after two epochs the running averages still lag the weights.  The default run also
measures resnet18 seed 0 with ``bn="batch"`` (the statistics' own dependence on the
weights inside the Hessian) to show how much that choice moves λmax and λmin.

A prediction that could fail: the index falls with the training loss, roughly linearly,
towards 0 at zero loss (pooled over seeds and steps: a Pearson r > 0.8 and an intercept
of the fitted line within the noise floor of 0).

"Random and trained alike" is claimed only by an equivalence test (TOST,
``_common.tost``, paired by seed: each trained network against its own step 0) at the
margins of ``MARGINS``, fixed before the run; otherwise the difference is "not
detected" with its power.  A seed whose training diverged (final loss on the Hessian
batch above its random loss) is reported and also left out in a second test.

Writes results/q3_saddles/ (points.csv, summary.json) and figures/q3_*.png.

    python experiments/q3_saddles.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import copy
import json
import math
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
from scipy.special import ndtr

import landscape
from landscape.train import train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q3_saddles"
ZERO_TOLS = (0.003, 0.01, 0.03)  # ε / spectral range at which the masses are split
API_ZERO_TOL = 0.01  # the one passed to hessian_spectrum (its masses are reported as such)
INDEX_TOL = 0.01  # the ε of "the index" in the plots and the prediction
SIGMA_REL = 0.001  # density broadening / (λmax − λmin): << every ε above
GRID_POINTS = 8001  # density grid: spacing ≈ range / 8000, σ / spacing ≈ 8
BN = "recompute"
BATCH = 64  # training mini-batch

LANCZOS_TOL = 1e-3  # relative residual (of max|θ|) at which a Ritz value counts as converged
# Equivalence margins (random against trained, paired by seed), fixed before the run:
# |λmin/λmax| within ±0.05 (half the random resnet18's 0.1; five times its error bound).
MARGINS = {"ratio_min_max": 0.05}

# Hessian settings per model: samples of the fixed batch, Lanczos (top_k, bottom_k,
# max_steps, min_steps, tol (default LANCZOS_TOL), block: its block size, None for the
# API's default max(2, top_k, bottom_k)), SLQ (runs x steps).  resnet18 (11 M
# parameters, ≈ 1 s of CPU per product) gets a single-vector Lanczos at tol 1e-2: its
# λmin converges in ≈ 15–25 products, and the residual bounds the error of |λmin/λmax|
# by 0.01.  Its Hessian has a huge null space, so a run that stops at the first
# converged pair can return a null direction (λ ≈ 0, tiny residual) as "λmin" before a
# negative eigenvalue enters the Krylov space (seen after 5 products on a trained
# resnet18-noskip, whose λmin is −73): ``min_steps`` forces 16.  Its SLQ is one short
# run: the index lies below SLQ's resolution next to its outliers (see FINDINGS).
HESSIAN = {
    "toy": dict(n=64, top_k=2, bottom_k=1, max_steps=30, runs=3, steps=30),
    "small": dict(n=256, top_k=3, bottom_k=1, max_steps=60, runs=4, steps=40),
    "cnn": dict(n=128, top_k=2, bottom_k=1, max_steps=40, runs=2, steps=30),
    "resnet": dict(n=32, top_k=1, bottom_k=1, block=1, tol=1e-2, min_steps=16, max_steps=48,
                   runs=1, steps=8),
    "resnet_full": dict(n=128, top_k=3, bottom_k=1, min_steps=30, max_steps=200, runs=4,
                        steps=40),
}

SIZES = {
    "quick": dict(
        seeds=2, train_samples=300,
        models={"mlp": dict(options={"width": 8, "depth": 2}, in_shape=(1, 8, 8), epochs=3,
                            steps=[0, 2], hessian="toy", dense=True)},
        hessian_n=None, bn_check=False),
    "default": dict(
        seeds=5, train_samples=None,
        models={"mlp": dict(options={"width": 16, "depth": 2}, in_shape=(1, 8, 8), epochs=10,
                            steps=[0, 2, 8, 32, 128], hessian="small", dense=True),
                "cnn": dict(options={"width": 8}, in_shape=(1, 16, 16), epochs=4,
                            steps=[0, 23], hessian="cnn", dense=False),
                "resnet18": dict(options={}, in_shape=(1, 16, 16), epochs=2, steps=[0],
                                 hessian="resnet", dense=False)},
        hessian_n=None, bn_check=False),
    "full": dict(
        seeds=10, train_samples=None,
        models={"mlp": dict(options={"width": 32, "depth": 2}, in_shape=(1, 8, 8), epochs=20,
                            steps=[0, 1, 2, 4, 8, 16, 32, 64, 128, 256], hessian="small",
                            dense=True),
                "cnn": dict(options={"width": 16}, in_shape=(1, 16, 16), epochs=10,
                            steps=[0, 2, 5, 12, 23, 46, 92, 184], hessian="small",
                            dense=False),
                "resnet18": dict(options={}, in_shape=(3, 32, 32), epochs=8,
                                 steps=[0, 5, 23, 46, 92, 184], hessian="resnet_full",
                                 dense=False)},
        hessian_n=None, bn_check=True),
}


# ----------------------------------------------------------------------------- measurements

@torch.no_grad()
def batch_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy on ``(x, y)`` as one batch in training mode (BatchNorm with the
    batch's own statistics: what ``bn="recompute"`` evaluates), on a copy of the model."""
    net = copy.deepcopy(model).train()
    return float(torch.nn.functional.cross_entropy(net(x), y))


def dense_eigenvalues(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Every eigenvalue of the loss Hessian over all parameters, ascending, from the dense
    float64 Hessian (``torch.func.hessian``; models without BatchNorm)."""
    net = copy.deepcopy(model).double().eval()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])
    xd = x.double()

    def loss(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[n] = theta[i:i + k].reshape(s)
            i += k
        out = torch.func.functional_call(net, parts, (xd,))
        return torch.nn.functional.cross_entropy(out, y)

    H = torch.func.hessian(loss)(flat)
    return torch.linalg.eigvalsh((H + H.T) / 2).numpy()


def exact_masses(eigs: np.ndarray, eps: float, sigma: float) -> dict:
    """Index measures of known eigenvalues: the raw fractions below 0 and below −ε, and
    the masses of the same density broadened by σ below −ε / within ±ε (what SLQ
    estimates)."""
    neg = float(ndtr((-eps - eigs) / sigma).mean())
    pos = float(ndtr((eigs - eps) / sigma).mean())
    return {"frac_below_0": float((eigs < 0).mean()), "frac_below_eps": float((eigs < -eps).mean()),
            "frac_within_eps": float((np.abs(eigs) <= eps).mean()),
            "broadened_negative": neg, "broadened_zero": max(0.0, 1 - neg - pos)}


def density_masses(lam: np.ndarray, density: np.ndarray, eps: float) -> tuple[float, float, float]:
    """``(negative, zero, positive)`` mass of a density on the grid ``lam`` split at ±ε
    (trapezoid rule, the grid cut exactly at ±ε by linear interpolation)."""
    def mass(lo, hi):
        inside = (lam > lo) & (lam < hi)
        xs = np.concatenate([[max(lo, lam[0])], lam[inside], [min(hi, lam[-1])]])
        if xs[-1] <= xs[0]:
            return 0.0
        ys = np.interp(xs, lam, density)
        return float(((ys[1:] + ys[:-1]) * np.diff(xs)).sum() / 2)

    total = mass(-np.inf, np.inf)
    return mass(-np.inf, -eps) / total, mass(-eps, eps) / total, mass(eps, np.inf) / total


def converged_ratio(rows: list[dict]) -> dict:
    """|λmin/λmax| over the points whose both extremes converged (an unconverged bottom
    Ritz value lies inside the spectrum: its ratio is only a lower bound)."""
    return stat([r["ratio_min_max"] for r in rows if r["converged_top"] and r["converged_min"]])


def spectrum(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, h: dict, seed: int,
             bn: str = BN, density: bool = True) -> dict:
    """The Lanczos extremes, then the SLQ density at a broadening fitted to their range, and
    the masses at every ``ZERO_TOLS``."""
    out = lanczos_extremes(model, x, y, top_k=h["top_k"], bottom_k=h["bottom_k"],
                           tol=h.get("tol", LANCZOS_TOL), max_steps=h["max_steps"],
                           min_steps=h.get("min_steps"), block=h.get("block"), bn=bn, seed=seed)
    out["n_hvp"] = out["lanczos_hvp"]
    if not density:
        return out
    sigma = SIGMA_REL * (out["lambda_max"] - out["lambda_min"])
    ds = landscape.hessian_spectrum(model, x, y, top_k=0, bottom_k=0, density=True,
                                    density_runs=h["runs"], density_steps=h["steps"], sigma=sigma,
                                    lam=GRID_POINTS, zero_tol=API_ZERO_TOL, bn=bn, seed=seed)
    span = ds.attrs["zero_eps"] / API_ZERO_TOL  # the SLQ nodes' spectral range
    out.update(sigma=sigma, spectral_range=float(span), n_hvp=out["n_hvp"] + int(ds.n_hvp),
               api_negative_mass=float(ds.negative_mass), api_zero_mass=float(ds.zero_mass),
               api_positive_mass=float(ds.positive_mass))
    lam, dens = ds.lam.values, ds.density.values
    for tol in ZERO_TOLS:
        neg, zero, pos = density_masses(lam, dens, tol * span)
        out[f"negative_{tol}"], out[f"zero_{tol}"], out[f"positive_{tol}"] = neg, zero, pos
    out["density"] = (lam, dens)
    return out


# ----------------------------------------------------------------------------- the run

def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start, cpu0 = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    points: list[dict] = []
    densities: dict = {}
    bn_check: dict = {}
    for model_name, m in cfg["models"].items():
        h = dict(HESSIAN[m["hessian"]])
        if cfg["hessian_n"]:
            h["n"] = cfg["hessian_n"]
        x, y = landscape.load_dataset("digits", n=cfg["train_samples"], split="train",
                                      in_shape=m["in_shape"])
        xt, yt = landscape.load_dataset("digits", split="test", in_shape=m["in_shape"])
        xh, yh = x[:h["n"]], y[:h["n"]]  # the fixed Hessian batch
        for seed in range(m.get("seeds", cfg["seeds"])):
            t0 = time.time()
            model = landscape.build_model(model_name, seed=seed, in_shape=m["in_shape"], **m["options"])
            total = m["epochs"] * -(-len(x) // BATCH)
            steps = [s for s in m["steps"] if s < total] + [total]  # the last: "trained"
            history, snaps = train(model, x, y, xt, yt, epochs=m["epochs"], seed=seed,
                                   batch_size=BATCH, trajectory_every=math.gcd(*steps))
            by_step = dict(zip(history["snapshot_steps"], snaps))
            for step in steps:
                net = landscape.build_model(model_name, seed=seed, in_shape=m["in_shape"], **m["options"])
                net.load_state_dict(by_step[step])
                row = {"model": model_name, "seed": seed, "step": step,
                       "state": "random" if step == 0 else "trained" if step == steps[-1] else "during",
                       "loss": batch_loss(net, xh, yh), "n_hessian": len(xh)}
                spec = spectrum(net, xh, yh, h, seed)
                dens = spec.pop("density")
                if seed == 0 and row["state"] != "during":
                    densities[(model_name, row["state"])] = (dens, spec)
                row.update(spec)
                if m["dense"]:
                    eigs = dense_eigenvalues(net, xh, yh)
                    row["exact_lambda_max"], row["exact_lambda_min"] = float(eigs[-1]), float(eigs[0])
                    for tol in ZERO_TOLS:
                        ex = exact_masses(eigs, tol * spec["spectral_range"], spec["sigma"])
                        for k, v in ex.items():
                            row[f"exact_{k}_{tol}"] = v
                    row["exact_index"] = float((eigs < 0).mean())
                points.append(row)
                print(f"{model_name} seed {seed} step {step}: loss {row['loss']:.3f} λmax "
                      f"{row['lambda_max']:.4g} λmin {row['lambda_min']:.4g} "
                      f"neg@{INDEX_TOL} {row[f'negative_{INDEX_TOL}']:.4f}"
                      + (f" exact {row[f'exact_frac_below_eps_{INDEX_TOL}']:.4f}" if m["dense"] else "")
                      + f" ({row['n_hvp']} hvp; converged top {row['converged_top']:d} "
                      f"min {row['converged_min']:d})", flush=True)
                if cfg["bn_check"] and model_name == "resnet18" and seed == 0 \
                        and row["state"] != "during":
                    b = spectrum(net, xh, yh, dict(h, top_k=1, bottom_k=1, block=1), seed,
                                 bn="batch", density=False)
                    bn_check[row["state"]] = {"recompute": {k: row[k] for k in (
                        "lambda_max", "lambda_min", "converged_top", "converged_min")},
                        "batch": {k: b[k] for k in ("lambda_max", "lambda_min", "converged_top",
                                                     "converged_min")}}
                    print(f"  bn=batch: λmax {b['lambda_max']:.4g} λmin {b['lambda_min']:.4g}",
                          flush=True)
            print(f"{model_name} seed {seed}: {time.time() - t0:.1f} s", flush=True)
    summary = summarise(points, cfg)
    summary["bn_check"] = bn_check
    keys = sorted({k for row in points for k in row})
    with open(out / "points.csv", "w") as fh:
        fh.write(",".join(keys) + "\n")
        for row in points:
            fh.write(",".join(json.dumps(row.get(k, "")) if isinstance(row.get(k), list)
                              else str(row.get(k, "")) for k in keys) + "\n")
    summary["figures"] = [str(plot_index(points, figures / "q3_index_vs_loss.png")),
                          str(plot_densities(densities, figures / "q3_spectra.png"))]
    summary["points"] = points
    write_summary(out, timing(summary, start, cpu0))
    return summary


# ----------------------------------------------------------------------------- summary

STATE_KEYS = ("loss", "lambda_max", "lambda_min", "ratio_min_max", "api_negative_mass",
              "api_zero_mass", "api_positive_mass",
              *[f"{kind}_{tol}" for tol in ZERO_TOLS for kind in ("negative", "zero", "positive")])


def summarise(points: list[dict], cfg: dict) -> dict:
    summary: dict = {"config": {"seeds": cfg["seeds"], "bn": BN, "zero_tols": ZERO_TOLS,
                                "lanczos_tol": LANCZOS_TOL,
                                "api_zero_tol": API_ZERO_TOL, "index_tol": INDEX_TOL,
                                "sigma_rel": SIGMA_REL, "grid_points": GRID_POINTS,
                                "models": {k: {**v, "hessian_settings": HESSIAN[v["hessian"]]}
                                           for k, v in cfg["models"].items()}},
                     "models": {}}
    for model_name in cfg["models"]:
        rows = [r for r in points if r["model"] == model_name]
        entry: dict = {"n_params": rows[0]["n_params"]}
        for state in ("random", "trained"):
            sel = [r for r in rows if r["state"] == state]
            e = {k: stat([r[k] for r in sel]) for k in STATE_KEYS}
            e["top"] = [stat([r["top"][i] for r in sel]) for i in range(len(sel[0]["top"]))]
            e["converged_top"] = float(np.mean([r["converged_top"] for r in sel]))
            e["converged_min"] = float(np.mean([r["converged_min"] for r in sel]))
            e["ratio_min_max_converged"] = converged_ratio(sel)
            e["residual_min_rel"] = stat([r["residual_min"] / abs(r["lambda_max"]) for r in sel])
            e["lanczos_hvp"] = stat([r["lanczos_hvp"] for r in sel])
            e["step"] = sel[0]["step"]
            if "exact_index" in sel[0]:
                e["exact_index"] = stat([r["exact_index"] for r in sel])
                for tol in ZERO_TOLS:
                    for k in ("frac_below_eps", "broadened_negative", "frac_within_eps"):
                        e[f"exact_{k}_{tol}"] = stat([r[f"exact_{k}_{tol}"] for r in sel])
                e["exact_lambda_min"] = stat([r["exact_lambda_min"] for r in sel])
                e["exact_lambda_max"] = stat([r["exact_lambda_max"] for r in sel])
            entry[state] = e
        # random minus trained, paired by seed
        pairs = {r["seed"]: r for r in rows if r["state"] == "random"}
        key = f"negative_{INDEX_TOL}"
        entry["index_drop"] = stat([pairs[r["seed"]][key] - r[key] for r in rows
                                     if r["state"] == "trained"])
        entry["prediction"] = prediction(rows, key)
        entry["equivalence"] = equivalence(rows)
        if "exact_index" in rows[0]:
            entry["slq_minus_exact"] = {
                str(tol): stat([r[f"negative_{tol}"] - r[f"exact_broadened_negative_{tol}"]
                                 for r in rows]) for tol in ZERO_TOLS}
            entry["slq_minus_exact_raw"] = {
                str(tol): stat([r[f"negative_{tol}"] - r[f"exact_frac_below_eps_{tol}"]
                                 for r in rows]) for tol in ZERO_TOLS}
            entry["prediction_exact"] = prediction(rows, f"exact_frac_below_eps_{INDEX_TOL}")
            entry["prediction_exact_below_0"] = prediction(rows, "exact_index")
        summary["models"][model_name] = entry
    return summary


def diverged_seeds(rows: list[dict]) -> list[int]:
    """Seeds whose trained loss on the Hessian batch is above their random loss."""
    random = {r["seed"]: r["loss"] for r in rows if r["state"] == "random"}
    return sorted(r["seed"] for r in rows if r["state"] == "trained" and r["loss"] > random[r["seed"]])


def equivalence(rows: list[dict]) -> dict:
    """Random against trained |λmin/λmax| (converged extremes on both sides), paired by
    seed, by TOST at ``MARGINS``: every seed, and without the diverged ones."""
    out = {"diverged_seeds": diverged_seeds(rows)}
    random = {r["seed"]: r for r in rows if r["state"] == "random"}
    trained = {r["seed"]: r for r in rows if r["state"] == "trained"}
    for metric, margin in MARGINS.items():
        for label, skip in (("all", []), ("converged_training", out["diverged_seeds"])):
            seeds = [s for s in sorted(trained) if s in random and s not in skip]

            def value(r, metric=metric):
                ok = r["converged_top"] and r["converged_min"]
                return r[metric] if ok else float("nan")

            res = tost([value(random[s]) for s in seeds], [value(trained[s]) for s in seeds], margin,
                       paired=True)
            out[f"{metric}/{label}"] = res | {"seeds": seeds, "text": equivalence_text(res)}
    return out


def prediction(rows: list[dict], key: str) -> dict:
    """The index against the training loss over every point of every seed: Pearson r, the
    least-squares line (slope, intercept at zero loss) and, per seed, Spearman's rank
    correlation along the trajectory."""
    loss = np.array([r["loss"] for r in rows])
    index = np.array([r[key] for r in rows])
    out = {"key": key, "n_points": len(rows)}
    if len(rows) > 2 and np.ptp(loss) > 0 and np.ptp(index) > 0:
        slope, intercept = np.polyfit(loss, index, 1)
        out.update(pearson_r=float(np.corrcoef(loss, index)[0, 1]), slope=float(slope),
                   intercept=float(intercept))
    from scipy.stats import spearmanr

    per_seed = []
    for seed in sorted({r["seed"] for r in rows}):
        sel = [r for r in rows if r["seed"] == seed]
        if len(sel) > 2:
            rho = spearmanr([r["loss"] for r in sel], [r[key] for r in sel]).statistic
            per_seed.append(float(rho) if np.isfinite(rho) else float("nan"))
    out["spearman_per_seed"] = per_seed
    return out


# ----------------------------------------------------------------------------- figures

def plot_index(points: list[dict], path: Path) -> Path:
    models = list(dict.fromkeys(r["model"] for r in points))
    fig, axes = plt.subplots(1, len(models), figsize=(3.9 * len(models), 3.8), squeeze=False,
                             layout="constrained")
    key = f"negative_{INDEX_TOL}"
    for ax, model_name in zip(axes[0], models):
        rows = [r for r in points if r["model"] == model_name]
        diverged = diverged_seeds(rows)
        # A diverged seed's loss would stretch the axis over the others: its trained point
        # is left off the axis and named in the legend.
        kept = [r["loss"] for r in rows if not (r["seed"] in diverged and r["state"] == "trained")]
        right = 1.08 * max(kept)
        for seed in sorted({r["seed"] for r in rows}):
            sel = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["step"])
            off = [r for r in sel if r["loss"] > right]
            label = f"seed {seed}" + (f" (diverged: loss {off[-1]['loss']:.3g}, off the axis)"
                                      if off else "")
            ax.plot([min(r["loss"], right) for r in sel], [r[key] for r in sel], "o-", ms=3,
                    lw=1, color=f"C{seed % 10}", label=label)
            for r in off:
                ax.annotate("", xy=(right, r[key]), xytext=(0.93 * right, r[key]),
                            arrowprops=dict(arrowstyle="->", color=f"C{seed % 10}"))
            if "exact_index" in sel[0]:
                ax.plot([r["loss"] for r in sel], [r[f"exact_frac_below_eps_{INDEX_TOL}"] for r in sel],
                        "x:", ms=4, lw=0.8, color=f"C{seed % 10}")
        if "exact_index" in rows[0]:
            ax.plot([], [], "x:", color="0.4", label="exact (dense Hessian)")
        ax.set_xlabel("training loss (Hessian batch)")
        ax.set_title(model_name, fontsize=9)
        ax.set_xlim(0, right)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6, loc="best")
    axes[0][0].set_ylabel(f"negative mass below −{INDEX_TOL}·range (SLQ: o)")
    fig.suptitle("Hessian index along training\n(step 0 = random, last = trained)", fontsize=9)
    return save_figure(fig, path)


def plot_densities(densities: dict, path: Path) -> Path:
    models = list(dict.fromkeys(k[0] for k in densities))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.3), squeeze=False)
    for ax, model_name in zip(axes[0], models):
        for state, colour in (("random", "C0"), ("trained", "C3")):
            if (model_name, state) not in densities:
                continue
            (lam, dens), spec = densities[model_name, state]
            scale = spec["spectral_range"]
            ax.semilogy(lam / scale, np.maximum(dens * scale, 1e-8), color=colour, lw=1,
                        label=f"{state} (range {scale:.3g})")
        for s in (-1, 1):
            ax.axvline(s * INDEX_TOL, color="grey", ls=":", lw=0.8)
        ax.set_ylim(1e-5, None)
        ax.set_xlabel("eigenvalue / spectral range")
        ax.set_title(f"{model_name}, seed 0", fontsize=9)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("density × range (SLQ)")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.3)
    return save_figure(fig, path)


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv)
    summary = run(size, out, figures)
    for model_name, e in summary["models"].items():
        for state in ("random", "trained"):
            s = e[state]
            print(f"{model_name} {state}: loss {s['loss']['mean']:.3f}±{s['loss']['std']:.3f} "
                  f"λmax {s['lambda_max']['mean']:.4g}±{s['lambda_max']['std']:.2g} "
                  f"|λmin/λmax| {s['ratio_min_max']['mean']:.4f}±{s['ratio_min_max']['std']:.4f} "
                  + " ".join(f"neg@{t} {s[f'negative_{t}']['mean']:.4f}±{s[f'negative_{t}']['std']:.4f}"
                             for t in ZERO_TOLS))
        print(f"{model_name} prediction: {e['prediction']}")
        for key, r in e["equivalence"].items():
            if isinstance(r, dict):
                print(f"{model_name} random vs trained {key}: {r['text']}")
    print(f"{summary['seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU; results in {out}")
    return summary


if __name__ == "__main__":
    main()
