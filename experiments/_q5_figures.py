"""Q5's figures, drawn from its summary (see q5_maxact_reliability.py), and the
models and states the question runs over."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from _units import save_figure

from landscape.maxact import METRICS, REGIONS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODELS = ("mlp", "cnn", "resnet18")
STATES = ("random", "trained")


def present(models: dict) -> list[str]:
    """The models of :data:`MODELS` that a summary holds, in order."""
    return [name for name in MODELS if name in models]


# ----------------------------------------------------------------------------- figures

def plot_metrics(summary: dict, path: Path) -> Path:
    shown = present(summary["models"])
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), sharey=True)
    xs = np.arange(len(METRICS))
    for ax, name in zip(np.atleast_1d(axes), shown):
        for j, (state, colour) in enumerate((("random", "C0"), ("trained", "C3"))):
            z = summary["models"][name]["states"][state]["z"]
            ax.bar(xs + (j - 0.5) * 0.4, [z[m]["mean"] for m in METRICS], 0.4,
                   yerr=[z[m]["std"] for m in METRICS], color=colour, capsize=2, label=state)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_yscale("symlog", linthresh=2)  # lipschitz's z runs to ~100 (a scale effect)
        ax.set_xticks(xs, METRICS, rotation=60, ha="right", fontsize=7)
        acc = summary["models"][name]["test_accuracy"]["mean"]
        ax.set_title(f"{name} (trained acc {acc:.2f})", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("null z-score (unit mean; ± std over seeds)", fontsize=8)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def plot_density(summary: dict, cfg: dict, n_all: int, path: Path) -> Path:
    shown = present(summary["models"])
    ns = [*cfg["ns"], n_all]
    keys = (("rho", "rho (top datum's share of the climb)"),
            ("dist", "maximum to nearest datum (pixels, L2)"),
            ("top_dist", "top datum to maximum (L2)"))
    fig, axes = plt.subplots(len(keys), len(shown), figsize=(3.8 * len(shown), 2.6 * len(keys)),
                             sharex=True, squeeze=False)
    for col, name in enumerate(shown):
        for row, (key, label) in enumerate(keys):
            ax = axes[row][col]
            for state, colour in (("random", "C0"), ("trained", "C3")):
                d = summary["models"][name]["states"][state]["density"]
                ax.errorbar(ns, [d[str(n)][key]["mean"] for n in ns],
                            yerr=[d[str(n)][key]["std"] for n in ns], color=colour, marker="o",
                            capsize=2, label=state)
            ax.set_xscale("log")
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            if row == 0:
                ax.set_title(name, fontsize=9)
            if row == len(keys) - 1:
                ax.set_xlabel("N data (maximum held fixed)")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def plot_cascade(summary: dict, path: Path) -> Path:
    """One row per model, x ticks named by the layer group re-randomised at that stage."""
    shown = present(summary["models"])
    keys = (("overlap", "top-k overlap with trained"), ("spearman", "rank corr. with trained"),
            ("purity", "top-k label purity"), ("rho", f"rho ({summary['default_region']} region)"),
            ("morans_i_data", "Moran's I (data kNN)"))
    fig, axes = plt.subplots(len(shown), len(keys), figsize=(3.1 * len(keys), 2.5 * len(shown)),
                             squeeze=False, sharey="col")
    for row, (name, colour) in enumerate(zip(shown, ("C0", "C1", "C2"))):
        stages = summary["models"][name]["cascade"]
        names = ["trained", *(f"+{e['label']}" for e in stages[1:])]
        for col, (key, label) in enumerate(keys):
            ax = axes[row][col]
            have = [e for e in stages if key in e]
            if have:
                ax.errorbar([e["stage"] for e in have], [e[key]["mean"] for e in have],
                            yerr=[e[key]["std"] for e in have], marker="o", capsize=2, color=colour)
            else:
                ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes,
                        fontsize=8, color="grey")
            if key == "overlap":
                ax.axhline(summary["chance_overlap"], color="grey", ls=":", label="chance k/N")
                ax.legend(fontsize=6, loc="upper right")
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
            if row == 0:
                ax.set_title(label, fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle("cascading re-randomisation, top down (each stage adds the named group)", fontsize=9)
    return save_figure(fig, path, dpi=110)


def plot_regions(summary: dict, cfg: dict, n_all: int, path: Path) -> Path:
    """Each mechanism number beside each other for the three search regions."""
    shown = present(summary["models"])
    keys = (("rho", "rho (all data)"), ("dist_to_data", "best maximum to data (h)"),
            ("thinning", "rho lost thinning to N = " + str(cfg["ns"][0])),
            ("spearman_rho_dist_to_data", "Spearman(rho, dist_to_data)"),
            ("spearman_rho_n_maxima", "Spearman(rho, n_maxima)"))
    labels = [f"{m}\n{s}" for m in shown for s in STATES]
    xs = np.arange(len(labels))
    width = 0.8 / len(REGIONS)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys):
        for j, region in enumerate(REGIONS):
            models = summary["regions"][region]
            vals, errs = [], []
            for m in shown:
                for s in STATES:
                    st = models[m]["states"][s]
                    if key in ("rho", "dist_to_data"):
                        vals.append(st["metrics"][key]["mean"])
                        errs.append(st["metrics"][key]["std"])
                    elif key == "thinning":
                        d = st["density"]
                        vals.append(d[str(n_all)]["rho"]["mean"] - d[str(cfg["ns"][0])]["rho"]["mean"])
                        errs.append(0.0)
                    else:
                        vals.append(st[key])
                        errs.append(0.0)
            ax.bar(xs + (j - (len(REGIONS) - 1) / 2) * width, vals, width,
                   yerr=errs if any(errs) else None, capsize=2, color=f"C{j}", label=region)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
    axes[0][-1].legend(fontsize=7, title="region", title_fontsize=7, loc="best")
    return save_figure(fig, path, dpi=110)


def plot_directions(summary: dict, path: Path) -> Path:
    shown = present(summary["models"])
    keys = ("purity", "rho", "morans_i", "topk_jaccard")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.2), squeeze=False)
    labels = [f"{m}\n{s[0]}" for m in shown for s in STATES]
    xs = np.arange(len(labels))
    for ax, key in zip(axes[0], keys):
        for j, (kind, colour) in enumerate((("metrics", "C0"), ("directions", "C1"))):
            vals = [summary["models"][m]["states"][s][kind][key] for m in shown for s in STATES]
            ax.bar(xs + (j - 0.5) * 0.4, [v["mean"] for v in vals], 0.4, yerr=[v["std"] for v in vals],
                   color=colour, capsize=2,
                   label="single units" if kind == "metrics" else "random directions")
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_title(key, fontsize=9)
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)
