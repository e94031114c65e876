"""Combining the parts of a sweep into one Dataset of kind ``sweep`` along
``model, init, bias_scale, seed, state``, and its headline numbers and tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import LandscapeError
from ..results import PROVENANCE, load, to_json
from .plan import SWEEP_DIMS

# Scalar per-part attrs that become data variables of the combined Dataset besides
# every "*frac_*" attr.
HEADLINE_ATTRS = ("negative_mass", "top_eigenvalue", "trace", "index")
# Per-part attrs that differ between parts by construction (coordinates, time stamps).
VOLATILE_ATTRS = ("created", "config", "checkpoint", "sweep_task", "state", "out")


# ----------------------------------------------------------------------------- combining

def _coordinates(ds: xr.Dataset, path) -> dict:
    a = ds.attrs
    bias = a.get("bias_scale", "default")
    if isinstance(bias, str):
        try:
            bias = float(bias)
        except ValueError:
            raise LandscapeError(f"{str(path)!r}: bias_scale is the init's default; a sweep needs "
                                 "numeric bias scales (pass --bias-scale)") from None
    state = a.get("state") or ("trained" if a.get("checkpoint") else "random")
    return {"model": str(a.get("model", "unknown")), "init": str(a.get("init", "unknown")),
            "bias_scale": float(bias), "seed": int(a.get("seed", -1)), "state": str(state)}


def _is_headline(name: str, value) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and ("frac_" in name or name in HEADLINE_ATTRS)


def _prepare(ds: xr.Dataset, coords: dict) -> xr.Dataset:
    """A part as a point of the sweep: headline attrs as variables, bools as 0/1
    floats (a missing point is NaN), sweep coordinates as scalars."""
    ds = ds.copy()
    for name, value in list(ds.attrs.items()):
        if _is_headline(name, value):
            ds[name] = ((), float(value))
            del ds.attrs[name]
    for name in list(ds.data_vars):
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype("float64")
    for name in ds.variables:
        # The file's on-disk dtypes would turn the NaN of a missing point into garbage.
        ds[name].encoding = {}
    for name in VOLATILE_ATTRS:
        ds.attrs.pop(name, None)
    return ds.assign_coords(coords)


def combine(paths: Sequence, tasks: Sequence[dict] | None = None,
            failures: dict[str, str] | None = None, analysis: str | None = None) -> xr.Dataset:
    """One Dataset of kind ``sweep`` from results of one analysis, placed along
    ``model, init, bias_scale, seed, state`` by their attrs.

    Points without a part (failed tasks) hold NaN.  Boolean verdicts become 0/1
    floats so that their mean over a dim is a fraction.  Attrs: those every part
    shares, ``analysis``, ``tasks`` (JSON list of each part's coordinates and
    file) and ``failures`` (JSON list of ``{"task", "error"}``).
    """
    if not paths:
        raise LandscapeError("combine: no results to combine")
    parts, coords_seen, records = [], {}, []
    kinds = set()
    for path in paths:
        ds = load(path)
        if ds.attrs["kind"] == "sweep":
            raise LandscapeError(f"combine: {str(path)!r} is a sweep already")
        kinds.add(ds.attrs["kind"])
        coords = _coordinates(ds, path)
        key = tuple(coords[d] for d in SWEEP_DIMS)
        if key in coords_seen:
            raise LandscapeError(f"combine: {str(path)!r} and {coords_seen[key]!r} are the same point "
                                 f"of the sweep ({coords})")
        coords_seen[key] = str(path)
        records.append({**coords, "file": Path(path).name})
        parts.append(_prepare(ds, coords))
    if len(kinds) > 1:
        raise LandscapeError(f"combine: results of different kinds ({', '.join(sorted(kinds))})")
    stacked = xr.concat(parts, dim="task", data_vars="all", coords=list(SWEEP_DIMS),
                        compat="equals", join="outer", combine_attrs="drop_conflicts")
    combined = stacked.set_index(task=list(SWEEP_DIMS)).unstack("task")
    order = [d for d in SWEEP_DIMS]
    for name in combined.data_vars:
        rest = [d for d in combined[name].dims if d not in order]
        combined[name] = combined[name].transpose(*order, *rest)
    combined = combined.transpose(*order, ...)
    attrs = {k: v for k, v in combined.attrs.items() if k not in PROVENANCE or k in ("dataset", "device")}
    attrs["part_kind"] = kinds.pop()
    attrs.update({
        "kind": "sweep",
        "analysis": analysis or attrs["part_kind"],
        "model": ",".join(map(str, combined.model.values)),
        "init": ",".join(map(str, combined.init.values)),
        "bias_scale": ",".join(f"{b:g}" for b in combined.bias_scale.values),
        "seed": -1,
        "tasks": to_json(tasks if tasks is not None else records),
        "failures": to_json([{"task": k, "error": v} for k, v in sorted((failures or {}).items())]),
    })
    from .. import __version__

    attrs["landscape_version"] = __version__
    from datetime import datetime, timezone

    attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attrs["config"] = to_json({"analysis": attrs["analysis"], "parts": len(parts)})
    combined.attrs = attrs
    return combined


def failures_of(ds: xr.Dataset) -> list[dict]:
    """The failed tasks recorded in a sweep's attrs."""
    return json.loads(ds.attrs.get("failures", "[]"))


