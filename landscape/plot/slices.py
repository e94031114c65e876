"""Figures of slice results: loss curves and contour maps, units' input-response
curves with each curve's verdict (constant curves apart), and histograms of the
barrier scores of the curves that are not constant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import plt, save_figure, title

MAX_UNITS = 16
# Colour of each verdict on a 1-D curve; a constant curve (flat within rounding noise) is
# every shape at once and drawn apart.
CONSTANT = ("constant", "tab:green")
VERDICTS = {
    (True, True): ("monotone (both)", "0.55"),
    (True, False): ("quasi-convex", "tab:blue"),
    (False, True): ("quasi-concave", "tab:red"),
    (False, False): ("neither", "black"),
}


def _verdict(ds, var: str, **index) -> tuple[str, str]:
    def flag(name: str) -> bool:
        da = ds[f"{var}_{name}"]
        return bool(da.isel(**index) if index else da)

    if f"{var}_constant" in ds and flag("constant"):
        return CONSTANT
    return VERDICTS[(flag("quasi_convex"), flag("quasi_concave"))]


def _constant_note(ds, var: str) -> str:
    """", n% constant" when the result marks constant curves and some are."""
    frac = ds.attrs.get(f"{var}_frac_constant", np.nan)
    return f", {100 * frac:.0f}% constant" if np.isfinite(frac) and frac > 0 else ""


def _loss_name(ds) -> str:
    """``loss`` with the loss function named (``loss (mse)``)."""
    name = ds.attrs.get("loss_function", "")
    return f"loss ({name})" if name else "loss"


def _bn_label(ds, mode: str | None) -> str:
    """How the loss's BatchNorm statistics were taken, for a title."""
    from ..results import BN_MEANINGS

    if not int(ds.attrs.get("batch_norm_layers", 1)):
        return "no BatchNorm"
    if mode is None:
        mode = str(ds.attrs.get("bn", ""))
        if mode.startswith("{"):  # a merged slice: one mode per space
            mode = str(json.loads(mode).get("loss", ""))
    return f"BatchNorm {mode}: {BN_MEANINGS.get(mode, mode)}"


def _loss_surface(fig, axes, ds, loss, accuracy, mode) -> None:
    what = _loss_name(ds)
    a, b = ds.alpha.values, ds.beta.values
    z = loss.transpose("beta", "alpha").values
    lo, hi = np.nanmin(z), np.nanmax(z)
    # Geometric levels resolve the flat basin when the loss spans a wide range.
    geometric = lo > 0 and hi / lo > 3
    levels = np.geomspace(lo, hi, 30) if geometric else 30
    cs = axes[0].contour(a, b, z, levels=levels, cmap="viridis", linewidths=0.8)
    spacing = "log-spaced levels, log scale" if geometric else "evenly spaced levels"
    bar = fig.colorbar(cs, ax=axes[0], label=f"{what} ({spacing})")
    if geometric:
        bar.ax.set_yscale("log")
    axes[0].plot(0, 0, "r+", ms=10, label="centre (α = β = 0)")
    if "trajectory_beta" in ds:  # the training path in the plane of its principal directions
        for ax in axes:
            ax.plot(ds["trajectory_alpha"], ds["trajectory_beta"], "o-", color="tab:red", ms=2.5,
                    lw=1, label="training trajectory")
    axes[0].legend(loc="upper right", fontsize=8)
    prefix = "loss_" if mode is None else f"loss_{mode}_"
    frac = ds.attrs.get(f"{prefix}frac_quasi_convex", np.nan)
    axes[0].set(xlabel="α", ylabel="β")
    axes[0].set_title(f"{what} ({100 * frac:.0f}% of lines quasi-convex"
                      f"{_constant_note(ds, prefix[:-1])})\n{_bn_label(ds, mode)}", fontsize=9)
    if np.isfinite(accuracy.values).any():
        im = axes[1].pcolormesh(a, b, accuracy.transpose("beta", "alpha").values,
                                shading="nearest", cmap="magma", vmin=0, vmax=1)
        fig.colorbar(im, ax=axes[1], label="accuracy")
        axes[1].set(xlabel="α", ylabel="β", title="accuracy")
    else:
        im = axes[1].pcolormesh(a, b, z, shading="nearest", cmap="viridis")
        fig.colorbar(im, ax=axes[1], label=what)
        axes[1].set(xlabel="α", ylabel="β", title=what)


