"""Q2: how often are a random network's curves quasi-convex, and what does the bias do?

The claim under test: most curves of a randomly initialised network are quasi-convex or
quasi-concave, and a small bias is the key (Xavier's zero biases "greatly increase
convexity").  An earlier run (``bias_scale_convexity.py``) saw the opposite on ``cnn``
while counting dead units' flat curves as convex.

Fractions of quasi-convex / quasi-concave / either / flat curves, flat (constant) curves
left out of the other fractions, against bias scale x init x model, in five slice
geometries:

* ``origin``: input lines through the origin, x = α d (d random, |d| a data point's norm);
* ``data-random``: lines through data points along random directions (|d| = |x|);
* ``data-pca``: lines through data points along one of the top 8 principal components;
* ``segment``: the segment between two data points, x = (x_a + x_b)/2 + α (x_b − x_a)/2;
* ``loss``: the loss along filter-normalised random directions in weight space.

Input curves are units of each model's default layer (α ∈ [−1, 1]); loss curves are the
mean cross-entropy on a fixed batch of digits.  Every curve is scored by the toolkit
(:func:`landscape.input_slice`, :func:`landscape.loss_slice`, tol 1e-3).

Mechanism (ReLU mlp): a ReLU curve is piecewise linear, and a curve of at most two
linear pieces is always quasi-convex or quasi-concave.  With zero biases a ReLU net is
positively homogeneous, so on a line through the origin every pre-activation crosses
zero at α = 0 and every curve has at most two pieces; a bias moves each crossing to
−b/(w·d), off the origin, and for a line through a data point the point's own projection
w·x₀ plays the part of the bias.  The script counts, for every curve, the grid intervals
in which some pre-activation the unit depends on changes sign (``kinks``) and tests the
prediction that the bias acts only through that count: the fraction of curves that are
neither quasi-convex nor quasi-concave at each kink count, measured on lines through data
points, predicts the fraction on lines through the origin and on segments at every bias
scale.

Writes results/q2_quasiconvexity_bias/summary.json and figures/q2_*.png.

    python experiments/q2_quasiconvexity_bias.py [--quick | --full] [--out DIR]

The default size runs the whole bias x init grid on the mlps and the cnn; resnet18 and
resnet18-noskip run with the xavier init only, and loss curves on every model but the
resnets with the xavier init only.  ``--full`` runs every model x init x geometry.

``--resnet-size N`` feeds the resnets digits upsampled to N x N instead of 16 x 16 (at
16 their layer3 and layer4 see 1 x 1 maps; at 64, 4 x 4 and 2 x 2); ``--models A,B``
runs only those models (the mechanism runs only with mlp-relu among them).  With
``--resnet-size`` the results go to results/q2_quasiconvexity_bias_resnetN/ and the
figures to figures/q2_*_resnetN.png.  For example

    python experiments/q2_quasiconvexity_bias.py --resnet-size 64 --models resnet18,resnet18-noskip
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import ROOT, parse_args, save_figure, write_summary

import landscape

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAME = "q2_quasiconvexity_bias"
TOL = 1e-3
BIAS_SCALES = (0.0, 0.01, 0.1, 0.3, 1.0)
INITS = ("xavier", "kaiming", "default", "orthogonal")
GEOMETRIES = ("origin", "data-random", "data-pca", "segment", "loss")
INPUT_GEOMETRIES = GEOMETRIES[:4]
PCA_COMPONENTS = 8
# model label -> (registered model, options, input shape)
MODELS = {
    "mlp-relu": ("mlp", {"activation": "relu"}, (1, 8, 8)),
    "mlp-tanh": ("mlp", {"activation": "tanh"}, (1, 8, 8)),
    "mlp-gelu": ("mlp", {"activation": "gelu"}, (1, 8, 8)),
    "cnn": ("cnn", {"width": 8}, (1, 16, 16)),
    "resnet18": ("resnet18", {}, (1, 16, 16)),
    "resnet18-noskip": ("resnet18-noskip", {}, (1, 16, 16)),
}
RESNETS = ("resnet18", "resnet18-noskip")
# Bias scales of the mechanism test: wide enough to push the kinks out of the window.
MECHANISM_SCALES = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)

# Per size: seeds; the models, inits and geometries run (models outside ``all_inits``
# run the inits of ``few_inits`` only; loss curves only for ``loss_models`` x
# ``loss_inits``); curves per network (units x anchors), samples per curve; loss
# directions, data and grid; the mechanism's inits and seeds.
SIZES = {
    "quick": dict(seeds=2, models=("mlp-relu", "mlp-tanh", "cnn"), inits=("xavier", "default"),
                  all_inits=("mlp-relu", "mlp-tanh", "cnn"), few_inits=("xavier",),
                  units=8, anchors=4, samples=41, loss_models=("mlp-relu",), loss_inits=("xavier",),
                  loss_directions=4, loss_samples=32, loss_grid=21, pool=128,
                  mechanism_inits=("xavier",), mechanism_seeds=2, mechanism_anchors=8,
                  mechanism_scales=(0.0, 0.1, 10.0)),
    "default": dict(seeds=5, models=tuple(MODELS), inits=INITS,
                    all_inits=("mlp-relu", "mlp-tanh", "mlp-gelu", "cnn"), few_inits=("xavier",),
                    units=16, anchors=8, samples=41,
                    loss_models=("mlp-relu", "mlp-tanh", "mlp-gelu", "cnn"), loss_inits=("xavier",),
                    loss_directions=64, loss_samples=64, loss_grid=21, pool=256,
                    mechanism_inits=("xavier", "default"), mechanism_seeds=5, mechanism_anchors=16,
                    mechanism_scales=MECHANISM_SCALES),
    "full": dict(seeds=10, models=tuple(MODELS), inits=INITS, all_inits=tuple(MODELS), few_inits=INITS,
                 units=32, anchors=16, samples=81, loss_models=tuple(MODELS), loss_inits=INITS,
                 loss_directions=64, loss_samples=256, loss_grid=41, pool=512,
                 mechanism_inits=INITS, mechanism_seeds=10, mechanism_anchors=32,
                 mechanism_scales=MECHANISM_SCALES),
}


# ----------------------------------------------------------------------------- geometries

def pool_data(in_shape, n: int):
    """``n`` digits (training split, fixed subset) at ``in_shape``, with labels."""
    return landscape.load_dataset("digits", n=n, seed=0, in_shape=in_shape)


def slice_inputs(geometry: str, pool: torch.Tensor, n: int, seed: int):
    """Anchors ``(n, *in_shape)`` and directions ``(n, 1, *in_shape)`` of ``n`` lines of
    ``geometry`` (α ∈ [−1, 1]), drawn from the data ``pool`` with ``seed``."""
    rng = np.random.default_rng(seed)
    idx = torch.as_tensor(rng.choice(len(pool), 2 * n, replace=False))
    first, second = pool[idx[:n]], pool[idx[n:]]
    if geometry == "segment":
        return (first + second) / 2, ((second - first) / 2)[:, None]
    if geometry == "data-pca":
        components = landscape.input_directions(first, "pca", n=PCA_COMPONENTS, data=pool)
        pick = torch.as_tensor(rng.integers(0, PCA_COMPONENTS, n))
        return first, components[torch.arange(n), pick][:, None]
    directions = landscape.input_directions(first, "random", seed=seed)  # |d| = |x_a|
    if geometry == "origin":
        return torch.zeros_like(first), directions
    if geometry == "data-random":
        return first, directions
    raise ValueError(geometry)


def curve_counts(quasi_convex, quasi_concave, constant, convex=None, qcvx_barrier=None,
                 qccv_barrier=None) -> dict:
    """Counts of curves by verdict; flat (constant) curves counted apart and left out of
    every other count.  ``*_barrier`` give the either count at tol 1e-2 as well."""
    qcvx, qccv, flat = (np.asarray(a, dtype=bool).ravel() for a in (quasi_convex, quasi_concave,
                                                                    constant))
    valid = ~flat
    out = {"curves": int(flat.size), "flat": int(flat.sum()), "valid": int(valid.sum()),
           "quasi_convex": int((qcvx & valid).sum()), "quasi_concave": int((qccv & valid).sum()),
           "either": int(((qcvx | qccv) & valid).sum()), "both": int((qcvx & qccv & valid).sum())}
    if convex is not None:
        out["convex"] = int((np.asarray(convex, dtype=bool).ravel() & valid).sum())
    if qcvx_barrier is not None:
        wide = (np.asarray(qcvx_barrier).ravel() <= 10 * TOL) | (np.asarray(qccv_barrier).ravel()
                                                                 <= 10 * TOL)
        out["either_tol1e-2"] = int((wide & valid).sum())
    return out


def fractions(counts: dict) -> dict:
    """Fractions of the non-flat curves (NaN when every curve is flat), the flat fraction of
    all curves, and what counting flat curves as quasi-convex/convex (the earlier run) gives."""
    valid, total = counts["valid"], counts["curves"]
    out = {"flat": counts["flat"] / total if total else float("nan")}
    for key in ("quasi_convex", "quasi_concave", "either", "both", "convex", "either_tol1e-2"):
        if key in counts:
            out[key] = counts[key] / valid if valid else float("nan")
    out["neither"] = 1 - out["either"] if valid else float("nan")
    if total:
        out["either_flat_counted"] = (counts["either"] + counts["flat"]) / total
        if "convex" in counts:
            out["convex_flat_counted"] = (counts["convex"] + counts["flat"]) / total
    return out


def input_curves(model, geometry: str, pool, cfg, seed: int) -> dict:
    anchors, directions = slice_inputs(geometry, pool, cfg["anchors"], seed)
    ds = landscape.input_slice(model, None, units=cfg["units"], anchors=anchors,
                               directions=directions, grid=f"-1:1:{cfg['samples']}", data=pool,
                               tol=TOL)
    return curve_counts(*(ds[f"activation_{k}"].values for k in ("quasi_convex", "quasi_concave",
                                                                 "constant", "convex",
                                                                 "qcvx_barrier", "qccv_barrier")))


def loss_curves(model, x, y, cfg, seed: int) -> dict:
    scores = {k: [] for k in ("quasi_convex", "quasi_concave", "constant", "convex", "qcvx_barrier",
                              "qccv_barrier")}
    for k in range(cfg["loss_directions"]):
        ds = landscape.loss_slice(model, x, y, directions="filter", dims=1,
                                  grid=f"-1:1:{cfg['loss_grid']}", seed=10_000 * seed + k, tol=TOL)
        for name in scores:
            scores[name].append(ds[f"loss_{name}"].values)
    return curve_counts(*(scores[k] for k in scores))


def model_shape(label: str, cfg: dict | None = None) -> tuple[int, int, int]:
    """The input shape of ``label``: its own, or ``1 x N x N`` for the resnets when the
    size's ``resnet_size`` is N."""
    size = (cfg or {}).get("resnet_size")
    return (1, size, size) if size and label in RESNETS else MODELS[label][2]


