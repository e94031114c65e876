"""Figures of sweeps: headline numbers against a sweep dimension (the bias scale
by default), a line per init, mean ± std over seeds, random beside trained.

* ``<stem>_convexity.png``: fractions of quasi-convex loss lines and of
  quasi-convex / quasi-concave input-response curves (among the curves that are not
  constant), and the fractions of constant curves (dead or saturated units);
* ``<stem>_hessian.png``: negative spectral mass and top eigenvalue of the Hessian,
  when the sweep holds them;
* ``<stem>_maxact.png``: unit means of the max-activation reliability numbers
  (``rho``, ``p_hit``, ``n_maxima``), when present.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ..errors import LandscapeError
from ..summary import SWEEP_DIMS, headline_variables
from .common import plt, save_figure

CONVEXITY = ("loss_frac_quasi_convex", "loss_frac_constant", "activation_frac_quasi_convex",
             "activation_frac_quasi_concave", "activation_frac_either", "activation_frac_constant")
HESSIAN = ("negative_mass", "top_eigenvalue")
MAXACT = ("mean_rho", "mean_p_hit", "mean_n_maxima")
LABELS = {
    "loss_frac_quasi_convex": "loss lines quasi-convex\n(of the non-constant)",
    "loss_frac_quasi_concave": "loss lines quasi-concave\n(of the non-constant)",
    "loss_frac_constant": "loss lines constant",
    "activation_frac_quasi_convex": "unit curves quasi-convex\n(of the non-constant)",
    "activation_frac_quasi_concave": "unit curves quasi-concave\n(of the non-constant)",
    "activation_frac_either": "unit curves quasi-convex\nor -concave (of the non-constant)",
    "activation_frac_constant": "unit curves constant\n(dead or saturated units)",
    "negative_mass": "Hessian negative mass",
    "top_eigenvalue": "Hessian top eigenvalue",
    "mean_rho": "max-activation rho (unit mean)",
    "mean_p_hit": "max-activation p_hit (unit mean)",
    "mean_n_maxima": "maxima per unit (mean)",
}


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _x_axis(ax, values: np.ndarray, by: str) -> np.ndarray:
    """Numeric sweep values on a symlog axis (the bias scale spans decades and
    includes 0); anything else as categories."""
    if np.issubdtype(values.dtype, np.number):
        x = values.astype(float)
        positive = x[x > 0]
        if positive.size and x.min() >= 0 and x.max() / positive.min() > 20:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xticks(x, [_label(v) for v in values], fontsize=7)
        return x
    ax.set_xticks(np.arange(len(values)), [str(v) for v in values], fontsize=8)
    return np.arange(len(values), dtype=float)


def _panels(ds, variables: dict, names: list[str], by: str, path: Path, what: str) -> Path:
    line_dim = "init" if by != "init" else "model"
    columns = [d for d in SWEEP_DIMS if d not in (by, line_dim, "seed")]
    combos = list(itertools.product(*(ds[d].values for d in columns)))
    fig, axes = plt.subplots(len(names), len(combos), figsize=(3.6 * len(combos), 2.8 * len(names)),
                             squeeze=False, layout="constrained", sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, name in enumerate(names):
        da = variables[name]
        for c, combo in enumerate(combos):
            ax = axes[r, c]
            x = _x_axis(ax, ds[by].values, by)
            for k, line in enumerate(ds[line_dim].values):
                sel = da.sel({**dict(zip(columns, combo)), line_dim: line})
                vals = sel.transpose(by, ...).values.reshape(len(x), -1) if by != "seed" else \
                    sel.values.reshape(len(x), 1)
                with np.errstate(all="ignore"), _quiet():
                    mean = np.nanmean(vals, axis=1)
                    n = np.isfinite(vals).sum(axis=1)
                    std = np.where(n > 1, np.nanstd(vals, axis=1, ddof=1) if vals.shape[1] > 1
                                   else 0.0, 0.0)
                colour = colours[k % len(colours)]
                ax.plot(x, mean, "o-", color=colour, ms=3, lw=1.2, label=f"{line_dim} {line}")
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
            if name.startswith(("loss_frac", "activation_frac")):
                ax.set_ylim(-0.03, 1.03)
            if r == 0:
                ax.set_title(", ".join(f"{d} {_label(v)}" for d, v in zip(columns, combo)), fontsize=9)
            if c == 0:
                ax.set_ylabel(LABELS.get(name, name), fontsize=8)
            if r == len(names) - 1:
                ax.set_xlabel(by.replace("_", " "))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=max(1, len(labels)), fontsize=8,
               frameon=False)
    seeds = ds.sizes.get("seed", 1)
    dataset = ds.attrs.get("dataset", "")
    fig.suptitle(f"{what} against {by.replace('_', ' ')} — mean ± std over {seeds} seed(s)"
                 f"{', ' + dataset if dataset else ''}", fontsize=10)
    return save_figure(fig, path)


class _quiet:
    """Silence numpy's warnings about all-NaN slices (failed tasks)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def plot_sweep(ds, out_dir: Path, stem: str, by: str = "bias_scale") -> list[Path]:
    """The convexity figure and, when present, the Hessian figure of a sweep."""
    if by not in ds.dims:
        raise LandscapeError(f"by: {by!r} is not a dimension of this sweep")
    variables = headline_variables(ds)
    paths = []
    convexity = [n for n in CONVEXITY if n in variables]
    if convexity:
        paths.append(_panels(ds, variables, convexity, by, Path(out_dir) / f"{stem}_convexity.png",
                             "quasi-convexity"))
    hessian = [n for n in HESSIAN if n in variables]
    if hessian:
        paths.append(_panels(ds, variables, hessian, by, Path(out_dir) / f"{stem}_hessian.png",
                             "Hessian"))
    reliability = [n for n in MAXACT if n in variables]
    if reliability:
        paths.append(_panels(ds, variables, reliability, by, Path(out_dir) / f"{stem}_maxact.png",
                             "max-activation reliability"))
    if not paths:
        raise LandscapeError("plot: this sweep holds no convexity fractions, Hessian or "
                             "max-activation numbers")
    return paths
