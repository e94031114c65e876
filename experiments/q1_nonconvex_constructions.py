"""Q1: can a network be non-convex?  Two constructions scored by the toolkit.

The claim under test: convexity is a property of *typical* networks, not of all.
Two networks with known answers:

* **clip**: a hand-set ReLU net computing clip(x, 0, 1) = relu(relu(x) - relu(x - 1)).
  Over a window holding both kinks it is neither convex nor concave, yet monotone,
  hence quasi-convex *and* quasi-concave.
* **quartic**: a three-layer net (1 -> H -> H -> 1) fitted to x⁴ - 2x² + 0.5 on
  [-2, 2]: two minima at ±1, so neither quasi-convex nor quasi-concave.

Both are scored with :func:`landscape.input_slice` on their 1-D input (one anchor per
window: the window's centre, the direction its half-width, ``alpha`` in [-1, 1]).
Beyond the main window the script scans every window [a, b] of a grid, against the
answer known in closed form (clip) or the same scores of the exact polynomial
(quartic), and the convexity excess (a sample's height above the lower convex hull
of all samples) against the number of samples, from 21 to 4 001: predicted not to
fade (clip's kinks: between 1/2 − 2h and 1/2 of the range at spacing h; the exact
quartic: (0.5 − min_j f_j) / (8.5 − min_j f_j) → 1/9), where the chord of two neighbours, the
test it replaced, falls as h for a kink and as h² for a smooth curve.

Writes results/q1_nonconvex_constructions/ (netCDF slices, summary.json) and
figures/q1_*.png.

    python experiments/q1_nonconvex_constructions.py [--quick | --full] [--out DIR]
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import parse_args, save_figure, write_summary
from torch import nn

import landscape

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q1_nonconvex_constructions"
TOL = 1e-3
VERDICTS = ("convex", "concave", "quasi_convex", "quasi_concave")

# Sizes: quick runs the same code at toy size (tests), full is a larger setting.
SIZES = {
    "quick": dict(seeds=2, hidden=32, steps=800, fit_points=101, samples=101, window_grid=9,
                  resolutions=(41, 101, 2001)),
    "default": dict(seeds=5, hidden=32, steps=3000, fit_points=401, samples=201, window_grid=41,
                    resolutions=(21, 41, 51, 101, 201, 401, 751, 1001, 1501, 2001, 4001)),
    "full": dict(seeds=20, hidden=64, steps=6000, fit_points=401, samples=401, window_grid=81,
                 resolutions=(21, 41, 51, 101, 201, 401, 751, 1001, 1501, 2001, 4001, 8001)),
}
CLIP_WINDOW = (-1.0, 2.0)
QUARTIC_WINDOW = (-2.0, 2.0)


# ----------------------------------------------------------------------------- networks

def _as_scalar_model(body: nn.Sequential, name: str) -> nn.Sequential:
    """A 1-D function as a toolkit model: input (1, 1, 1), the unit is layer ``out``."""
    body.name = name
    body.in_shape = (1, 1, 1)
    body.task = "classify"
    body.default_layer = "out"
    body.init = "hand-set" if name == "clip" else "fitted"
    body.bias_scale = None
    return body.double()


def clip_net() -> nn.Sequential:
    """relu(relu(x) - relu(x - 1)) = clip(x, 0, 1), with hand-set weights."""
    net = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(1, 2)), ("act1", nn.ReLU()),
        ("fc2", nn.Linear(2, 1)), ("out", nn.ReLU()),
    ]))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[1.0], [1.0]]))
        net.fc1.bias.copy_(torch.tensor([0.0, -1.0]))
        net.fc2.weight.copy_(torch.tensor([[1.0, -1.0]]))
        net.fc2.bias.zero_()
    return _as_scalar_model(net, "clip")


def quartic(x):
    return x ** 4 - 2 * x ** 2 + 0.5


def fit_quartic(seed: int, hidden: int, steps: int, n_points: int = 401) -> tuple[nn.Sequential, dict]:
    """A three-layer ReLU net 1 -> H -> H -> 1 fitted to the quartic on [-2, 2] (Adam,
    full batch, MSE).  Returns the net and its fit errors on a fine grid."""
    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(1, hidden)), ("act1", nn.ReLU()),
        ("fc2", nn.Linear(hidden, hidden)), ("act2", nn.ReLU()), ("fc3", nn.Linear(hidden, 1)),
        ("out", nn.Identity()),
    ])).double()
    x = torch.linspace(*QUARTIC_WINDOW, n_points, dtype=torch.float64)[:, None]
    y = quartic(x)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    fine = torch.linspace(*QUARTIC_WINDOW, 4001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        err = (net(fine) - quartic(fine)).abs()
    span = float(quartic(fine).max() - quartic(fine).min())
    return _as_scalar_model(net, "quartic"), {"rmse": float(err.pow(2).mean().sqrt()),
                                              "max_abs_error": float(err.max()),
                                              "max_error_rel_range": float(err.max()) / span}


# ----------------------------------------------------------------------------- scoring

def window_slices(model: nn.Module, windows: np.ndarray, samples: int):
    """:func:`landscape.input_slice` of ``model`` over each window [a, b] (rows of
    ``windows``): anchor (a + b) / 2, direction (b - a) / 2, alpha from -1 to 1."""
    windows = np.asarray(windows, dtype=float)
    centre = torch.tensor((windows[:, 0] + windows[:, 1]) / 2, dtype=torch.float64)
    half = torch.tensor((windows[:, 1] - windows[:, 0]) / 2, dtype=torch.float64)
    anchors = centre.view(-1, 1, 1, 1)
    directions = half.view(-1, 1, 1, 1, 1)
    ds = landscape.input_slice(model, "out", units=1, anchors=anchors, directions=directions,
                               grid=f"-1:1:{samples}", tol=TOL)
    ds["window_start"] = ("anchor", windows[:, 0])
    ds["window_end"] = ("anchor", windows[:, 1])
    return ds


def verdicts(ds) -> dict[str, np.ndarray]:
    """Boolean verdicts and extremum counts per window (unit 0), plus whether flat."""
    act = ds["activation"].isel(unit=0).values
    out = {v: ds[f"activation_{v}"].isel(unit=0).values.astype(bool) for v in VERDICTS}
    out["n_minima"] = ds["activation_n_minima"].isel(unit=0).values
    out["n_maxima"] = ds["activation_n_maxima"].isel(unit=0).values
    if "activation_constant" in ds:  # the toolkit's own flag: range within rounding noise
        out["flat"] = ds["activation_constant"].isel(unit=0).values.astype(bool)
    else:
        out["flat"] = (act.max(axis=-1) - act.min(axis=-1)) == 0
    return out


def window_grid(lo: float, hi: float, n: int) -> np.ndarray:
    edges = np.linspace(lo, hi, n)
    return np.array([(a, b) for i, a in enumerate(edges) for b in edges[i + 1:]])


def clip_expected(windows: np.ndarray) -> dict[str, np.ndarray]:
    """The closed-form verdicts of clip(x, 0, 1) on [a, b]: convex unless the concave kink
    at 1 is inside, concave unless the convex kink at 0 is inside, always monotone."""
    a, b = windows[:, 0], windows[:, 1]
    kink0 = (a < 0) & (b > 0)
    kink1 = (a < 1) & (b > 1)
    ones = np.ones(len(windows), dtype=bool)
    return {"convex": ~kink1, "concave": ~kink0, "quasi_convex": ones, "quasi_concave": ones,
            "flat": (b <= 0) | (a >= 1)}


def polynomial_reference(windows: np.ndarray, samples: int) -> dict[str, np.ndarray]:
    """The same scores of the exact quartic sampled on the same windows."""
    import xarray as xr

    alpha = np.linspace(-1, 1, samples)
    centre, half = windows.mean(axis=1), (windows[:, 1] - windows[:, 0]) / 2
    x = centre[:, None] + half[:, None] * alpha[None]
    da = xr.DataArray(quartic(x), dims=("anchor", "alpha"), coords={"alpha": alpha})
    scores = landscape.quasi_convexity(da, "alpha", tol=TOL)
    out = {v: scores[v].values.astype(bool) for v in VERDICTS}
    out["n_minima"] = scores["n_minima"].values
    out["n_maxima"] = scores["n_maxima"].values
    return out


def neighbour_chord_excess(f: np.ndarray) -> float:
    """The test the hull replaced: max_j [f_j − (f_{j−1} + f_{j+1}) / 2]⁺ / range."""
    return float(np.clip(-np.diff(f, 2) / 2, 0, None).max() / np.ptp(f))


def smooth_resolution(resolutions, nets) -> dict:
    """Convexity excess of the exact quartic on [-2, 2] against the number of samples.

    On a symmetric grid (odd counts, a sample at 0) the two lowest samples, near ±1, are
    equal, the lower hull is flat between them, and the worst sample above it is f(0) =
    0.5: over the samples' range 8.5 − min_j f_j the excess is exactly
    (0.5 − min_j f_j) / (8.5 − min_j f_j), → 1/9 as h → 0, at every count non-convex.
    The chord of two neighbours gave f(0) − (f(h) + f(−h)) / 2 = 2h² − h⁴ instead, below
    ``tol`` (the quartic read "convex") from h < √(9 tol / 2)."""
    import xarray as xr

    span = 9.0
    out = {"samples": [], "spacing": [], "cvx_excess": [], "predicted": [], "convex": [],
           "neighbour_chord": [], "fitted_cvx_excess": []}
    for n in resolutions:
        n = n if n % 2 else n + 1
        x = np.linspace(*QUARTIC_WINDOW, n)
        h = x[1] - x[0]
        scores = landscape.quasi_convexity(xr.DataArray(quartic(x), dims="alpha"), "alpha", tol=TOL)
        out["samples"].append(n)
        out["spacing"].append(float(h))
        out["cvx_excess"].append(float(scores["cvx_excess"]))
        lowest = quartic(x).min()
        out["predicted"].append(float((0.5 - lowest) / (8.5 - lowest)))
        out["neighbour_chord"].append(neighbour_chord_excess(quartic(x)))
        out["convex"].append(bool(scores["convex"]))
        if nets:
            ds = [window_slices(net, np.array([QUARTIC_WINDOW]), n) for net in nets]
            out["fitted_cvx_excess"].append(float(np.mean(
                [d["activation_cvx_excess"].values[0, 0] for d in ds])))
    out["neighbour_chord_convex_from_samples"] = int(np.ceil(1 + 4 / np.sqrt(span * TOL / 2)))
    out["prediction_holds"] = bool(np.allclose(out["cvx_excess"], out["predicted"], rtol=1e-9))
    out["non_convex_at_every_count"] = not any(out["convex"])
    return out


def clip_kink_class(windows: np.ndarray) -> np.ndarray:
    """0 flat, 1 linear (inside [0, 1]), 2 convex only (kink at 0), 3 concave only
    (kink at 1), 4 both kinks: neither convex nor concave."""
    e = clip_expected(windows)
    return np.select([e["flat"], e["convex"] & e["concave"], e["convex"], e["concave"]],
                     [0, 1, 2, 3], default=4)


# ----------------------------------------------------------------------------- figures

def _figure_curves(clip_ds, quartic_dss, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ax = axes[0]
    x = clip_ds["window_start"].values[0] + (clip_ds["alpha"].values + 1) / 2 * (
        clip_ds["window_end"].values[0] - clip_ds["window_start"].values[0])
    ax.plot(x, clip_ds["activation"].isel(unit=0, anchor=0), color="k")
    v = verdicts(clip_ds)
    ax.set_title(f"clip(x,0,1): convex {int(v['convex'][0])}, concave {int(v['concave'][0])}, "
                 f"qcvx {int(v['quasi_convex'][0])}, qccv {int(v['quasi_concave'][0])}", fontsize=8)
    ax.set_xlabel("x")
    ax = axes[1]
    xs = np.linspace(*QUARTIC_WINDOW, quartic_dss[0].sizes["alpha"])
    ax.plot(xs, quartic(xs), color="k", lw=3, alpha=0.3, label="x⁴ − 2x² + 0.5")
    for i, ds in enumerate(quartic_dss):
        ax.plot(xs, ds["activation"].isel(unit=0, anchor=0), lw=1, label="fitted nets" if i == 0 else None)
    nmin = [int(verdicts(ds)["n_minima"][0]) for ds in quartic_dss]
    ax.set_title(f"fitted quartic, {len(quartic_dss)} seeds: n_minima {nmin}", fontsize=8)
    ax.set_xlabel("x")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110, tight=True)


def _figure_windows(clip_windows, clip_measured, quartic_windows, agreement, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    ax = axes[0]
    classes = np.select([clip_measured["flat"],
                         clip_measured["convex"] & clip_measured["concave"],
                         clip_measured["convex"], clip_measured["concave"]], [0, 1, 2, 3], default=4)
    names = ["flat", "linear (cvx & ccv)", "convex only", "concave only", "neither"]
    colours = ["#dddddd", "#9ecae1", "#31a354", "#fd8d3c", "#de2d26"]
    for k in range(5):
        sel = classes == k
        ax.scatter(clip_windows[sel, 0], clip_windows[sel, 1], s=6, c=colours[k], label=names[k])
    ax.set_xlabel("window start a")
    ax.set_ylabel("window end b")
    ax.set_title("clip: measured convexity class of [a, b]\n(all windows quasi-convex and "
                 "quasi-concave)", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    ax = axes[1]
    sc = ax.scatter(quartic_windows[:, 0], quartic_windows[:, 1], s=6, c=agreement, cmap="viridis",
                    vmin=0, vmax=1)
    fig.colorbar(sc, ax=ax, label="share of seeds agreeing with the exact quartic")
    ax.set_xlabel("window start a")
    ax.set_ylabel("window end b")
    ax.set_title("fitted quartic: quasi-convex / quasi-concave verdicts\nagreeing with x⁴−2x²+0.5",
                 fontsize=8)
    return save_figure(fig, path, dpi=110, tight=True)


def _figure_resolution(resolution: dict, smooth: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    ax = axes[0]
    n = np.array(resolution["samples"])
    h = np.array(resolution["spacing"])
    span = resolution["range"]
    ax.loglog(n, resolution["cvx_excess"], "o-", label="cvx_excess (kink at 1)")
    ax.loglog(n, resolution["ccv_excess"], "s--", label="ccv_excess (kink at 0)")
    ax.fill_between(n, 0.5 - 2 * h / span, 0.5, color="grey", alpha=0.3,
                    label="predicted [1/2 − 2h, 1/2]")
    ax.loglog(n, resolution["neighbour_chord"], "^:", color="C3",
              label="chord of two neighbours (replaced)")
    ax.axhline(TOL, color="k", ls="--", lw=1, label=f"tol {TOL:g}")
    ax.set_xlabel("samples over [-1, 2]")
    ax.set_ylabel("excess / range")
    ax.set_title("clip: the hull excess of a kink stays at 1/2", fontsize=8)
    ax.legend(fontsize=7)
    ax = axes[1]
    n = np.array(smooth["samples"])
    ax.loglog(n, smooth["cvx_excess"], "o", label="exact quartic on [-2, 2], cvx_excess")
    ax.loglog(n, smooth["predicted"], "-", color="grey", label="predicted (0.5 − min f) / (8.5 − min f)")
    if smooth.get("fitted_cvx_excess"):
        ax.loglog(n, smooth["fitted_cvx_excess"], "s--", label="fitted ReLU nets (mean)")
    ax.loglog(n, smooth["neighbour_chord"], "^:", color="C3",
              label="chord of two neighbours (replaced)")
    ax.axhline(TOL, color="k", ls="--", lw=1, label=f"tol {TOL:g}")
    ax.set_xlabel("samples over [-2, 2]")
    ax.set_title("the quartic's hull excess stays at 1/9 at every count\n(the neighbour chord "
                 f"read 'convex' from {smooth['neighbour_chord_convex_from_samples']} samples)",
                 fontsize=8)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110, tight=True)


# ----------------------------------------------------------------------------- main

def _jsonable(d):
    return {k: (v.tolist() if isinstance(v, np.ndarray) else
                bool(v) if isinstance(v, np.bool_) else int(v) if isinstance(v, np.integer) else v)
            for k, v in d.items()}


def run(size: str, out: Path, figures: Path) -> dict:
    cfg = SIZES[size]
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    summary: dict = {"size": size, "config": cfg, "tol": TOL}

    # --- clip: the main window, then every window of a grid
    clip = clip_net()
    clip_ds = window_slices(clip, np.array([CLIP_WINDOW]), cfg["samples"])
    landscape.save(clip_ds, out / "clip_main.nc", overwrite=True)
    v = verdicts(clip_ds)
    summary["clip"] = {k: (bool(v[k][0]) if v[k].dtype == bool else int(v[k][0])) for k in v}
    summary["clip"].update(cvx_excess=float(clip_ds["activation_cvx_excess"][0, 0]),
                           ccv_excess=float(clip_ds["activation_ccv_excess"][0, 0]),
                           qcvx_barrier=float(clip_ds["activation_qcvx_barrier"][0, 0]),
                           qccv_barrier=float(clip_ds["activation_qccv_barrier"][0, 0]))
    clip_windows = window_grid(*CLIP_WINDOW, cfg["window_grid"])
    clip_all = window_slices(clip, clip_windows, cfg["samples"])
    landscape.save(clip_all, out / "clip_windows.nc", overwrite=True)
    measured = verdicts(clip_all)
    expected = clip_expected(clip_windows)
    classes = clip_kink_class(clip_windows)
    summary["clip_windows"] = {
        "n_windows": len(clip_windows),
        "agreement": {k: float((measured[k] == expected[k]).mean()) for k in expected},
        "windows_per_class": {name: int((classes == k).sum()) for k, name in
                              enumerate(["flat", "linear", "convex_only", "concave_only", "neither"])},
        "disagreeing_windows": clip_windows[np.any([measured[k] != expected[k] for k in expected],
                                                   axis=0)].tolist(),
    }

    # --- clip: resolution of the local convexity excess (a prediction that can fail)
    res = {"samples": [], "spacing": [], "cvx_excess": [], "ccv_excess": [], "convex": [],
           "concave": [], "neighbour_chord": [], "range": 1.0}
    for n in cfg["resolutions"]:
        ds = window_slices(clip, np.array([CLIP_WINDOW]), n)
        h = (CLIP_WINDOW[1] - CLIP_WINDOW[0]) / (n - 1)
        res["samples"].append(n)
        res["spacing"].append(h)
        res["cvx_excess"].append(float(ds["activation_cvx_excess"][0, 0]))
        res["ccv_excess"].append(float(ds["activation_ccv_excess"][0, 0]))
        res["convex"].append(bool(ds["activation_convex"][0, 0]))
        res["concave"].append(bool(ds["activation_concave"][0, 0]))
        res["neighbour_chord"].append(neighbour_chord_excess(
            ds["activation"].isel(unit=0, anchor=0).values))
    # The hull sits above the envelope of clip (so each gap is at most the envelope's 1/2)
    # and within 2h of it (module docstring of landscape.convexity; Lipschitz 1, range 1).
    h = np.array(res["spacing"])
    inside = [0.5 - 2 * step - 1e-12 <= e <= 0.5 + 1e-12
              for excess in (res["cvx_excess"], res["ccv_excess"]) for step, e in zip(h, excess)]
    res["prediction_holds"] = bool(all(inside))
    res["non_convex_at_every_count"] = not any(res["convex"]) and not any(res["concave"])
    summary["clip_resolution"] = res

    # --- quartic: fitted nets, the main window and every window of a grid
    quartic_windows = window_grid(*QUARTIC_WINDOW, cfg["window_grid"])
    reference = polynomial_reference(quartic_windows, cfg["samples"])
    # The same windows sampled 4x finer: the convex verdicts of the fitted nets against the
    # polynomial's should not depend on the spacing (the hull excess does not fade).
    fine_samples = 4 * (cfg["samples"] - 1) + 1
    reference_fine = polynomial_reference(quartic_windows, fine_samples)
    agree_cvx_fine = []
    main_ref = polynomial_reference(np.array([QUARTIC_WINDOW]), cfg["samples"])
    fits, mains, agree_qcvx, agree_qccv, agree_cvx, agree_nmin = [], [], [], [], [], []
    fitted_convex, fitted_nets = [], []
    main_dss = []
    for seed in range(cfg["seeds"]):
        net, fit = fit_quartic(seed, cfg["hidden"], cfg["steps"], cfg["fit_points"])
        ds = window_slices(net, np.array([QUARTIC_WINDOW]), cfg["samples"])
        landscape.save(ds, out / f"quartic_seed{seed}_main.nc", overwrite=True)
        main_dss.append(ds)
        mv = verdicts(ds)
        x = np.linspace(*QUARTIC_WINDOW, cfg["samples"])
        act = ds["activation"].isel(unit=0, anchor=0).values
        left, right = x < 0, x > 0
        mains.append({k: (bool(mv[k][0]) if mv[k].dtype == bool else int(mv[k][0])) for k in mv}
                     | {"qcvx_barrier": float(ds["activation_qcvx_barrier"][0, 0]),
                        "qccv_barrier": float(ds["activation_qccv_barrier"][0, 0]),
                        "argmin_left": float(x[left][act[left].argmin()]),
                        "argmin_right": float(x[right][act[right].argmin()])})
        fits.append(fit)
        all_ds = window_slices(net, quartic_windows, cfg["samples"])
        wv = verdicts(all_ds)
        agree_qcvx.append(wv["quasi_convex"] == reference["quasi_convex"])
        agree_qccv.append(wv["quasi_concave"] == reference["quasi_concave"])
        agree_cvx.append(wv["convex"] == reference["convex"])
        agree_nmin.append(wv["n_minima"] == reference["n_minima"])
        fitted_convex.append(wv["convex"])
        fitted_nets.append(net)
        fine = verdicts(window_slices(net, quartic_windows, fine_samples))
        agree_cvx_fine.append(fine["convex"] == reference_fine["convex"])
    fitted_convex = np.array(fitted_convex)
    agree_qcvx, agree_qccv = np.array(agree_qcvx), np.array(agree_qccv)
    agree_cvx, agree_nmin = np.array(agree_cvx), np.array(agree_nmin)

    def stat(values):
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()), "max": float(values.max())}

    summary["quartic"] = {
        "reference_main": {k: (bool(main_ref[k][0]) if main_ref[k].dtype == bool else int(main_ref[k][0]))
                           for k in main_ref},
        "per_seed": mains,
        "fit": {k: stat([f[k] for f in fits]) for k in fits[0]},
        "all_seeds_two_minima": bool(all(m["n_minima"] == 2 for m in mains)),
        "all_seeds_neither": bool(all(not m["quasi_convex"] and not m["quasi_concave"] for m in mains)),
        "qcvx_barrier": stat([m["qcvx_barrier"] for m in mains]),
        "qccv_barrier": stat([m["qccv_barrier"] for m in mains]),
        "argmin_left": stat([m["argmin_left"] for m in mains]),
        "argmin_right": stat([m["argmin_right"] for m in mains]),
    }
    # Barriers of the exact polynomial on the main window, the values the fits should reach.
    import xarray as xr

    xs = np.linspace(*QUARTIC_WINDOW, cfg["samples"])
    exact = landscape.quasi_convexity(xr.DataArray(quartic(xs), dims="alpha"), "alpha", tol=TOL)
    summary["quartic"]["reference_main"].update(qcvx_barrier=float(exact["qcvx_barrier"]),
                                                qccv_barrier=float(exact["qccv_barrier"]))
    window_kinds = {"two_minima": reference["n_minima"] == 2,
                    "quasi_convex": reference["quasi_convex"],
                    "quasi_concave": reference["quasi_concave"]}
    summary["quartic_windows"] = {
        "n_windows": len(quartic_windows),
        "reference_windows": {k: int(v.sum()) for k, v in window_kinds.items()},
        "agreement_quasi_convex": stat(agree_qcvx.mean(axis=1)),
        "agreement_quasi_concave": stat(agree_qccv.mean(axis=1)),
        "agreement_convex": stat(agree_cvx.mean(axis=1)),
        "fine_samples": fine_samples,
        "agreement_convex_fine": stat(np.array(agree_cvx_fine).mean(axis=1)),
        "agreement_n_minima": stat(agree_nmin.mean(axis=1)),
        "two_minima_windows_found": stat(agree_nmin[:, window_kinds["two_minima"]].mean(axis=1))
        if window_kinds["two_minima"].any() else None,
    }
    agreement = (agree_qcvx & agree_qccv).mean(axis=0)
    smooth = smooth_resolution(cfg["resolutions"], fitted_nets)
    summary["quartic_resolution"] = smooth
    # Where do quasi-verdicts disagree?  Windows with an end within one window-grid step of
    # an extremum of the exact quartic (-1, 0, 1), where the verdict hangs on where exactly
    # the fitted net puts its extremum.
    step = (QUARTIC_WINDOW[1] - QUARTIC_WINDOW[0]) / (cfg["window_grid"] - 1)
    near = np.zeros(len(quartic_windows), dtype=bool)
    for e in (-1.0, 0.0, 1.0):
        near |= (np.abs(quartic_windows - e) <= step + 1e-9).any(axis=1)
    wrong = ~(agree_qcvx & agree_qccv)
    summary["quartic_windows"]["quasi_disagreements"] = int(wrong.sum())
    summary["quartic_windows"]["quasi_disagreements_near_extremum"] = int((wrong & near[None]).sum())
    cvx_wrong = ~agree_cvx
    summary["quartic_windows"]["convex_disagreements"] = int(cvx_wrong.sum())
    summary["quartic_windows"]["convex_disagreements_fit_says_nonconvex"] = int(
        (cvx_wrong & ~fitted_convex).sum())

    # --- figures
    figs = [_figure_curves(clip_ds, main_dss, figures / "q1_curves.png"),
            _figure_windows(clip_windows, measured, quartic_windows, agreement,
                            figures / "q1_windows.png"),
            _figure_resolution(res, smooth, figures / "q1_resolution.png")]
    summary["figures"] = [str(p) for p in figs]
    summary["seconds"] = time.time() - start
    write_summary(out, summary)
    return summary


def main(argv=None) -> dict:
    size, out, figures = parse_args(__doc__, NAME, argv)
    torch.set_num_threads(1)
    summary = run(size, out, figures)
    c = summary["clip"]
    print(f"clip on {CLIP_WINDOW}: convex {c['convex']}, concave {c['concave']}, quasi-convex "
          f"{c['quasi_convex']}, quasi-concave {c['quasi_concave']}, minima {c['n_minima']}, "
          f"maxima {c['n_maxima']}")
    print(f"clip windows agreeing with the closed form: {summary['clip_windows']['agreement']}")
    r = summary["clip_resolution"]
    print(f"clip excess vs samples {r['samples']}: cvx {np.round(r['cvx_excess'], 5).tolist()} "
          f"convex verdict {r['convex']}; prediction [1/2 - 2h, 1/2] holds: "
          f"{r['prediction_holds']}")
    q = summary["quartic"]
    print(f"quartic ({len(q['per_seed'])} seeds): two minima in all {q['all_seeds_two_minima']}, "
          f"neither quasi-convex nor quasi-concave in all {q['all_seeds_neither']}, "
          f"qcvx_barrier {q['qcvx_barrier']['mean']:.4f} ± {q['qcvx_barrier']['std']:.4f} "
          f"(exact {q['reference_main']['qcvx_barrier']:.4f}), fit max error / range "
          f"{q['fit']['max_error_rel_range']['mean']:.4f}")
    print(f"quartic windows: {summary['quartic_windows']}")
    print(f"{summary['seconds']:.1f} s; results in {out}")
    return summary


if __name__ == "__main__":
    main()
