"""What a result's headline numbers are, and the tables that compare them.

Each analysis names its headline variables in its result's attrs
(``headlines``: a JSON list of fnmatch patterns such as ``loss_frac_*``;
:mod:`landscape.commands`).  A sweep keeps them, and :func:`headline_variables`
reads them to give one number per point of the sweep; ``landscape compare`` and
the sweep figures show those.  Results without the attr (written by the API,
or by older versions) get :data:`DEFAULT_HEADLINES`.

This module sits below both :mod:`landscape.sweep` and :mod:`landscape.plot`.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch

import numpy as np
import xarray as xr

from .errors import LandscapeError

SWEEP_DIMS = ("model", "init", "bias_scale", "seed", "state")
# Scalar per-part attrs that become data variables of a combined sweep besides
# every "*frac_*" attr.
HEADLINE_ATTRS = ("negative_mass", "top_eigenvalue", "trace", "index")
# Preferred order of the headline numbers; any other matching variable follows them.
# The shape fractions count only curves that are not constant; the fraction of
# constant curves stands beside them.
ORDER = ("loss_frac_quasi_convex", "loss_frac_quasi_concave", "loss_frac_constant",
         "activation_frac_quasi_convex", "activation_frac_quasi_concave",
         "activation_frac_either", "activation_frac_constant", "negative_mass",
         "top_eigenvalue", "blind_accuracy", "blind_auroc")
# Headlines of a result that names none: every analysis's.
DEFAULT_HEADLINES = ("loss_frac_*", "loss_*_frac_*", "activation_frac_*", "negative_mass",
                     "top_eigenvalue", "blind_accuracy", "blind_auroc", "rho", "p_hit",
                     "n_maxima", "fvu", "dead_frac", "loss_recovered_mean", "kl",
                     "interp_auroc", "token_entropy", "label_entropy")
_FRACTION = re.compile(r"frac_(quasi_convex|quasi_concave|either|constant)$")


def is_headline(name: str, value) -> bool:
    """Whether a part's scalar attr ``name`` becomes a variable of a combined sweep."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and ("frac_" in name or name in HEADLINE_ATTRS)


def headline_patterns(ds: xr.Dataset) -> tuple[str, ...]:
    """The patterns in ``ds.attrs["headlines"]``, else :data:`DEFAULT_HEADLINES`."""
    text = ds.attrs.get("headlines")
    if not text:
        return DEFAULT_HEADLINES
    try:
        patterns = json.loads(text)
    except (TypeError, ValueError):
        raise LandscapeError(f"headlines: not a JSON list: {text!r}") from None
    return tuple(str(p) for p in patterns)


def headline_variables(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The headline numbers of a sweep, each over the sweep dims only.

    A variable that is one number per point keeps its name (the convexity
    fractions, ``negative_mass``); one with other dims is averaged over them
    as ``mean_NAME`` (the max-activation ``rho`` over units), or per variant
    as ``NAME[variant]`` for SAE results; ``top_eigenvalue`` is ``eigenvalue``
    maximised over its other dims when the part did not record it."""
    patterns = headline_patterns(ds)

    def wanted(name) -> bool:
        return any(fnmatch(str(name), p) for p in patterns)

    def over_sweep(da: xr.DataArray, how: str = "mean") -> xr.DataArray:
        extra = [d for d in da.dims if d not in SWEEP_DIMS]
        return getattr(da, how)(extra) if extra else da

    names = [n for n in ORDER if n in ds.data_vars and wanted(n)]
    names += sorted(str(n) for n in ds.data_vars if n not in names and wanted(n)
                    and _FRACTION.search(str(n)))
    names += [str(n) for n in ds.data_vars if str(n) not in names and wanted(n)
              and np.issubdtype(ds[n].dtype, np.number)]
    out: dict[str, xr.DataArray] = {}
    for name in names:
        da = ds[name]
        if "variant" in da.dims:
            for variant in ds.variant.values:
                out[f"{name}[{variant}]"] = over_sweep(da.sel(variant=variant))
        elif set(da.dims) <= set(SWEEP_DIMS) or name in ORDER or _FRACTION.search(name):
            out[name] = over_sweep(da)
        else:
            out[f"mean_{name}"] = over_sweep(da)
    if "top_eigenvalue" not in out and wanted("top_eigenvalue") and "eigenvalue" in ds.data_vars:
        out["top_eigenvalue"] = over_sweep(ds["eigenvalue"], "max")
    return out


def _cell(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "—"
    if values.size == 1:
        return f"{values[0]:.3g}"
    return f"{values.mean():.3g} ± {values.std(ddof=1):.2g}"


def compare_table(ds: xr.Dataset, by: str = "bias_scale") -> list[str]:
    """Lines of a plain-text table: for every headline number and every
    combination of the other sweep dims, one row of ``mean ± std`` over seeds
    (sample std) per value of ``by``."""
    if by not in SWEEP_DIMS or by not in ds.dims:
        raise LandscapeError(f"by: unknown value {by!r}; choose one of {', '.join(SWEEP_DIMS)}")
    variables = headline_variables(ds)
    if not variables:
        raise LandscapeError("compare: no headline numbers (convexity fractions, negative mass, "
                             "eigenvalues) in these results")
    rest = [d for d in SWEEP_DIMS if d not in (by, "seed")]
    labels = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in ds[by].values]
    width = max(14, *(len(x) for x in labels))
    head = "  ".join(f"{d:>9s}" for d in rest)
    lines = []
    for name, da in variables.items():
        lines.append(f"{name} (mean ± std over seeds) by {by}")
        lines.append(f"{head}  " + "  ".join(f"{x:>{width}s}" for x in labels))
        order = [*rest, by] + (["seed"] if by != "seed" else [])
        stacked = da.transpose(*order).stack(row=rest) if rest else da
        rows = stacked.row.values if rest else [()]
        for row in rows:
            sel = stacked.sel(row=row) if rest else stacked
            key = row if isinstance(row, tuple) else (row,)
            cells = [_cell(np.asarray(sel.isel({by: i}).values, dtype=float).ravel())
                     for i in range(ds.sizes[by])]
            left = "  ".join(f"{(f'{k:g}' if isinstance(k, float) else str(k)):>9s}" for k in key)
            lines.append(f"{left}  " + "  ".join(f"{c:>{width}s}" for c in cells))
        lines.append("")
    return lines[:-1]