def build(label: str, init: str, bias_scale: float, seed: int, shape=None):
    name, options, own = MODELS[label]
    return landscape.build_model(name, init=init, bias_scale=bias_scale, seed=seed,
                                 in_shape=shape or own, **options)


def cell_plan(cfg) -> list[tuple[str, str, str]]:
    """(model, init, geometry) cells of this size."""
    plan = []
    for label in cfg["models"]:
        inits = cfg["inits"] if label in cfg["all_inits"] else cfg["few_inits"]
        for init in inits:
            for geometry in GEOMETRIES:
                if geometry == "loss" and not (label in cfg["loss_models"] and init in cfg["loss_inits"]):
                    continue
                plan.append((label, init, geometry))
    return plan


def stat(values) -> dict:
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if not len(values):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "n": int(len(values))}


def run_grid(cfg) -> tuple[list[dict], dict]:
    """Every (model, init, bias scale, seed, geometry): counts and fractions."""
    rows = []
    seconds = {}
    pools = {shape: pool_data(shape, cfg["pool"]) for shape in {model_shape(m, cfg) for m in cfg["models"]}}
    plan = cell_plan(cfg)
    for label in cfg["models"]:
        t0 = time.process_time()
        x, y = pools[model_shape(label, cfg)]
        x_loss, y_loss = x[:cfg["loss_samples"]], y[:cfg["loss_samples"]]
        inits = sorted({init for m, init, _ in plan if m == label}, key=INITS.index)
        for init in inits:
            geometries = [g for m, i, g in plan if m == label and i == init]
            for bias_scale in BIAS_SCALES:
                for seed in range(cfg["seeds"]):
                    model = build(label, init, bias_scale, seed, model_shape(label, cfg))
                    for geometry in geometries:
                        counts = (loss_curves(model, x_loss, y_loss, cfg, seed) if geometry == "loss"
                                  else input_curves(model, geometry, x, cfg, seed))
                        rows.append(dict(model=label, init=init, bias_scale=bias_scale, seed=seed,
                                         geometry=geometry, counts=counts, fractions=fractions(counts)))
        seconds[label] = time.process_time() - t0
        print(f"  {label}: {seconds[label]:.1f} s CPU", flush=True)
    return rows, seconds