def _loss_figure(ds, path: Path) -> Path:
    loss = ds["loss"]
    what = _loss_name(ds)
    # A BatchNorm network's loss under several modes (dimension bn): one row each.
    modes = [str(m) for m in ds.bn.values] if "bn" in loss.dims else [None]
    if "beta" in loss.dims:
        fig, axes = plt.subplots(len(modes), 2, figsize=(11, 4.6 * len(modes)), squeeze=False,
                                 layout="constrained")
        for row, mode in zip(axes, modes):
            sel = {} if mode is None else {"bn": mode}
            _loss_surface(fig, row, ds, loss.sel(sel), ds["accuracy"].sel(sel), mode)
        fig.suptitle(title(ds, f"{what} surface"), fontsize=10)
    else:
        fig, ax = plt.subplots(figsize=(6.5, 4.4), layout="constrained")
        styles = ("-", "--", ":", "-.")
        for i, mode in enumerate(modes):
            sel = {} if mode is None else {"bn": mode}
            label, colour = _verdict(ds.sel(sel), "loss")
            named = "" if mode is None else f"{mode}, "
            ax.plot(ds.alpha, loss.sel(sel), color=colour, lw=2, ls=styles[i % len(styles)],
                    label=f"loss ({named}{label})")
        ax.set(xlabel="α", ylabel=what)
        if np.isfinite(ds["accuracy"].values).any():
            twin = ax.twinx()
            for i, mode in enumerate(modes):
                acc = ds["accuracy"] if mode is None else ds["accuracy"].sel(bn=mode)
                twin.plot(ds.alpha, acc, color="tab:orange", ls=styles[i % len(styles)], lw=1,
                          label="accuracy" + ("" if mode is None else f" ({mode})"))
            twin.set(ylabel="accuracy", ylim=(0, 1))
            twin.legend(loc="upper right", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
        named = "; ".join(_bn_label(ds, m) for m in modes)
        ax.set_title(title(ds, f"{what} along one direction") + f"\n{named}", fontsize=9)
    return save_figure(fig, path)


def _unit_grid(n: int):
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _activation_figure(ds, path: Path) -> Path:
    act = ds["activation"]
    units = act.unit.values[:MAX_UNITS]
    fig, axes = _unit_grid(len(units))
    if "beta" in act.dims:
        for ax, (i, u) in zip(axes, enumerate(units)):
            z = act.isel(unit=i, anchor=0).transpose("beta", "alpha").values
            ax.contourf(ds.alpha, ds.beta, z, levels=20, cmap="viridis")
            ax.plot(0, 0, "r+", ms=8)
            ax.set_title(f"unit {u} (anchor 0)", fontsize=8)
            ax.set_xlabel("α", fontsize=8)
            ax.set_ylabel("β", fontsize=8)
            ax.tick_params(labelsize=7)
        what = "input-response surfaces (+: the anchor)"
    else:
        seen = set()
        for ax, (i, u) in zip(axes, enumerate(units)):
            for j in range(act.sizes["anchor"]):
                label, colour = _verdict(ds, "activation", unit=i, anchor=j)
                ax.plot(ds.alpha, act.isel(unit=i, anchor=j), color=colour, lw=1,
                        label=label if label not in seen else None)
                seen.add(label)
            ax.axvline(0, color="0.8", lw=0.6, zorder=0)
            ax.set_title(f"unit {u}", fontsize=8)
            ax.set_xlabel("α (step from the anchor)", fontsize=8)
            ax.set_ylabel("activation", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.legend(loc="outside lower center", ncol=5, fontsize=8, frameon=False)
        what = "input-response curves"
    layer = ds.attrs.get("layer", "")
    either = ds.attrs.get("activation_frac_either", np.nan)
    fig.suptitle(title(ds, f"{layer} {what}, {100 * either:.0f}% quasi-convex or -concave"
                           f"{_constant_note(ds, 'activation')}"), fontsize=10)
    return save_figure(fig, path)


def _barrier_figure(ds, path: Path) -> Path:
    present = [v for v in ("loss", "activation") if f"{v}_qcvx_barrier" in ds]
    fig, axes = plt.subplots(1, len(present), figsize=(5.5 * len(present), 3.8), squeeze=False,
                             layout="constrained")
    for ax, var in zip(axes[0], present):
        qcvx = ds[f"{var}_qcvx_barrier"].values.ravel()
        qccv = ds[f"{var}_qccv_barrier"].values.ravel()
        total = qcvx.size
        if f"{var}_constant" in ds:  # constant curves score 0 by definition: not shapes
            shaped = ~ds[f"{var}_constant"].values.ravel().astype(bool)
            qcvx, qccv = qcvx[shaped], qccv[shaped]
        bins = np.linspace(0, max(1e-6, np.nanmax(np.r_[qcvx, qccv, 0])), 25)
        ax.hist(qcvx[np.isfinite(qcvx)], bins=bins, alpha=0.6, color="tab:blue",
                label="quasi-convexity barrier")
        ax.hist(qccv[np.isfinite(qccv)], bins=bins, alpha=0.6, color="tab:red",
                label="quasi-concavity barrier")
        constant = f", {total - qcvx.size} constant left out" if qcvx.size < total else ""
        ax.set(xlabel="barrier (fraction of the curve's range)", ylabel="curves",
               title=f"{var}: {total} curves{constant}")
        ax.legend(fontsize=8)
    fig.suptitle(title(ds, "barrier scores"), fontsize=10)
    return save_figure(fig, path)


def plot_slice(ds, out_dir: Path, stem: str) -> list[Path]:
    """Loss figure, activation figure and barrier histograms, whichever apply."""
    paths = []
    if "loss" in ds:
        paths.append(_loss_figure(ds, out_dir / f"{stem}_loss.png"))
    if "activation" in ds:
        paths.append(_activation_figure(ds, out_dir / f"{stem}_activation.png"))
    paths.append(_barrier_figure(ds, out_dir / f"{stem}_barriers.png"))
    return paths
