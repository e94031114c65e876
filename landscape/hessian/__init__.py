"""Hessian spectra of the loss over parameters and of units over their input.

One algorithm per module, each citing its source:

``hvp``      exact Hessian-vector products (:class:`LossHessian`, :class:`InputHessian`)
``lanczos``  top-/bottom-k eigenpairs by block Lanczos with full reorthogonalisation
``slq``      spectral density and its masses by stochastic Lanczos quadrature
``hutchpp``  trace by Hutch++
``dense``    the exact path for small operators: the dense matrix and ``eigh``

The public functions assemble them into results (``xarray.Dataset``):

* :func:`hessian_spectrum` — ``kind="hessian"``;
* :func:`input_hessian_spectrum` — ``kind="input_hessian"``, with leading
  dimensions ``unit`` and ``anchor``;
* :func:`top_eigenvectors` — the principal directions used by
  ``landscape slice --directions hessian``.

Variables: ``eigenvalue(eig)`` sorted descending, with the coordinate
``which(eig)`` (``"top"``/``"bottom"``); ``residual(eig)`` (``‖Hy − θy‖`` of
the returned vector, from fresh products); ``converged(eig)``; ``density(lam)``
when asked; ``trace``, ``trace_stderr``, ``negative_mass``, ``zero_mass``,
``positive_mass`` (the density's mass below ``−ε``, within ``±ε`` and above
``ε``, ``ε = zero_tol ×`` the spectral range; NaN when not asked);
``ratio_min_max = |λmin / λmax|`` (Li et al. 2018; NaN unless both ends were
asked); ``n_hvp`` (products with the Hessian, also an attribute).  The
attribute ``method`` says which path computed them: ``"dense"`` (every value
exact up to rounding, the density and masses those of the exact eigenvalues at
the same ``σ``, the trace ``Σ λ``) or ``"lanczos"`` (Lanczos, SLQ, Hutch++);
``method="auto"`` picks by the crossover of :func:`.dense.choose_method`.

Every buffer is sized against the memory budget ``max_memory`` (see
:mod:`landscape.memory`): the Lanczos basis is allocated once, SLQ runs go in
as many sequential groups as needed, and work whose smallest unit does not fit
is refused before it starts, with the size it needs.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._heap import hand_back, reusing_freed_memory
from ..errors import LandscapeError
from ..models import resolve_layer, select_units
from ..progress import start as start_progress
from ..results import provenance
from ..view import check_per_sample, model_view, untouched
from .dense import choose_method, dense_eigh, dense_ends, iterative_products
from .hutchpp import TraceEstimate, hutchpp
from .hvp import DenseOperator, HessianOperator, InputHessian, LossHessian
from .lanczos import LanczosResult, lanczos
from .slq import (
    Quadrature,
    default_grid,
    default_sigma,
    negative_mass,
    slq,
    spectral_density,
    spectral_masses,
    spectral_range,
)

ZERO_TOL = 0.03  # ε of the zero mass, as a fraction of the spectral range
MASSES = ("negative_mass", "zero_mass", "positive_mass")

__all__ = [
    "hessian_spectrum", "input_hessian_spectrum", "top_eigenvectors",
    "LossHessian", "InputHessian", "DenseOperator", "HessianOperator",
    "lanczos", "slq", "hutchpp", "spectral_density", "spectral_masses", "negative_mass",
]


def _check(top_k: int, bottom_k: int, density: bool, trace: bool,
           zero_tol: float = ZERO_TOL) -> None:
    if top_k < 0 or bottom_k < 0:
        raise LandscapeError(
            f"top_k, bottom_k: must be >= 0, got top_k={top_k}, bottom_k={bottom_k}")
    if top_k + bottom_k == 0 and not density and not trace:
        raise LandscapeError("nothing to compute: ask for top_k/bottom_k > 0, density or trace")
    if not 0 <= zero_tol < 0.5:
        raise LandscapeError(f"zero_tol: must be in [0, 0.5), got {zero_tol}")


def _analyse(op: HessianOperator, top_k: int, bottom_k: int, density: bool, trace: bool,
             tol: float, max_steps: int | None, density_runs: int, density_steps: int,
             trace_probes: int, seed: int, block_size: int | None, max_memory,
             method: str = "lanczos"):
    """Run the requested estimators on one operator, one after the other (each
    frees its buffers before the next starts); ``method="dense"``: all of them
    from the dense matrix's eigenvalues."""
    if method == "dense":
        values, vectors, H = dense_eigh(op)
        eig = dense_ends(values, vectors, H, top_k, bottom_k) if top_k + bottom_k else None
        del vectors, H
        quad = Quadrature([values], [np.full(len(values), 1 / len(values))], 0, 0) \
            if density else None
        return eig, quad, TraceEstimate(float(values.sum()), 0.0, 0) if trace else None
    eig = lanczos(op, top_k, bottom_k, tol=tol, max_steps=max_steps, seed=seed,
                  eigenvectors=False, block_size=block_size, max_memory=max_memory) \
        if top_k + bottom_k else None
    hand_back()  # the freed basis must not stay resident beside the next one
    quad = slq(op, n_runs=density_runs, steps=density_steps, seed=seed + 1,
               max_memory=max_memory) if density else None
    hand_back()
    tr = hutchpp(op, n_probes=trace_probes, seed=seed + 2, max_memory=max_memory) \
        if trace else None
    return eig, quad, tr