def aggregate(rows: list[dict]) -> dict:
    """model -> init -> geometry -> bias scale -> fraction -> mean ± std over seeds, plus the
    pooled counts and the binomial standard error of the pooled either fraction."""
    out: dict = {}
    keys = sorted({(r["model"], r["init"], r["geometry"], r["bias_scale"]) for r in rows},
                  key=lambda k: (list(MODELS).index(k[0]), INITS.index(k[1]),
                                 GEOMETRIES.index(k[2]), k[3]))
    for model, init, geometry, bias in keys:
        group = [r for r in rows if (r["model"], r["init"], r["geometry"], r["bias_scale"])
                 == (model, init, geometry, bias)]
        names = group[0]["fractions"].keys()
        entry = {name: stat([r["fractions"][name] for r in group]) for name in names}
        pooled = {k: int(sum(r["counts"][k] for r in group)) for k in group[0]["counts"]}
        p = pooled["either"] / pooled["valid"] if pooled["valid"] else float("nan")
        entry["pooled"] = pooled
        entry["either_pooled"] = p
        entry["binomial_se"] = (float(np.sqrt(p * (1 - p) / pooled["valid"])) if pooled["valid"]
                                else float("nan"))
        out.setdefault(model, {}).setdefault(init, {}).setdefault(geometry, {})[str(bias)] = entry
    return out


