"""Result conventions: provenance attributes, atomic save, validating load.

Every analysis returns an ``xarray.Dataset`` whose ``attrs["kind"]`` names the
analysis and whose provenance attributes say how it was made:
``landscape_version``, ``created``, ``model``, ``init``, ``bias_scale``,
``dataset``, ``seed``, ``device`` and ``config`` (JSON of every option); a
user's model (``--model PATH.py:FUNCTION``) adds ``model_spec``,
``model_sha256`` (of the file defining the factory) and ``model_args`` (JSON).
Results written by the command line add ``state`` (``random``/``trained``) and
``checkpoint``.

netCDF attributes can hold numbers, strings and arrays only, so
:func:`encode_attrs` turns booleans into 0/1 and ``None``/dicts/lists into JSON
strings (``bias_scale`` of ``None`` — "the init's own" — is stored as the
string ``"default"``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import LandscapeError

KINDS = ("slice", "hessian", "input_hessian", "maxact", "tsne", "sae", "sweep", "blind")
PROVENANCE = ("landscape_version", "created", "model", "init", "bias_scale", "dataset", "seed",
              "device", "config")
ENGINE = "h5netcdf"


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def to_json(value) -> str:
    return json.dumps(value, default=_jsonable, sort_keys=True)


def provenance(model=None, *, dataset: str | None = None, seed: int | None = None,
               device=None, config: dict | None = None, init: str | None = None,
               bias_scale=None) -> dict:
    """The provenance attributes of a result (see the module docstring).

    ``init`` and ``bias_scale`` default to what :func:`landscape.build_model`
    recorded on the model (``model.init``, ``model.bias_scale``)."""
    from . import __version__

    if init is None:
        init = getattr(model, "init", "unknown")
    if bias_scale is None:
        bias_scale = getattr(model, "bias_scale", None)
    if device is None and model is not None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = "cpu"
    return {
        "landscape_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": getattr(model, "name", type(model).__name__ if model is not None else "unknown"),
        "init": init,
        "bias_scale": "default" if bias_scale is None else float(bias_scale),
        "dataset": dataset or "unknown",
        "seed": -1 if seed is None else int(seed),
        "device": str(device or "cpu"),
        "config": to_json(config or {}),
        **({"model_spec": model.model_spec, "model_sha256": model.model_sha256,
            "model_args": to_json(getattr(model, "model_args", {}))}
           if getattr(model, "model_spec", None) else {}),
    }


def encode_attrs(attrs: dict) -> dict:
    """Attributes netCDF can store: bool -> 0/1, None/dict/list -> JSON strings."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, (bool, np.bool_)):
            out[key] = int(value)
        elif value is None or isinstance(value, (dict, list, tuple)):
            out[key] = to_json(value)
        elif isinstance(value, Path):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def config_of(ds: xr.Dataset) -> dict:
    """The ``config`` attribute of a result, decoded from JSON."""
    return json.loads(ds.attrs.get("config", "{}"))


def _encoded(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = encode_attrs(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = encode_attrs(ds[name].attrs)
        if ds[name].dtype == bool:
            # Stored as int8 and decoded back to bool by load().
            ds[name] = ds[name].astype("int8")
            ds[name].attrs["dtype_bool"] = 1
    return ds


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, suffix: str = ".tmp"):
    """Yield a temporary file name beside ``path``; once the block ends, the file
    gets the permissions a plainly created file would (``0666`` less the umask,
    not ``mkstemp``'s ``0600``) and is renamed over ``path``.  On any error it is
    removed and ``path`` is untouched."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: Path, overwrite: bool) -> Path:
    """``path`` if a result may be written there: its folder exists, and the file
    does not or ``overwrite`` is given."""
    if path.exists() and not overwrite:
        raise LandscapeError(f"{str(path)!r} exists; choose another --out or pass --overwrite")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LandscapeError(f"out: folder {str(folder)!r} does not exist")
    from .validate import check_folder_writable

    check_folder_writable(folder, "out")
    return path


def save(ds: xr.Dataset, path, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` (netCDF) atomically.

    The data go to a temporary file in the target folder that is renamed over
    ``path`` only once complete, so a crash never leaves a half-written result;
    the file's permissions follow the umask (:func:`atomic_write`).
    An existing file is an error unless ``overwrite``.
    """
    path = Path(path)
    kind = ds.attrs.get("kind")
    if kind not in KINDS:
        raise LandscapeError(f"save: attrs['kind'] must be one of {', '.join(KINDS)}, got {kind!r}")
    check_writable(path, overwrite)
    with atomic_write(path) as tmp:
        _encoded(ds).to_netcdf(tmp, engine=ENGINE)
    return path


def register_kind(kind: str) -> None:
    """Accept results of ``kind`` in :func:`save` and :func:`load` (a new
    analysis's; :class:`landscape.commands.analysis.Analysis` registers its own)."""
    global KINDS
    if not kind.isidentifier():
        raise LandscapeError(f"kind: expected a name such as 'slice', got {kind!r}")
    if kind not in KINDS:
        KINDS = (*KINDS, kind)


def load(path, kind: str | tuple[str, ...] | None = None) -> xr.Dataset:
    """Read a result written by :func:`save` into memory and check its ``kind``
    (any of :data:`KINDS`, or the given one(s))."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"no such file {str(path)!r}")
    try:
        ds = xr.load_dataset(path, engine=ENGINE)
    except Exception as exc:
        raise LandscapeError(
            f"{str(path)!r} is not a readable netCDF file ({type(exc).__name__})"
        ) from None
    found = ds.attrs.get("kind")
    allowed = KINDS if kind is None else ((kind,) if isinstance(kind, str) else tuple(kind))
    if found not in allowed:
        raise LandscapeError(
            f"{str(path)!r} is not a landscape result of kind {'/'.join(allowed)} (kind={found!r})"
        )
    for name in list(ds.variables):
        if ds[name].attrs.pop("dtype_bool", 0):
            ds[name] = ds[name].astype(bool)
    return ds


# What each BatchNorm mode (attribute ``bn``) makes of a loss surface: summaries and
# figure titles name it.
BN_MEANINGS = {
    "eval": "stored running statistics, frozen over the plane",
    "recompute": "the data's statistics at the centre, frozen over the plane",
    "batch": "each point's own batch statistics, as in training",
}
