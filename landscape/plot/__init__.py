"""Figures drawn from saved results only: ``plot_file(path)`` reads a netCDF file
written by :func:`landscape.save` and writes PNG files named after it, by default
into a folder named after it (``r.nc`` -> ``r_figures/r_loss.png``, ...)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LandscapeError
from ..results import load
from ..validate import check_folder_writable


def default_folder(path) -> Path:
    """Where the figures of ``path`` go by default: ``STEM_figures/`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}_figures")


def plot_file(path, out_dir=None) -> list[Path]:
    """Draw every figure for the result in ``path`` into ``out_dir`` (default:
    :func:`default_folder`); returns the PNG paths."""
    path = Path(path)
    ds = load(path)
    out = Path(out_dir) if out_dir is not None else default_folder(path)
    if out.exists() and not out.is_dir():
        raise LandscapeError(f"out: {str(out)!r} is not a folder")
    check_folder_writable(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    kind = ds.attrs["kind"]
    stem = path.stem
    if kind == "slice":
        from .slices import plot_slice

        return plot_slice(ds, out, stem)
    if kind in ("hessian", "input_hessian"):
        from .spectra import plot_hessian

        return plot_hessian(ds, out, stem)
    if kind == "sweep":
        from .sweeps import plot_sweep

        return plot_sweep(ds, out, stem)
    if kind in ("maxact", "tsne"):
        from .units import plot_maxact, plot_tsne

        return (plot_maxact if kind == "maxact" else plot_tsne)(ds, out, stem)
    if kind == "sae":
        from .sae import plot_sae

        return plot_sae(ds, out, stem)
    raise LandscapeError(f"plot: results of kind {kind!r} have no figures yet")