# ----------------------------------------------------------------------------- mechanism

def kink_counts(model, anchors, directions, samples: int, units: int) -> tuple[np.ndarray, dict]:
    """Per curve of ``act2`` (depth-2 ReLU mlp): the number of places where the curve can
    bend — the unit's own pre-activation ``fc2`` changes sign, or, where the unit is
    active, some first-layer pre-activation ``fc1`` does — and the curves' verdicts on the
    grid of ``samples`` points of [−1, 1].

    Signs are read at the midpoints of the grid's intervals (and at ±1), so that a
    pre-activation that is exactly zero at a grid sample (every one of them at α = 0 on a
    line through the origin with zero biases) counts once.  A first-layer pre-activation is
    affine in α and changes sign at most once, so between two consecutive places where
    nothing changes the activation pattern is fixed and the curve is linear: ``kinks + 1``
    bounds its number of linear pieces at the grid's resolution."""
    alpha = np.linspace(-1, 1, samples)
    probe = np.concatenate([[-1.0], (alpha[1:] + alpha[:-1]) / 2, [1.0]])
    width = model.fc1.out_features
    common = dict(anchors=anchors, directions=directions, tol=TOL)
    z1 = landscape.input_slice(model, "fc1", units=width, grid=probe, **common)["activation"].values
    z2 = landscape.input_slice(model, "fc2", units=units, grid=probe, **common)["activation"].values
    act = landscape.input_slice(model, "act2", units=units, grid=f"-1:1:{samples}", **common)
    on1, on2 = z1 > 0, z2 > 0  # (unit, anchor, probe)
    first = (on1[..., 1:] != on1[..., :-1]).any(axis=0)  # (anchor, step)
    own = on2[..., 1:] != on2[..., :-1]  # (unit, anchor, step)
    active = on2[..., 1:] | on2[..., :-1]
    kinks = (own | (active & first[None])).sum(axis=-1)
    verdicts = {k: act[f"activation_{k}"].values for k in ("quasi_convex", "quasi_concave", "constant")}
    return kinks, verdicts


