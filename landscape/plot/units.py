"""Figures of single units: max-activating examples beside optimised maxima, the
reliability metrics, their relation to slice and Hessian geometry, and t-SNE
activation heatmaps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .common import plt, save_figure, title

MAX_UNITS = 16


def _image(a: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> something imshow draws, scaled to [0, 1] per image."""
    a = np.asarray(a, dtype=float)
    lo, hi = np.nanmin(a), np.nanmax(a)
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.shape[0] == 1:
        return a[0], "gray"
    if a.shape[0] == 3:
        return np.moveaxis(a, 0, -1), None
    return a.mean(axis=0), "gray"


def _examples_figure(ds, path: Path) -> Path:
    units = ds.unit.values[:MAX_UNITS]
    k = ds.sizes["rank"]
    fig, axes = plt.subplots(len(units), k + 1, figsize=(1.1 * (k + 1), 1.15 * len(units)),
                             squeeze=False, layout="constrained")
    for row, unit in enumerate(units):
        u = ds.sel(unit=unit)
        for r in range(k):
            img, cmap = _image(u["topk_image"].isel(rank=r).values)
            ax = axes[row, r]
            ax.imshow(img, cmap=cmap)
            ax.set_title(f"{float(u.topk_activation.isel(rank=r)):.3g}", fontsize=6)
        img, cmap = _image(u["maximum"].values)
        axes[row, k].imshow(img, cmap=cmap)
        axes[row, k].set_title(f"max {float(u.best_activation):.3g}", fontsize=6, color="tab:red")
        axes[row, 0].set_ylabel(f"unit {unit}\nρ={float(u.rho):.2f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title(ds, "dataset top-k (left) and the best optimised maximum (right)"),
                 fontsize=9)
    return save_figure(fig, path)


def _metrics_figure(ds, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)  # room between the colour bar and the next panel
    sc = axes[0].scatter(ds.rho, ds.p_hit, c=ds.n_maxima, cmap="viridis", s=28)
    bar = fig.colorbar(sc, ax=axes[0], label="n_maxima (maxima found)")
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # a count: short integer ticks
    axes[0].set(xlabel="rho (top example / best maximum)", ylabel="p_hit",
                title="reliability per unit")
    names = [n for n in ("rho", "p_hit", "dist_to_data", "topk_compactness", "topk_jaccard",
                         "morans_i") if n in ds]
    zs = [f"{n}_z" for n in names if f"{n}_z" in ds]
    if zs:
        axes[1].boxplot([ds[z].values[np.isfinite(ds[z].values)] for z in zs],
                        tick_labels=[z[:-2] for z in zs])
        axes[1].axhline(0, color="0.5", lw=0.8)
        axes[1].set(ylabel="z-score against re-initialised nets", title="against the null")
    else:
        axes[1].boxplot([ds[n].values[np.isfinite(ds[n].values)] for n in names],
                        tick_labels=names)
        axes[1].set(title="metrics across units")
    axes[1].tick_params(axis="x", labelrotation=90, labelsize=7)  # long names never overlap
    fig.suptitle(title(ds, f"max-activation reliability, layer {ds.attrs.get('layer', '?')}"),
                 fontsize=9)
    return save_figure(fig, path)


def _relation_figure(ds, path: Path) -> Path:
    geoms = [str(g) for g in ds.geometry.values]
    metrics = ["rho", "p_hit", "n_maxima", "morans_i"]
    fig, axes = plt.subplots(len(metrics), len(geoms), squeeze=False,
                             figsize=(2.6 * len(geoms), 2.3 * len(metrics)), layout="constrained")
    for i, metric in enumerate(metrics):
        for j, geom in enumerate(geoms):
            ax = axes[i, j]
            ax.scatter(ds[f"geom_{geom}"], ds[metric], s=14)
            r = float(ds.spearman.sel(metric=metric, geometry=geom))
            ax.set_title(f"Spearman {r:.2f}", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel(geom, fontsize=8)
            if j == 0:
                ax.set_ylabel(metric, fontsize=8)
    fig.suptitle(title(ds, "reliability vs geometry, one point per unit"), fontsize=9)
    return save_figure(fig, path)


def plot_maxact(ds, out_dir: Path, stem: str) -> list[Path]:
    """Top-k beside maxima (image inputs), metric scatter, relation scatter."""
    out_dir = Path(out_dir)
    paths = []
    if "topk_image" in ds and "maximum" in ds and "unit" in ds.dims:
        paths.append(_examples_figure(ds, out_dir / f"{stem}_examples.png"))
    if "rho" in ds and "unit" in ds.dims:
        paths.append(_metrics_figure(ds, out_dir / f"{stem}_metrics.png"))
    if "spearman" in ds and "geometry" in ds.dims:
        paths.append(_relation_figure(ds, out_dir / f"{stem}_relation.png"))
    return paths


def plot_tsne(ds, out_dir: Path, stem: str) -> list[Path]:
    """A grid of unit heatmaps on the shared t-SNE map (top-k as black circles,
    the best maximum as a red star when the result has them), and the map
    coloured by label."""
    out_dir = Path(out_dir)
    units = ds.unit.values[:MAX_UNITS]
    cols = min(4, len(units))
    rows = math.ceil(len(units) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False,
                             layout="constrained")
    tx, ty = ds.tsne_x.values, ds.tsne_y.values
    for ax, unit in zip(axes.flat, units):
        values = ds.activation.sel(unit=unit).values
        order = np.argsort(values)  # strongest on top
        sc = ax.scatter(tx[order], ty[order], c=values[order], s=4, cmap="inferno",
                        linewidths=0)
        fig.colorbar(sc, ax=ax, shrink=0.8)
        if "topk_x" in ds:
            ax.scatter(ds.topk_x.sel(unit=unit), ds.topk_y.sel(unit=unit), s=24,
                       facecolors="none", edgecolors="cyan", linewidths=0.8)
        if "maximum_x" in ds:
            ax.plot(float(ds.maximum_x.sel(unit=unit)), float(ds.maximum_y.sel(unit=unit)),
                    marker="*", color="red", ms=11, mec="white", mew=0.6)
        ax.set_title(f"unit {unit}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(units):]:
        ax.axis("off")
    fig.suptitle(title(ds, f"t-SNE of {ds.attrs.get('features', '?')}, coloured by activation "
                           f"of {ds.attrs.get('layer', '?')}"), fontsize=9)
    paths = [save_figure(fig, out_dir / f"{stem}_heatmaps.png")]
    labels = ds.label.values
    if (labels >= 0).any():
        fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
        sc = ax.scatter(tx, ty, c=labels, s=4, cmap="tab10", linewidths=0)
        fig.colorbar(sc, ax=ax, label="label")
        ax.set(xticks=[], yticks=[], title=title(ds, "t-SNE map by label"))
        ax.title.set_fontsize(8)
        paths.append(save_figure(fig, out_dir / f"{stem}_labels.png"))
    return paths
