"""Figures of Hessian spectra (results of kind ``hessian`` and ``input_hessian``).

The loss spectrum is drawn as in Ghorbani, Krishnan & Xiao, *An investigation
into neural net optimization via Hessian eigenvalue density* (ICML 2019): the
SLQ density on a logarithmic axis over the eigenvalue grid, with the extreme
eigenvalues from Lanczos marked as vertical lines.  Without a density the
eigenvalues are drawn as stems.  Input-Hessian results get, per unit, the
eigenvalues across anchors and, when present, the negative mass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .common import plt, save_figure, title

COLOURS = {"top": "tab:red", "bottom": "tab:blue"}


def _mark_eigenvalues(ax, ds: xr.Dataset) -> None:
    labelled = set()
    which = ds["which"].values if "which" in ds.coords else ["top"] * ds.sizes.get("eig", 0)
    for value, end in zip(np.atleast_1d(ds["eigenvalue"].values), which, strict=True):
        if not np.isfinite(value):
            continue
        label = f"{end} eigenvalues" if end not in labelled else None
        labelled.add(end)
        ax.axvline(value, color=COLOURS.get(str(end), "k"), lw=0.8, ls="--", alpha=0.8,
                   label=label)


def _stems(ax, ds: xr.Dataset) -> None:
    values = ds["eigenvalue"].values
    which = [str(w) for w in ds["which"].values]
    for end in ("top", "bottom"):
        idx = [i for i, w in enumerate(which) if w == end]
        if idx:
            ax.stem(np.asarray(idx), values[idx], linefmt=COLOURS[end], markerfmt="o",
                    basefmt="k-", label=end)
    ax.set_xlabel("index (descending)")
    ax.set_ylabel("eigenvalue")
    ax.legend()


def _summary(ds: xr.Dataset) -> str:
    parts = []
    for name, label in (("trace", "trace"), ("negative_mass", "negative mass"),
                        ("ratio_min_max", "|λmin/λmax|")):
        if name in ds and ds[name].ndim == 0 and np.isfinite(float(ds[name])):
            value = f"{float(ds[name]):.4g}"
            if name == "trace" and "trace_stderr" in ds:
                value += f" ± {float(ds['trace_stderr']):.2g}"
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def _loss_spectrum(ds: xr.Dataset, out_dir: Path, stem: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if "density" in ds:
        dens = ds["density"].values
        floor = max(dens.max() * 1e-8, np.finfo(float).tiny)
        ax.semilogy(ds["lam"].values, np.maximum(dens, floor), color="k", lw=1.2,
                    label="density (SLQ)")
        ax.set_ylim(bottom=floor)
        if ds.sizes.get("eig", 0):
            _mark_eigenvalues(ax, ds)
        ax.set_xlabel("eigenvalue λ")
        ax.set_ylabel("density (log scale)")
        ax.legend(fontsize=8)
    else:
        _stems(ax, ds)
    summary = _summary(ds)
    ax.set_title(title(ds, "Hessian spectrum") + (f"\n{summary}" if summary else ""), fontsize=9)
    return [save_figure(fig, Path(out_dir) / f"{stem}_spectrum.png")]


def _grid(n: int):
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _input_spectrum(ds: xr.Dataset, out_dir: Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    units = ds["unit"].values
    paths = []
    if ds.sizes.get("eig", 0):
        fig, axes = _grid(len(units))
        which = [str(w) for w in ds["which"].values]
        anchors = ds["anchor"].values
        for ax, unit in zip(axes, units, strict=False):
            values = ds["eigenvalue"].sel(unit=unit).values  # (anchor, eig)
            for j, end in enumerate(which):
                ax.plot(anchors, values[:, j], "o", ms=3, color=COLOURS.get(end, "k"),
                        alpha=0.7, label=end if end not in which[:j] else None)
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_title(f"unit {unit}", fontsize=9)
            ax.set_xlabel("anchor")
            ax.set_ylabel("eigenvalue")
        axes[0].legend(fontsize=7)
        fig.suptitle(title(ds, f"input Hessian eigenvalues, layer {ds.attrs.get('layer', '?')}"),
                     fontsize=9)
        paths.append(save_figure(fig, out_dir / f"{stem}_eigenvalues.png"))
    if "negative_mass" in ds and np.isfinite(ds["negative_mass"].values).any():
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(units) + 2), 3.6))
        data = [ds["negative_mass"].sel(unit=u).values for u in units]
        ax.boxplot([d[np.isfinite(d)] for d in data], tick_labels=[str(u) for u in units])
        ax.set_xlabel("unit")
        ax.set_ylabel("negative mass (across anchors)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title(ds, "input Hessian index"), fontsize=9)
        paths.append(save_figure(fig, out_dir / f"{stem}_negative_mass.png"))
    if "density" in ds:
        fig, axes = _grid(len(units))
        lam = ds["lam"].values
        for ax, unit in zip(axes, units, strict=False):
            dens = ds["density"].sel(unit=unit).mean("anchor").values
            floor = max(dens.max() * 1e-8, np.finfo(float).tiny)
            ax.semilogy(lam, np.maximum(dens, floor), color="k", lw=1)
            ax.set_ylim(bottom=floor)
            ax.set_title(f"unit {unit}", fontsize=9)
            ax.set_xlabel("eigenvalue λ")
        fig.suptitle(title(ds, "input Hessian density (mean over anchors)"), fontsize=9)
        paths.append(save_figure(fig, out_dir / f"{stem}_spectrum.png"))
    return paths


def plot_hessian(ds: xr.Dataset, out_dir: Path, stem: str) -> list[Path]:
    """Draw a ``hessian`` or ``input_hessian`` result; returns the PNG files written
    (``{stem}_spectrum.png`` for the loss; ``{stem}_eigenvalues.png``,
    ``{stem}_negative_mass.png``, ``{stem}_spectrum.png`` for units)."""
    kind = ds.attrs.get("kind")
    if kind == "hessian":
        return _loss_spectrum(ds, out_dir, stem)
    if kind == "input_hessian":
        return _input_spectrum(ds, out_dir, stem)
    raise ValueError(f"plot_hessian: expected kind hessian or input_hessian, got {kind!r}")