def _scalars(eig: LanczosResult | None, tr: TraceEstimate | None,
             top_k: int, bottom_k: int) -> dict[str, float]:
    ratio = np.nan
    if eig is not None and top_k and bottom_k:
        lmax, lmin = eig.eigenvalues.max(), eig.eigenvalues.min()
        ratio = abs(lmin / lmax) if lmax != 0 else np.nan
    return {
        "trace": tr.trace if tr else np.nan,
        "trace_stderr": tr.stderr if tr else np.nan,
        "ratio_min_max": ratio,
    }


def _resolution(quads: list[Quadrature], lam, sigma: float | None, zero_tol: float):
    """The grid, the broadening σ and the zero tolerance ε shared by every
    density of one result (from the Ritz values of all its quadratures)."""
    nodes = np.concatenate([q.all()[0] for q in quads])
    if sigma is None:
        sigma = default_sigma(nodes)
    if not sigma > 0:
        raise LandscapeError(f"sigma: must be > 0, got {sigma}")
    if lam is None:
        lam = default_grid(nodes, sigma)
    elif isinstance(lam, int):
        lam = default_grid(nodes, sigma, num=lam)
    return np.asarray(lam, dtype=float), float(sigma), zero_tol * spectral_range(nodes)


def _eig_coords(top_k: int, bottom_k: int) -> dict:
    which = np.array(["top"] * top_k + ["bottom"] * bottom_k, dtype=str)
    return {"eig": np.arange(top_k + bottom_k), "which": ("eig", which)}


def _method(method: str, dim: int, device, top_k: int, bottom_k: int, density: bool,
            trace: bool, density_runs: int, density_steps: int, trace_probes: int,
            max_memory) -> str:
    planned = iterative_products(top_k, bottom_k, density, trace, density_runs, density_steps,
                                 trace_probes)
    return choose_method(method, dim, planned, device, max_memory)


def _float64(model: nn.Module) -> nn.Module:
    """A float64 copy for the dense path (small by construction), or the model itself."""
    params = list(model.parameters())
    if not params or params[0].dtype == torch.float64:
        return model
    return copy.deepcopy(model).double()


def _blocks(eig: LanczosResult | None) -> str:
    """The block size of each Lanczos run, e.g. ``"2"`` or ``"2,4"`` (a widened restart)."""
    return ",".join(str(p) for p, _ in eig.runs) if eig is not None and eig.runs else ""


def _data_name(dataset) -> str | None:
    return None if dataset is None else str(dataset)