def run_mechanism(cfg) -> dict:
    """Kink counts and verdicts of mlp-relu curves on origin lines, data lines and segments
    over a wide range of bias scales; the fraction that is neither quasi-convex nor
    quasi-concave at each kink count is fitted on the data lines and predicts the others."""
    x, _ = pool_data(MODELS["mlp-relu"][2], cfg["pool"])
    records = []
    for init in cfg["mechanism_inits"]:
        for bias_scale in cfg["mechanism_scales"]:
            for seed in range(cfg["mechanism_seeds"]):
                model = build("mlp-relu", init, bias_scale, seed)
                for geometry in ("origin", "data-random", "segment"):
                    anchors, directions = slice_inputs(geometry, x, cfg["mechanism_anchors"], seed)
                    kinks, v = kink_counts(model, anchors, directions, cfg["samples"], cfg["units"])
                    valid = ~v["constant"].astype(bool)
                    either = (v["quasi_convex"] | v["quasi_concave"]).astype(bool)
                    records.append(dict(init=init, bias_scale=bias_scale, seed=seed, geometry=geometry,
                                        kinks=kinks[valid].ravel(), neither=~either[valid].ravel(),
                                        flat=float((~valid).mean())))
    return analyse_mechanism(records, cfg)


def neither_by_kinks(records, max_k: int) -> tuple[np.ndarray, np.ndarray]:
    """P(neither | kinks = k) for k = 0..max_k (the last bin holds k >= max_k) and counts."""
    kinks = np.concatenate([np.minimum(r["kinks"], max_k) for r in records]) if records else np.zeros(0)
    neither = np.concatenate([r["neither"] for r in records]) if records else np.zeros(0, bool)
    counts = np.bincount(kinks.astype(int), minlength=max_k + 1)
    hits = np.bincount(kinks.astype(int), weights=neither.astype(float), minlength=max_k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / counts, counts


def analyse_mechanism(records, cfg) -> dict:
    max_kinks = cfg["samples"]  # a curve of n samples has at most n steps between its probes
    calibration = [r for r in records if r["geometry"] == "data-random"]
    p_k, n_k = neither_by_kinks(calibration, max_kinks)
    p_all, n_all = neither_by_kinks(records, max_kinks)
    # Kink counts never seen on data lines borrow the pooled estimate (reported).
    fill = np.where(np.isfinite(p_k), p_k, p_all)
    out = {"max_kinks": max_kinks, "calibration": "data-random",
           "p_neither_given_kinks": p_k.tolist(), "curves_per_kinks": n_k.tolist(),
           "p_neither_given_kinks_all": p_all.tolist(), "curves_per_kinks_all": n_all.tolist(),
           "two_pieces_neither": int(sum(r["neither"][r["kinks"] <= 1].sum() for r in records)),
           "two_pieces_curves": int(sum((r["kinks"] <= 1).sum() for r in records)),
           "by": {}, "histograms": {}}
    for init in cfg["mechanism_inits"]:
        for geometry in ("origin", "data-random", "segment"):
            series = {"bias_scale": [], "measured": [], "measured_std": [], "predicted": [],
                      "predicted_std": [], "mean_kinks": [], "mean_kinks_std": [], "flat": [],
                      "at_most_two_pieces": []}
            for bias_scale in cfg["mechanism_scales"]:
                group = [r for r in records if r["init"] == init and r["geometry"] == geometry
                         and r["bias_scale"] == bias_scale]
                measured = [r["neither"].mean() if r["neither"].size else np.nan for r in group]
                predicted = [fill[np.minimum(r["kinks"], max_kinks)].mean() if r["kinks"].size else np.nan
                             for r in group]
                p_group, n_group = neither_by_kinks(group, max_kinks)
                last = int(np.nonzero(n_group)[0].max()) + 1 if n_group.any() else 0
                out["histograms"].setdefault(init, {}).setdefault(geometry, {})[str(bias_scale)] = {
                    "curves": n_group[:last].tolist(),
                    "neither": np.rint(np.nan_to_num(p_group * n_group))[:last].astype(int).tolist()}
                kinks = [r["kinks"].mean() if r["kinks"].size else np.nan for r in group]
                two = [(r["kinks"] <= 1).mean() if r["kinks"].size else np.nan for r in group]
                m, p, k = stat(measured), stat(predicted), stat(kinks)
                series["bias_scale"].append(bias_scale)
                series["measured"].append(m["mean"])
                series["measured_std"].append(m["std"])
                series["predicted"].append(p["mean"])
                series["predicted_std"].append(p["std"])
                series["mean_kinks"].append(k["mean"])
                series["mean_kinks_std"].append(k["std"])
                series["flat"].append(stat([r["flat"] for r in group])["mean"])
                series["at_most_two_pieces"].append(stat(two)["mean"])
            diff = np.abs(np.array(series["measured"]) - np.array(series["predicted"]))
            series["max_abs_error"] = float(np.nanmax(diff))
            out["by"].setdefault(init, {})[geometry] = series
    return out


# ----------------------------------------------------------------------------- figures

def _figure_fractions(agg: dict, cfg, path: Path) -> Path:
    models = [m for m in cfg["models"] if m in agg]
    width = max(2.5 * len(models), 6.5)  # room for the title when few models run
    fig, axes = plt.subplots(len(GEOMETRIES), len(models), figsize=(width, 2.0 * len(GEOMETRIES)),
                             sharex=True, sharey=True, squeeze=False)
    xs = np.arange(len(BIAS_SCALES))
    colours = dict(zip(INITS, ("C0", "C1", "C2", "C3")))
    for j, model in enumerate(models):
        for i, geometry in enumerate(GEOMETRIES):
            ax = axes[i, j]
            if not any(geometry in by_geometry for by_geometry in agg[model].values()):
                # Loss lines of the resnets are left out of the default size (≈ 60x the forward
                # passes of their input curves): say so instead of an empty frame.
                ax.text(0.5, 0.5, f"{geometry} lines\nnot run for\n{model}", ha="center",
                        va="center", fontsize=7, color="0.4", transform=ax.transAxes)
                ax.set_axis_off()  # not set_xticks([]): the axes share their tick locators
                if i > 0:
                    axes[i - 1, j].tick_params(labelbottom=True)
                if i == 0:
                    ax.set_title(model, fontsize=9)
                continue
            for init, by_geometry in agg[model].items():
                if geometry not in by_geometry:
                    continue
                cells = [by_geometry[geometry][str(b)] for b in BIAS_SCALES]
                mean = np.array([c["either"]["mean"] for c in cells])
                std = np.array([c["either"]["std"] for c in cells])
                ax.errorbar(xs, mean, yerr=std, color=colours[init], marker="o", ms=3, lw=1,
                            capsize=2, label=init)
                ax.plot(xs, [c["flat"]["mean"] for c in cells], color=colours[init], ls=":", lw=1)
            if i == 0:
                ax.set_title(model, fontsize=9)
            if j == 0:
                ax.set_ylabel(geometry, fontsize=9)
            ax.set_ylim(-0.03, 1.03)
            ax.set_xticks(xs, [f"{b:g}" for b in BIAS_SCALES], fontsize=7)
            ax.tick_params(labelsize=7)
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("solid: fraction quasi-convex or quasi-concave (flat curves excluded), mean ± std "
                 "over seeds;\ndotted: fraction flat; x: bias scale", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    return save_figure(fig, path, dpi=90)


def _figure_mechanism(mech: dict, agg: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    for init, style in zip(mech["by"], ("-", "--", "-.", ":")):
        for geometry, colour in (("origin", "C0"), ("data-random", "C1"), ("segment", "C2")):
            s = mech["by"][init][geometry]
            xs = np.arange(len(s["bias_scale"]))
            ax.errorbar(xs, s["measured"], yerr=s["measured_std"], color=colour, ls=style, marker="o",
                        ms=3, lw=1, capsize=2, label=f"{geometry}, {init}")
            ax.plot(xs, s["predicted"], color=colour, ls="none", marker="x", ms=6)
        ax.set_xticks(xs, [f"{b:g}" for b in s["bias_scale"]], fontsize=7)
    ax.set_xlabel("bias scale")
    ax.set_ylabel("fraction neither (flat excluded)")
    ax.set_title("mlp-relu: measured (o) vs predicted from kinks (x)", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1]
    p = np.array(mech["p_neither_given_kinks"], dtype=float)
    n = np.array(mech["curves_per_kinks"], dtype=float)
    k = np.arange(len(p))
    n_all = np.array(mech["curves_per_kinks_all"], dtype=float)
    p_all = np.array(mech["p_neither_given_kinks_all"], dtype=float)
    seen, seen_all = n >= 10, n_all >= 10  # bins of at least 10 curves
    se = np.sqrt(np.clip(p * (1 - p), 0, None) / np.where(n > 0, n, np.nan))
    ax.errorbar(k[seen], p[seen], yerr=se[seen], marker="o", ms=3, capsize=2,
                label="data lines (calibration)")
    ax.plot(k[seen_all], p_all[seen_all], marker="x", ls="--", label="all geometries")
    ax.set_xlabel("kinks in the window")
    ax.set_ylabel("P(neither | kinks)")
    ax.legend(fontsize=7)
    ax = axes[2]
    for init in agg.get("cnn", {}):
        cells = agg["cnn"][init].get("data-random")
        if not cells:
            continue
        xs = np.arange(len(BIAS_SCALES))
        line, = ax.plot(xs, [cells[str(b)]["either"]["mean"] for b in BIAS_SCALES], marker="o",
                        label=f"{init}, flat excluded")
        ax.plot(xs, [cells[str(b)]["either_flat_counted"]["mean"] for b in BIAS_SCALES], marker="s",
                ls="--", color=line.get_color(), label=f"{init}, flat counted")
        ax.set_xticks(xs, [f"{b:g}" for b in BIAS_SCALES], fontsize=7)
    ax.set_xlabel("bias scale")
    ax.set_ylabel("fraction either")
    ax.set_title("cnn, lines through data points", fontsize=9)
    ax.legend(fontsize=6)
    return save_figure(fig, path, dpi=90, tight=True)


# ----------------------------------------------------------------------------- main

def run(size: str, out: Path, figures: Path, resnet_size: int | None = None,
        models: tuple[str, ...] | None = None) -> dict:
    cfg = dict(SIZES[size])
    if models:
        cfg["models"] = tuple(m for m in MODELS if m in models)
    cfg["resnet_size"] = resnet_size
    suffix = f"_resnet{resnet_size}" if resnet_size else ""
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.time(), time.process_time()
    rows, seconds = run_grid(cfg)
    agg = aggregate(rows)
    t = time.process_time()
    mech = run_mechanism(cfg) if "mlp-relu" in cfg["models"] else None
    seconds["mechanism"] = time.process_time() - t
    summary = {
        "size": size, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "tol": TOL, "bias_scales": list(BIAS_SCALES), "grid_spacing": 2 / (cfg["samples"] - 1),
        "loss_grid_spacing": 2 / (cfg["loss_grid"] - 1),
        "cells": rows, "aggregate": agg, "mechanism": mech,
        "input_shapes": {m: list(model_shape(m, cfg)) for m in cfg["models"]},
    }
    summary["figures"] = [str(_figure_fractions(agg, cfg, figures / f"q2_fractions{suffix}.png"))]
    if mech is not None:
        summary["figures"].append(str(_figure_mechanism(mech, agg, figures / f"q2_mechanism{suffix}.png")))
    summary["cpu_seconds"] = {**seconds, "total": time.process_time() - cpu}
    summary["wall_seconds"] = time.time() - wall
    write_summary(out, summary)
    return summary


def extra_args(argv) -> tuple[int | None, tuple[str, ...] | None, list[str]]:
    """``--resnet-size`` and ``--models`` taken off ``argv``; the rest for :func:`parse_args`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--resnet-size", type=int, default=None)
    parser.add_argument("--models", default=None)
    ns, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if ns.resnet_size is not None and ns.resnet_size < 16:
        sys.exit(f"--resnet-size: must be >= 16, got {ns.resnet_size}")
    models = None
    if ns.models is not None:
        models = tuple(m.strip() for m in ns.models.split(",") if m.strip())
        unknown = [m for m in models if m not in MODELS]
        if unknown or not models:
            sys.exit(f"--models: unknown value {','.join(unknown) or ns.models!r}; choose from "
                     f"{', '.join(MODELS)}")
    return ns.resnet_size, models, rest


def main(argv=None) -> dict:
    resnet_size, models, rest = extra_args(argv)
    size, out, figures = parse_args(__doc__, NAME, rest)
    if resnet_size and out == ROOT / "results" / NAME:
        out = ROOT / "results" / f"{NAME}_resnet{resnet_size}"
    torch.set_num_threads(1)
    summary = run(size, out, figures, resnet_size, models)
    agg = summary["aggregate"]
    for model, by_init in agg.items():
        for init, by_geometry in by_init.items():
            for geometry, by_bias in by_geometry.items():
                cells = " ".join(f"{b}:{c['either']['mean']:.2f}±{c['either']['std']:.2f}"
                                 f"/{c['flat']['mean']:.2f}" for b, c in by_bias.items())
                print(f"{model:16s} {init:10s} {geometry:12s} either/flat {cells}")
    for init, by_geometry in (summary["mechanism"] or {"by": {}})["by"].items():
        for geometry, s in by_geometry.items():
            pairs = " ".join(f"{b:g}:{m:.2f}/{p:.2f}" for b, m, p in
                             zip(s["bias_scale"], s["measured"], s["predicted"]))
            print(f"mechanism {init:8s} {geometry:12s} neither measured/predicted {pairs} "
                  f"(max error {s['max_abs_error']:.3f})")
    print(f"CPU {summary['cpu_seconds']['total']:.1f} s, wall {summary['wall_seconds']:.1f} s; "
          f"results in {summary['figures']}")
    return summary


if __name__ == "__main__":
    main()
