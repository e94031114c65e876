"""Max-activation metrics beside the geometry of the same units (input-slice
quasi-convexity, input-Hessian statistics), and a random against a trained network."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import LandscapeError
from .metrics import METRICS

# ----------------------------------------------------------------------------- relation

def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return np.nan, np.nan
    res = spearmanr(a[ok], b[ok])
    return float(res.statistic), float(res.pvalue)


def geometry_of(slice_ds: xr.Dataset | None = None,
                input_hessian_ds: xr.Dataset | None = None) -> xr.Dataset:
    """Per-unit geometry: the fraction of a unit's input-slice curves that are
    quasi-convex (quasi-concave) and their mean barrier (``slice_*``), over the curves
    that are not constant (a flat curve passes every test and says nothing of the
    unit's shape), with the fraction of constant curves beside them
    (``slice_frac_constant``; a unit whose curves are all flat gets NaN for the
    others); the mean over anchors of the input Hessian's negative mass and top
    eigenvalue (``hessian_*``)."""
    parts = {}
    if slice_ds is not None:
        if "activation_quasi_convex" not in slice_ds:
            raise LandscapeError("slice_ds: needs input-slice scores (activation_quasi_convex)")
        extra = [d for d in slice_ds["activation_quasi_convex"].dims if d != "unit"]
        if "activation_constant" in slice_ds:
            flat = slice_ds["activation_constant"].astype(bool)
        else:
            flat = xr.zeros_like(slice_ds["activation_quasi_convex"], dtype=bool)
        for name, var in (("slice_quasi_convex", "activation_quasi_convex"),
                          ("slice_quasi_concave", "activation_quasi_concave"),
                          ("slice_qcvx_barrier", "activation_qcvx_barrier")):
            parts[name] = slice_ds[var].astype(float).where(~flat).mean(extra)
        parts["slice_frac_constant"] = flat.astype(float).mean(extra)
    if input_hessian_ds is not None:
        hess = input_hessian_ds
        parts["hessian_negative_mass"] = hess["negative_mass"].mean("anchor")
        parts["hessian_top_eigenvalue"] = hess["eigenvalue"].max("eig").mean("anchor")
    return xr.Dataset(parts)


def relate(maxact_ds: xr.Dataset, slice_ds: xr.Dataset | None = None,
           input_hessian_ds: xr.Dataset | None = None) -> xr.Dataset:
    """``maxact_ds`` with each unit's geometry beside its metrics (variables
    ``geom_<name>(unit)``, see :func:`geometry_of`) and the Spearman rank
    correlations across units ``spearman(metric, geometry)``, ``spearman_p``.
    Units are matched by their index; units missing from a geometry get NaN."""
    geo = geometry_of(slice_ds, input_hessian_ds)
    if not geo.data_vars:
        raise LandscapeError("relate: give slice_ds and/or input_hessian_ds")
    geo = geo.reindex(unit=maxact_ds.unit.values)
    out = maxact_ds.copy()
    names = list(geo.data_vars)
    rho = np.full((len(METRICS), len(names)), np.nan)
    pval = np.full_like(rho, np.nan)
    for j, name in enumerate(names):
        out[f"geom_{name}"] = ("unit", geo[name].values.astype(float))
        for i, metric in enumerate(METRICS):
            rho[i, j], pval[i, j] = _spearman(out[metric].values.astype(float),
                                              geo[name].values.astype(float))
    out = out.assign_coords(metric=list(METRICS), geometry=names)
    out["spearman"] = (("metric", "geometry"), rho,
                       {"long_name": "Spearman rank correlation across units"})
    out["spearman_p"] = (("metric", "geometry"), pval)
    return out


def compare_states(random_ds: xr.Dataset, trained_ds: xr.Dataset) -> xr.Dataset:
    """Per metric, the Spearman rank correlation across units between a random and a
    trained network's ``maxact`` results (units matched by index), and each
    state's mean.  Returns a Dataset of kind ``maxact`` with dims ``metric``
    and ``state`` (``random``, ``trained``)."""
    common = np.intersect1d(random_ds.unit.values, trained_ds.unit.values)
    if len(common) < 3:
        raise LandscapeError(f"compare_states: need >= 3 common units, got {len(common)}")
    a, b = random_ds.sel(unit=common), trained_ds.sel(unit=common)
    rho, pval, means = [], [], []
    for metric in METRICS:
        r, p = _spearman(a[metric].values.astype(float), b[metric].values.astype(float))
        rho.append(r)
        pval.append(p)
        means.append([float(np.nanmean(a[metric])), float(np.nanmean(b[metric]))])
    ds = xr.Dataset(
        {"spearman": ("metric", np.asarray(rho)), "spearman_p": ("metric", np.asarray(pval)),
         "mean": (("metric", "state"), np.asarray(means))},
        coords={"metric": list(METRICS), "state": ["random", "trained"], "n_units": len(common)},
    )
    ds.attrs.update({k: v for k, v in trained_ds.attrs.items()})
    ds.attrs["kind"] = "maxact"
    ds.attrs["what"] = "compare_states"
    return ds
