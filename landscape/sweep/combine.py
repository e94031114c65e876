"""Combining the parts of a sweep into one Dataset of kind ``sweep`` along
``model, init, bias_scale, seed, state`` (its headline numbers and tables:
:mod:`landscape.summary`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from ..errors import LandscapeError
from ..results import PROVENANCE, load, to_json
from ..summary import SWEEP_DIMS, is_headline

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


def _prepare(ds: xr.Dataset, coords: dict) -> xr.Dataset:
    """A part as a point of the sweep: headline attrs as variables, bools as 0/1
    floats (a missing point is NaN), sweep coordinates as scalars."""
    ds = ds.copy()
    for name, value in list(ds.attrs.items()):
        if is_headline(name, value):
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