def _parameter_bytes(model: nn.Module, *args, **kwargs) -> int:
    """Bytes of one vector over the model's parameters (the estimators' block)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


@untouched
@reusing_freed_memory(block_bytes=_parameter_bytes)
def hessian_spectrum(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                     top_k: int = 5, bottom_k: int = 0, density: bool = False,
                     trace: bool = False, tol: float = 1e-4, *, max_steps: int | None = None,
                     batch_size: int | None = None, engine: str = "auto", bn: str = "auto",
                     density_runs: int = 8, density_steps: int = 80, lam=None,
                     sigma: float | None = None, zero_tol: float = ZERO_TOL,
                     trace_probes: int = 99, seed: int = 0, chunk_size: int | None = 8,
                     block_size: int | None = None, max_memory=None, method: str = "auto",
                     dataset: str | None = None, loss_fn=None, progress=None) -> xr.Dataset:
    """The spectrum of ``H = ∇²_θ L`` of the mean loss over ``(x, y)``.

    ``top_k``/``bottom_k`` extreme eigenvalues by Lanczos (stopping at relative
    residual ``tol``, at most ``max_steps`` products); ``density``: SLQ with
    ``density_runs`` × ``density_steps`` on the grid ``lam`` (an array, a point
    count, or ``None`` for 501 points around the Ritz values), broadened by
    ``sigma`` (default 1 % of the spectral range), with its negative, zero and
    positive masses split at ``±zero_tol ×`` the spectral range; ``trace``:
    Hutch++ with ``trace_probes`` products.  ``block_size``: Lanczos block (the
    largest multiplicity resolved; default 2, widened only where a converged
    cluster may hide copies, see :mod:`.lanczos`).  ``method``: ``"dense"``
    (the dense Hessian in float64 and ``eigh``: exact values, trace, density
    and masses, ``n_params`` products), ``"lanczos"`` (the iterative
    estimators) or ``"auto"`` (dense below the crossover, see
    :func:`.dense.choose_method`).
    ``max_memory``: the memory budget (bytes or ``"6GB"``; default
    :func:`landscape.memory.memory_budget`).  ``batch_size``, ``engine``, ``bn``,
    ``chunk_size`` and ``loss_fn`` (a name of :mod:`landscape.losses` or
    ``loss_fn(output, target) -> scalar mean``; default cross-entropy, MSE for an
    autoencoder) are passed to :class:`LossHessian`.  ``progress``: a factory
    ``(total, description) -> bar`` (tqdm fits), advanced by every Hessian-vector
    product.  Returns a Dataset of kind ``"hessian"`` (see the module docstring).
    """
    _check(top_k, bottom_k, density, trace, zero_tol)
    trainable = [p for p in model.parameters() if p.requires_grad]
    device = trainable[0].device if trainable else None
    chosen = _method(method, sum(p.numel() for p in trainable), device, top_k, bottom_k,
                     density, trace, density_runs, density_steps, trace_probes, max_memory)
    op = LossHessian(_float64(model) if chosen == "dense" else model, x, y,
                     batch_size=batch_size, engine=engine, bn=bn, chunk_size=chunk_size,
                     loss_fn=loss_fn)
    bar = start_progress(progress, None, "hessian (products)")
    op.on_products = bar.update
    try:
        eig, quad, tr = _analyse(op, top_k, bottom_k, density, trace, tol, max_steps,
                                 density_runs, density_steps, trace_probes, seed, block_size,
                                 max_memory, chosen)
    finally:
        bar.close()
    op.release()
    data = {
        "eigenvalue": ("eig", eig.eigenvalues if eig else np.zeros(0)),
        "residual": ("eig", eig.residuals if eig else np.zeros(0)),
        "converged": ("eig", eig.converged.astype(bool) if eig else np.zeros(0, bool)),
    }
    for name, value in _scalars(eig, tr, top_k, bottom_k).items():
        data[name] = ((), value)
    for name in MASSES:
        data[name] = ((), np.nan)
    data["n_hvp"] = ((), op.n_products)
    coords = _eig_coords(top_k, bottom_k)
    config = dict(top_k=top_k, bottom_k=bottom_k, density=density, trace=trace, tol=tol,
                  max_steps=max_steps, batch_size=batch_size, engine=op.engine, bn=op.bn_mode,
                  density_runs=density_runs, density_steps=density_steps, sigma=sigma,
                  lam=None if lam is None else np.asarray(lam).tolist(), trace_probes=trace_probes,
                  seed=seed, chunk_size=chunk_size, zero_tol=zero_tol, block_size=block_size,
                  max_memory=max_memory, n_samples=len(x), loss=op.objective.name,
                  method=method)
    attrs = provenance(model, dataset=_data_name(dataset), seed=seed, config=config)
    attrs.update(kind="hessian", n_hvp=int(op.n_products), n_params=int(op.dim), bn=op.bn_mode,
                 method=chosen, lanczos_blocks=_blocks(eig),
                 loss_function=op.objective.name,
                 lanczos_steps=sum(n for _, n in eig.runs) if eig else 0, tol=float(tol),
                 block_size=int(eig.block_size) if eig else 0, zero_tol=float(zero_tol))
    if quad is not None:
        grid, s, eps = _resolution([quad], lam, sigma, zero_tol)
        data["density"] = ("lam", spectral_density(*quad.all(), grid, s))
        for name, value in zip(MASSES, spectral_masses(*quad.all(), s, eps), strict=True):
            data[name] = ((), value)
        coords["lam"] = grid
        attrs.update(sigma=s, zero_eps=eps, density_groups=int(quad.n_groups))
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    _describe(ds)
    return ds


@untouched
@reusing_freed_memory
def input_hessian_spectrum(model: nn.Module, layer: str | None = None, units=8,
                           anchors: torch.Tensor | None = None, top_k: int = 5, bottom_k: int = 0,
                           density: bool = False, trace: bool = False, tol: float = 1e-4, *,
                           max_steps: int | None = None, engine: str = "auto",
                           density_runs: int = 8, density_steps: int = 80, lam=None,
                           sigma: float | None = None, zero_tol: float = ZERO_TOL,
                           trace_probes: int = 99, seed: int = 0, chunk_size: int | None = 8,
                           block_size: int | None = None, max_memory=None,
                           method: str = "auto", bn: str = "auto", data: torch.Tensor | None = None,
                           batch_size: int | None = None,
                           dataset: str | None = None, progress=None) -> xr.Dataset:
    """The spectrum of ``∇²_x a_u(x)`` for each unit ``u`` of ``layer`` at each anchor.

    ``layer``: a module name (``None``: the model's default layer); ``units``: an
    int N (the first N units) or a list of indices; ``anchors``: inputs of shape
    ``(A, *input shape)`` (a single input is taken as ``A = 1`` when the model
    has an ``in_shape``).  The other
    options are those of :func:`hessian_spectrum`; the density and the masses of
    every unit and anchor share one grid ``lam``, one broadening ``sigma`` and one
    ``ε`` (from the Ritz values of all of them); ``method`` picks the dense
    path by the input dimension (in the model's dtype).  Returns a
    Dataset of kind ``"input_hessian"`` with leading dimensions ``unit``
    (coordinate: unit index) and ``anchor`` (``0..A−1``).
    """
    _check(top_k, bottom_k, density, trace, zero_tol)
    if anchors is None:
        raise LandscapeError("anchors: give the input points (A, C, H, W) to take the Hessian at")
    check_per_sample(bn, "input Hessians")
    layer = resolve_layer(model, layer)
    # The input shape: the model's own when it has one, else the anchors'.
    shape = tuple(getattr(model, "in_shape", anchors.shape[1:]))
    if tuple(anchors.shape) == shape:
        anchors = anchors.unsqueeze(0)
    model = model_view(model, bn, anchors if data is None else data, batch_size)
    if tuple(anchors.shape[1:]) != shape or len(anchors) < 1:
        raise LandscapeError(f"anchors: expected shape (A, {', '.join(map(str, shape))}), "
                             f"got {tuple(anchors.shape)}")
    chosen = select_units(model, layer, units, anchors)
    path = _method(method, int(np.prod(shape)), anchors.device, top_k, bottom_k, density, trace,
                   density_runs, density_steps, trace_probes, max_memory)
    U, A, k = len(chosen), len(anchors), top_k + bottom_k
    values = np.full((U, A, k), np.nan)
    residuals = np.full((U, A, k), np.nan)
    converged = np.zeros((U, A, k), dtype=bool)
    scalars = {name: np.full((U, A), np.nan)
               for name in ("trace", "trace_stderr", "ratio_min_max") + MASSES}
    n_hvp = np.zeros((U, A), dtype=np.int64)
    quads: dict[tuple[int, int], Quadrature] = {}
    engine_used = engine
    bar = start_progress(progress, U * A, "input hessian (unit x anchor)")
    for i, unit in enumerate(chosen):
        for a in range(A):
            bar.update(1)
            op = InputHessian(model, layer, unit, anchors[a], engine=engine, chunk_size=chunk_size)
            engine_used = op.engine
            eig, quad, tr = _analyse(op, top_k, bottom_k, density, trace, tol, max_steps,
                                     density_runs, density_steps, trace_probes, seed,
                                     block_size, max_memory, path)
            op.release()
            if eig is not None:
                values[i, a] = eig.eigenvalues
                residuals[i, a] = eig.residuals
                converged[i, a] = eig.converged
            for name, value in _scalars(eig, tr, top_k, bottom_k).items():
                scalars[name][i, a] = value
            if quad is not None:
                quads[i, a] = quad
            n_hvp[i, a] = op.n_products
    bar.close()
    dims = ("unit", "anchor")
    data = {
        "eigenvalue": (dims + ("eig",), values),
        "residual": (dims + ("eig",), residuals),
        "converged": (dims + ("eig",), converged),
        **{name: (dims, value) for name, value in scalars.items()},
        "n_hvp": (dims, n_hvp),
    }
    coords = {"unit": np.asarray(chosen), "anchor": np.arange(A), **_eig_coords(top_k, bottom_k)}
    config = dict(layer=layer, units=list(chosen), n_anchors=A, top_k=top_k, bottom_k=bottom_k,
                  density=density, trace=trace, tol=tol, max_steps=max_steps, engine=engine_used,
                  density_runs=density_runs, density_steps=density_steps, sigma=sigma,
                  lam=None if lam is None else np.asarray(lam).tolist(), trace_probes=trace_probes,
                  seed=seed, chunk_size=chunk_size, zero_tol=zero_tol, block_size=block_size,
                  max_memory=max_memory, bn=model.bn_mode, batch_size=batch_size, method=method)
    attrs = provenance(model, dataset=_data_name(dataset), seed=seed, config=config)
    attrs.update(kind="input_hessian", layer=layer, bn=model.bn_mode, n_hvp=int(n_hvp.sum()),
                 method=path,
                 n_inputs=int(np.prod(shape)), tol=float(tol), zero_tol=float(zero_tol))
    if quads:
        grid, s, eps = _resolution(list(quads.values()), lam, sigma, zero_tol)
        dens = np.zeros((U, A, len(grid)))
        for (i, a), quad in quads.items():
            dens[i, a] = spectral_density(*quad.all(), grid, s)
            for name, value in zip(MASSES, spectral_masses(*quad.all(), s, eps), strict=True):
                scalars[name][i, a] = value
        data["density"] = (dims + ("lam",), dens)
        coords["lam"] = grid
        attrs.update(sigma=s, zero_eps=eps)
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    _describe(ds)
    return ds


def _describe(ds: xr.Dataset) -> None:
    """Units and meanings as variable attributes (they travel into the netCDF file)."""
    text = {
        "eigenvalue": "Ritz values of the Hessian, descending",
        "residual": "explicit residual norm ||H y - theta y|| of the Ritz vector",
        "converged": "Krylov estimate and explicit residual both <= tol * max|theta|",
        "density": "spectral density (SLQ, Gaussian-broadened), integrates to 1 over lam",
        "trace": "Hutch++ trace estimate",
        "trace_stderr": "standard error of the trace (Hutchinson part)",
        "negative_mass": "mass of the spectral density below -zero_eps (SLQ, broadened by sigma)",
        "zero_mass": "mass of the spectral density within +-zero_eps",
        "positive_mass": "mass of the spectral density above +zero_eps",
        "ratio_min_max": "|lambda_min / lambda_max|",
        "n_hvp": "Hessian-vector products used",
    }
    for name, desc in text.items():
        if name in ds:
            ds[name].attrs["long_name"] = desc


@untouched
@reusing_freed_memory(block_bytes=_parameter_bytes)
def top_eigenvectors(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, k: int = 2,
                     tol: float = 1e-4, **kw) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """The ``k`` largest eigenvalues of the loss Hessian and their unit eigenvectors.

    Returns ``(eigenvalues, directions)``: ``eigenvalues`` a float64 tensor of shape
    ``(k,)`` (descending) and ``directions`` a list of ``k`` dicts mapping every
    name of ``model.named_parameters()`` to a tensor of that parameter's shape
    (zero for frozen parameters); each direction has norm 1 over all parameters.
    Eigenvalues repeated among the ``k`` come out as often as they are repeated
    (block Lanczos from a block of 2, widened where a converged cluster may hide
    copies, unless ``block_size`` fixes it).  ``kw``: ``max_steps``, ``min_steps``, ``seed``, ``block_size``,
    ``max_memory`` (for :func:`lanczos`) and ``batch_size``, ``engine``, ``bn``, ``chunk_size``,
    ``loss_fn`` (for :class:`LossHessian`).
    """
    lanczos_kw = {key: kw.pop(key) for key in ("max_steps", "min_steps", "seed", "block_size",
                                               "max_memory") if key in kw}
    kw.setdefault("bn", "auto")
    op = LossHessian(model, x, y, **kw)
    res = lanczos(op, top_k=k, bottom_k=0, tol=tol, **lanczos_kw)
    op.release()
    directions = []
    for v in res.eigenvectors:
        parts = op.to_parameters(v)
        directions.append({name: parts[name].clone() if name in parts else torch.zeros_like(p)
                           for name, p in model.named_parameters()})
    return torch.as_tensor(res.eigenvalues.copy()), directions


def dense_spectrum(op: HessianOperator) -> np.ndarray:
    """All eigenvalues of a small operator, ascending (``dim`` products)."""
    H = op.dense()
    return torch.linalg.eigvalsh((H + H.T) / 2).double().cpu().numpy()