# ----------------------------------------------------------------------------- headline numbers

# Preferred order of the headline numbers; any other "*_frac_quasi_con*"/"*_frac_either"/
# "*_frac_constant" variable follows them.  The shape fractions count only curves that are
# not constant; the fraction of constant curves stands beside them.
HEADLINES = ("loss_frac_quasi_convex", "loss_frac_quasi_concave", "loss_frac_constant",
             "activation_frac_quasi_convex", "activation_frac_quasi_concave",
             "activation_frac_either", "activation_frac_constant", "negative_mass",
             "top_eigenvalue", "blind_accuracy", "blind_auroc")

MAXACT_HEADLINES = ("rho", "p_hit", "n_maxima")
# SAE results: one headline per variant (trained, init, ...), the mean over layers and latents.
SAE_HEADLINES = ("fvu", "dead_frac", "loss_recovered_mean", "kl", "interp_auroc", "token_entropy",
                 "label_entropy")


def headline_variables(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The headline numbers of a sweep, each over the sweep dims only: the
    convexity fractions (of the curves that are not constant) and the fraction of
    constant curves, ``negative_mass`` (mean over any other dim), the top
    eigenvalue (``eigenvalue`` maximised over its other dims) and the unit means
    of the max-activation ``rho``, ``p_hit``, ``n_maxima``, and for SAE results each
    variant's mean ``fvu``, ``dead_frac``, ``loss_recovered_mean``, ``kl``,
    ``interp_auroc``, ``token_entropy``, ``label_entropy``, whichever are present."""
    out: dict[str, xr.DataArray] = {}

    def over_sweep(da: xr.DataArray, how: str) -> xr.DataArray:
        extra = [d for d in da.dims if d not in SWEEP_DIMS]
        return getattr(da, how)(extra) if extra else da

    names = [n for n in HEADLINES if n in ds.data_vars]
    names += sorted(n for n in ds.data_vars if n not in names and re.search(
        r"frac_(quasi_convex|quasi_concave|either|constant)$", str(n)))
    for name in names:
        out[name] = over_sweep(ds[name], "mean")
    if "top_eigenvalue" not in out and "eigenvalue" in ds.data_vars:
        out["top_eigenvalue"] = over_sweep(ds["eigenvalue"], "max")
    for name in MAXACT_HEADLINES:  # max-activation reliability, averaged over units
        if name in ds.data_vars and np.issubdtype(ds[name].dtype, np.number):
            out[f"mean_{name}"] = over_sweep(ds[name], "mean")
    if "variant" in ds.dims:
        for name in SAE_HEADLINES:
            if name in ds.data_vars:
                for variant in ds.variant.values:
                    out[f"{name}[{variant}]"] = over_sweep(ds[name].sel(variant=variant), "mean")
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
