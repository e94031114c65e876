"""Slices of the loss surface and of units' input-response surfaces.

``loss_slice`` evaluates the mean loss (and accuracy) of ``model`` on ``(x, y)``
at ``θ + α d₁ (+ β d₂)`` for every point of a grid, the picture of
Li et al., *Visualizing the Loss Landscape of Neural Nets* (NeurIPS 2018).
Each grid point's parameters are built as one fused ``θ + C·D`` product; a chunk
of points is evaluated per data batch with ``torch.func.functional_call`` under
``vmap``, or, point by point, in a private copy of the model whose parameters are
overwritten in place; the user's model is never written to.

``input_slice`` evaluates the activations of a layer's units at
``x_a + α d₁ (+ β d₂)`` around anchor inputs ``x_a``; the grid points ride in
the batch dimension, so one forward pass serves every unit.

Both attach quasi-convexity scores (:mod:`landscape.convexity`) beside the
sliced variable.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import xarray as xr

from ._heap import reusing_freed_memory
from .convexity import add_scores
from .directions import Direction, input_directions, parameter_directions
from .errors import LandscapeError, check_choice
from .grids import InputGrid, LossGrid
from .losses import LossFn, Objective
from .memory import activation_bytes, format_bytes, memory_budget, require
from .models import select_units
from .progress import Progress
from .results import provenance
from .streams import evaluate_ranges, split_ranges, stream_count
from .view import BN_MODES, batch_norms, check_per_sample, model_view, resolve_bn, untouched

DEFAULT_GRID = "-1:1:21"
ENGINES = ("auto", "vmap", "loop")
# Copies of each result value alive at once (the working array, the Dataset's
# reshaped copy, the quasi-convexity scoring's lines), for the grid's own memory.
RESULT_COPIES = 4
# Most grid points per batched call: beyond this the batched call's overhead is
# already amortised and larger chunks only cost memory.
MAX_CHUNK = 64



def parse_grid(spec, name: str = "grid") -> np.ndarray:
    """``"start:stop:num"`` -> ``num`` evenly spaced values; an array of coordinates
    is taken as it is (strictly increasing, at least 2 values)."""
    if isinstance(spec, str):
        parts = spec.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            start, stop, num = float(parts[0]), float(parts[1]), parts[2]
            if not num.strip().isdigit():
                raise ValueError
            num = int(num)
        except ValueError:
            raise LandscapeError(
                f"{name}: expected start:stop:num such as -1:1:41, got {spec!r}"
            ) from None
        if num < 2 or not np.isfinite([start, stop]).all() or not start < stop:
            raise LandscapeError(
                f"{name}: need start < stop and num >= 2 in start:stop:num, got {spec!r}"
            )
        return np.linspace(start, stop, num)
    values = np.asarray(spec, dtype=float).ravel()
    if values.size < 2 or not np.isfinite(values).all() or not (np.diff(values) > 0).all():
        raise LandscapeError(f"{name}: need at least 2 finite, strictly increasing values")
    return values


def _grid(grid, beta_grid, dims: int) -> tuple[np.ndarray, np.ndarray | None]:
    if dims not in (1, 2):
        raise LandscapeError(f"dims: must be 1 or 2, got {dims}")
    alpha = parse_grid(grid)
    beta = parse_grid(beta_grid if beta_grid is not None else grid, "beta_grid") if dims == 2 else None
    return alpha, beta


def _coefficients(alpha: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
    """Grid points as rows of coefficients, alpha varying slowest."""
    if beta is None:
        return alpha[:, None]
    a, b = np.meshgrid(alpha, beta, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


def _grid_room(n_points: int, values_per_point: int, dims: int, budget: int, what: str) -> int:
    """The budget left for evaluation chunks once the grid's own arrays (its
    coefficients and every result value) are set aside; refuses a grid whose
    results alone do not fit, naming its points and the memory they need."""
    need = n_points * (2 * 8 * dims + RESULT_COPIES * 8 * values_per_point)
    if need > budget:
        raise LandscapeError(
            f"{what}: a grid of {n_points:,} points needs {format_bytes(need)} of memory for its "
            f"results alone, more than the budget of {format_bytes(budget)} (use a coarser "
            f"--grid or raise --max-memory)")
    return budget - need


def _pick_engine(model: torch.nn.Module, device: torch.device) -> str:
    """``vmap`` on a GPU and for convolution-free models; ``loop`` for
    convolutional models on the CPU, where convolutions with batched weights
    become grouped convolutions that run 2-5x slower than one plain call per
    point (measured in bench/RESULTS.md)."""
    if device.type == "cuda":
        return "vmap"
    conv = (torch.nn.modules.conv._ConvNd,)
    return "loop" if any(isinstance(m, conv) for m in model.modules()) else "vmap"


def sharding(scheduler):
    """A context manager giving the client of ``scheduler`` (``None``: no sharding), so
    that several slices share one cluster; ``local:N`` clusters close on exit."""
    if scheduler is None:
        return contextlib.nullcontext()
    from .sweep.shard import connected

    return connected(scheduler)


def _evaluate_grid(model, x, y, directions: list[Direction], coeffs: np.ndarray,
                   batch_size: int, chunk_size: int, engine: str,
                   progress, objective: Objective, scheduler=None,
                   streams: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and accuracy at ``θ + Σ_j coeffs[:, j] d_j`` for every row of
    ``coeffs`` in chunks of ``chunk_size`` points (see :class:`LossGrid`) with
    ``engine`` (``loop`` or ``vmap``), here on ``streams`` or sharded by ``scheduler``."""
    with torch.no_grad():  # two samples: batch statistics need more than one
        probe = model(x[:2])
    counted = objective.counts(probe, None if y is None else y[:2])
    labels = 0 if not counted else y.numel()
    grid = LossGrid(model, x, y, directions, coeffs, batch_size, engine, objective)
    ranges = [(s, min(s + chunk_size, len(coeffs))) for s in range(0, len(coeffs), chunk_size)]
    parts = evaluate_ranges(grid, split_ranges(ranges, streams), progress, "loss slice",
                            scheduler, streams)
    loss_sum = np.concatenate([p[0] for p in parts])
    correct = np.concatenate([p[1] for p in parts])
    accuracy = correct / labels if counted else np.full(len(coeffs), np.nan)
    return loss_sum / x.shape[0], accuracy


def _evaluation_dtype(model: torch.nn.Module, x: torch.Tensor) -> torch.dtype:
    """The least precise floating dtype among the model's parameters and the inputs: the
    precision a forward pass rounds to, which sets the noise floor of the scores."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if x.is_floating_point():
        dtypes.add(x.dtype)
    return max(dtypes or {torch.float64}, key=lambda t: torch.finfo(t).eps)


def _resolve_parameter_directions(model, x, y, directions, dims, seed, include_bias, orthogonal,
                                  hessian_options) -> tuple[str, list[Direction]]:
    if directions == "hessian":
        from .hessian import top_eigenvectors

        if x is None:
            raise LandscapeError("directions 'hessian' need data to take the loss over")
        _, vectors = top_eigenvectors(model, x, y, dims, **{"seed": seed, **(hessian_options or {})})
        params = dict(model.named_parameters())
        return directions, [{k: v.to(params[k].dtype) for k, v in d.items()} for d in vectors]
    if isinstance(directions, str):
        dirs = parameter_directions(model, directions, n=dims, seed=seed, include_bias=include_bias,
                                    orthogonal=orthogonal)
        return directions, dirs
    dirs = list(directions)
    names = {k for k, _ in model.named_parameters()}
    if len(dirs) != dims or any(set(d) != names for d in dirs):
        raise LandscapeError(
            f"directions: expected {dims} dicts keyed by the model's parameter names"
        )
    return "custom", dirs


@untouched
@reusing_freed_memory
def loss_slice(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
               directions: str | list[Direction] = "filter", dims: int = 2,
               grid=DEFAULT_GRID, beta_grid=None, *, include_bias: bool = False,
               orthogonal: bool = False, bn: str | tuple[str, ...] = "auto",
               batch_size: int | None = None,
               chunk_size: int | None = None, engine: str = "auto", seed: int = 0,
               tol: float = 1e-3, dataset: str | None = None, progress: Progress | None = None,
               hessian_options: dict | None = None,
               loss_fn: str | LossFn | None = None, max_memory=None, scheduler=None,
               streams: int | None = None) -> xr.Dataset:
    """Loss and accuracy of ``model`` on ``(x, y)`` over a 1-D or 2-D slice of
    parameter space, ``L(θ + α d₁ + β d₂)``.

    ``directions``: a kind from :mod:`landscape.directions` (``filter`` by default)
    or a list of ``dims`` direction dicts.  ``grid``/``beta_grid``: ``"start:stop:num"``
    or coordinates.  ``bn``: the BatchNorm statistics of every forward pass, the
    directions' Hessian included (``auto``, ``eval``, ``batch``, ``recompute`` on
    ``x``; see :mod:`landscape.view`), or a tuple of them: one slice per mode along
    the same directions, side by side along dimension ``bn`` (see
    :func:`loss_slice_modes`).  ``engine``: ``vmap`` (a chunk of points per
    batched call), ``loop`` (one point at a time, written in place into a private
    copy of the model) or ``auto`` (``vmap`` on a GPU and for convolution-free
    models, ``loop`` for convolutional models on a CPU).  ``loss_fn``: a name of
    :mod:`landscape.losses` or ``loss_fn(output, target) -> scalar mean``
    (default: cross-entropy, or MSE for an autoencoder); the mean over all
    samples is exact whatever ``batch_size``.  ``max_memory`` (bytes or
    ``"6GB"``; default :func:`landscape.memory.memory_budget`) bounds the grid's
    results plus the chunk of points evaluated at once: chunks are sized to it, and
    a grid whose results or single point do not fit is refused before any work.
    ``scheduler``: ``"local:N"`` (a local cluster of N worker processes), a Dask
    scheduler's address or a ``distributed.Client``: the chunks of grid points are
    evaluated on its workers (:mod:`landscape.sweep.shard`), with the same chunks,
    directions and arithmetic as here, so the result is identical.  ``streams``: points
    evaluated side by side in this process by the ``loop`` engine, each stream with
    its own model copy and its share of torch's threads (default: one per thread on a
    CPU; see :mod:`landscape.streams`); a point's value is that of a forward pass on
    that share of the threads, whichever stream takes it.
    Returns a Dataset of kind ``slice`` with ``loss`` and ``accuracy`` (NaN unless
    the outputs score the labels ``y``; per token for sequences) over ``alpha``
    (and ``beta``) and their quasi-convexity scores (``loss_qcvx_barrier`` ...;
    along every row, column and diagonal for a surface).
    """
    if not isinstance(bn, str):
        return loss_slice_modes(model, x, y, directions, dims, grid, beta_grid, modes=tuple(bn),
                                include_bias=include_bias, orthogonal=orthogonal,
                                batch_size=batch_size, chunk_size=chunk_size, engine=engine,
                                seed=seed, tol=tol, dataset=dataset, progress=progress,
                                hessian_options=hessian_options, loss_fn=loss_fn,
                                max_memory=max_memory, scheduler=scheduler, streams=streams)
    check_choice("bn", bn, BN_MODES)
    check_choice("engine", engine, ENGINES)
    alpha, beta = _grid(grid, beta_grid, dims)
    if x.shape[0] < 1:
        raise LandscapeError("x: no samples to take the loss over")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size), ("streams", streams)):
        if value is not None and value < 1:
            raise LandscapeError(f"{name}: must be >= 1, got {value}")
    objective = Objective(model, loss_fn)
    n_points = len(alpha) * (1 if beta is None else len(beta))
    room = _grid_room(n_points, 2, dims, memory_budget(x.device, max_memory), "loss slice")
    net = model_view(model, bn, x, batch_size)
    batch_size = int(min(x.shape[0], 512)) if batch_size is None else int(batch_size)
    with torch.inference_mode():
        per_point = (sum(p.numel() * p.element_size() for p in net.parameters())
                     + batch_size * activation_bytes(net, x))
    require(per_point, room, f"loss slice: one grid point (the parameters and the activations "
            f"of a batch of {batch_size})", "lower --batch-size or raise --max-memory")
    used = _pick_engine(net, x.device) if engine == "auto" else engine
    streams = stream_count(streams, used, x.device, scheduler, per_point, room, n_points)
    if chunk_size is None:
        chunk_size = int(max(1, min(MAX_CHUNK, room // per_point)))
    # The directions' Hessian sees the same statistics and loss as the slice: the view's.
    if hessian_options is not None or directions == "hessian":
        hessian_options = {**(hessian_options or {}), "bn": "eval"}
        if directions == "hessian":
            hessian_options["loss_fn"] = loss_fn
    kind, dirs = _resolve_parameter_directions(net, x, y, directions, dims, seed, include_bias,
                                               orthogonal, hessian_options)
    coeffs = _coefficients(alpha, beta)
    with torch.inference_mode():
        loss, acc = _evaluate_grid(net, x, y, dirs, coeffs, batch_size, chunk_size, used,
                                   progress, objective, scheduler, streams)
    dims_names = ("alpha",) if beta is None else ("alpha", "beta")
    shape = tuple(len(g) for g in (alpha, beta) if g is not None)
    coords = {"alpha": alpha} if beta is None else {"alpha": alpha, "beta": beta}
    ds = xr.Dataset(
        {
            "loss": (dims_names, loss.reshape(shape), {"long_name": "mean loss"}),
            "accuracy": (dims_names, acc.reshape(shape), {"long_name": "accuracy"}),
            "direction_norm": (("direction",), np.array([
                float(torch.sqrt(sum((t.double() ** 2).sum() for t in d.values()))) for d in dirs
            ]), {"long_name": "Euclidean norm of each direction"}),
        },
        coords={**coords, "direction": np.arange(len(dirs))},
    )
    ds = add_scores(ds, "loss", dims_names if beta is not None else "alpha", tol=tol,
                    dtype=_evaluation_dtype(model, x))
    config = {"space": "loss", "directions": kind, "dims": dims, "grid": alpha.tolist(),
              "beta_grid": None if beta is None else beta.tolist(), "include_bias": include_bias,
              "orthogonal": orthogonal, "bn": net.bn_mode, "batch_size": batch_size,
              "samples": int(x.shape[0]), "tol": tol, "loss": objective.name,
              "hessian_options": None if hessian_options is None else {
                  k: (objective.name if k == "loss_fn" else v) for k, v in hessian_options.items()}}
    ds.attrs.update(provenance(model, dataset=dataset, seed=seed, device=x.device, config=config))
    ds.attrs.update(kind="slice", space="loss", directions=kind, engine=used, streams=streams,
                    bn=net.bn_mode,
                    loss_function=objective.name, batch_norm_layers=len(batch_norms(model)))
    return ds


@untouched
def loss_slice_modes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                     directions: str | list[Direction] = "filter", dims: int = 2,
                     grid=DEFAULT_GRID, beta_grid=None, *, modes=("auto", "batch"),
                     hessian_options: dict | None = None, **options) -> xr.Dataset:
    """:func:`loss_slice` under several BatchNorm ``modes`` at once, side by side.

    Frozen statistics (``eval``, or ``recompute``: the centre's) do not follow the
    weights, so a filter-normalised step that rescales a layer's weights rescales its
    pre-activations and the error compounds layer by layer; batch statistics renormalise
    every point, which makes each BatchNorm layer blind to the scale of the weights
    before it.  The two are different surfaces of the same network, and on a
    BatchNorm network they can disagree on every convexity verdict.

    Every mode slices along the same directions (drawn, or for ``hessian`` taken, once,
    under the first mode); modes are resolved (``auto`` for this model) and repeated
    ones dropped.  Returns one Dataset: ``loss``, ``accuracy`` and their scores gain a
    dimension ``bn`` (the resolved modes, in order); each mode's fractions are the
    attributes ``loss_<mode>_frac_quasi_convex`` ...; ``bn`` (attribute) is the modes
    joined by commas; ``config["bn"]`` lists them."""
    resolved = list(dict.fromkeys(resolve_bn(model, m) for m in modes))
    if not resolved:
        raise LandscapeError("bn: give at least one BatchNorm mode")
    if len(resolved) == 1:
        return loss_slice(model, x, y, directions, dims, grid, beta_grid, bn=resolved[0],
                          hessian_options=hessian_options, **options)
    kind = directions if isinstance(directions, str) else "custom"
    if isinstance(directions, str):
        hess = None
        if hessian_options is not None or directions == "hessian":
            hess = {**(hessian_options or {}), "bn": "eval"}
            if directions == "hessian":
                hess["loss_fn"] = options.get("loss_fn")
        view = model_view(model, resolved[0], x, options.get("batch_size"))
        _, directions = _resolve_parameter_directions(
            view, x, y, directions, dims, options.get("seed", 0), options.get("include_bias", False),
            options.get("orthogonal", False), hess)
    parts = [loss_slice(model, x, y, directions, dims, grid, beta_grid, bn=mode, **options)
             for mode in resolved]
    fractions = {}
    varying = [name for name in parts[0].data_vars if name == "loss" or name == "accuracy"
               or name.startswith("loss_")]
    for mode, part in zip(resolved, parts):
        for name in list(part.attrs):
            if name.startswith("loss_frac_"):
                fractions[f"loss_{mode}_{name[len('loss_'):]}"] = part.attrs[name]
    stacked = xr.concat([p[varying] for p in parts], dim="bn", combine_attrs="drop")
    ds = parts[0].drop_vars(varying).merge(stacked.assign_coords(bn=resolved))
    attrs = {k: v for k, v in parts[0].attrs.items() if not k.startswith("loss_frac_")}
    from .results import config_of, to_json

    config = config_of(parts[0])
    config.update(bn=resolved, directions=kind,
                  hessian_options=None if kind != "hessian" and hessian_options is None else {
                      k: v for k, v in (hessian_options or {}).items() if k != "loss_fn"})
    attrs.update(fractions, bn=",".join(resolved), directions=kind, config=to_json(config))
    ds.attrs = attrs
    return ds


@untouched
@reusing_freed_memory
def input_slice(model: torch.nn.Module, layer: str | None = None, units=16,
                anchors: torch.Tensor | None = None, directions: str | torch.Tensor = "random",
                dims: int = 1, grid=DEFAULT_GRID, beta_grid=None, *,
                data: torch.Tensor | None = None, anchor_labels: torch.Tensor | None = None,
                orthogonal: bool = True, bn: str = "auto", batch_size: int | None = None,
                seed: int = 0,
                tol: float = 1e-3, dataset: str | None = None,
                progress: Progress | None = None, max_memory=None, scheduler=None) -> xr.Dataset:
    """Activations of ``units`` of ``layer`` at ``x_a + α d₁ (+ β d₂)`` around each
    anchor ``x_a``.

    ``units``: an int N (the first N units) or indices.  ``directions``: ``random``
    or ``pca`` (of ``data``), each scaled to its anchor's norm, or a tensor
    ``(A, dims, *in_shape)``.  ``bn``: BatchNorm statistics (``auto``, ``eval`` or
    ``recompute`` on ``data``, else on the anchors; ``batch`` is refused, since it
    would make a point's activation depend on the other points of its batch).
    ``batch_size``: grid points per forward pass (and data per batch of
    ``recompute``; default: as many as the memory budget allows).  ``max_memory``
    bounds the activations kept (anchors x points x units) plus the batch of points
    evaluated at once, as in :func:`loss_slice`.  Returns a Dataset of
    kind ``slice`` with ``activation(unit, anchor, alpha[, beta])`` and its
    quasi-convexity scores (``activation_qcvx_barrier`` ...).  ``scheduler``: shard the
    batches of points over Dask workers, as :func:`loss_slice` does.
    """
    if anchors is None or anchors.dim() < 2 or anchors.shape[0] < 1:
        raise LandscapeError("anchors: need a tensor of at least one input, shape (A, *in_shape)")
    check_per_sample(bn, "input slices")
    if batch_size is not None and batch_size < 1:
        raise LandscapeError(f"batch_size: must be >= 1, got {batch_size}")
    alpha, beta = _grid(grid, beta_grid, dims)
    from .models import resolve_layer

    layer = resolve_layer(model, layer)
    net = model_view(model, bn, data if data is not None else anchors, batch_size)
    unit_idx = select_units(net, layer, units, anchors)
    n_anchor = anchors.shape[0]
    room = _grid_room(len(alpha) * (1 if beta is None else len(beta)), n_anchor * len(unit_idx),
                      dims, memory_budget(anchors.device, max_memory),
                      f"input slice ({n_anchor} anchors x {len(unit_idx)} units)")
    per_sample = activation_bytes(net, anchors) + 2 * anchors[0].numel() * anchors.element_size()
    require(per_sample, room, "input slice: the forward pass of one point")
    if batch_size is None:
        batch_size = int(max(1, min(4096, room // per_sample)))
    if isinstance(directions, str):
        kind = directions
        d = input_directions(anchors, kind, n=dims, seed=seed, data=data, orthogonal=orthogonal)
    else:
        kind = "custom"
        d = directions.to(anchors)
        if d.shape != (anchors.shape[0], dims, *anchors.shape[1:]):
            raise LandscapeError(
                f"directions: expected shape {(anchors.shape[0], dims, *anchors.shape[1:])}, "
                f"got {tuple(d.shape)}"
            )
    coeffs = torch.as_tensor(_coefficients(alpha, beta), dtype=anchors.dtype, device=anchors.device)
    n_points = coeffs.shape[0]
    total = n_anchor * n_points
    grid = InputGrid(net, layer, unit_idx, anchors, coeffs, d)
    ranges = [(s, min(s + batch_size, total)) for s in range(0, total, batch_size)]
    parts = evaluate_ranges(grid, ranges, progress, "input slice", scheduler)
    out = torch.from_numpy(np.concatenate(parts)).view(n_anchor, n_points, len(unit_idx))
    grid_dims = ("alpha",) if beta is None else ("alpha", "beta")
    grid_shape = tuple(len(g) for g in (alpha, beta) if g is not None)
    act = out.numpy().reshape(n_anchor, *grid_shape, len(unit_idx))
    act = np.moveaxis(act, -1, 0)  # unit, anchor, grid...
    coords = {"unit": np.asarray(unit_idx), "anchor": np.arange(n_anchor), "alpha": alpha}
    if beta is not None:
        coords["beta"] = beta
    ds = xr.Dataset(
        {"activation": (("unit", "anchor", *grid_dims), act,
                        {"long_name": f"activation of {layer} units"})},
        coords=coords,
    )
    if anchor_labels is not None:
        ds["anchor_label"] = ("anchor", np.asarray(anchor_labels.cpu()))
    ds["anchor_norm"] = ("anchor", anchors.flatten(1).norm(dim=1).double().cpu().numpy())
    ds = add_scores(ds, "activation", grid_dims if beta is not None else "alpha", tol=tol,
                    dtype=_evaluation_dtype(model, anchors))
    config = {"space": "input", "layer": layer, "units": unit_idx, "anchors": n_anchor,
              "directions": kind, "dims": dims, "grid": alpha.tolist(),
              "beta_grid": None if beta is None else beta.tolist(), "orthogonal": orthogonal,
              "bn": net.bn_mode, "batch_size": batch_size, "tol": tol}
    ds.attrs.update(provenance(model, dataset=dataset, seed=seed, device=anchors.device,
                               config=config))
    ds.attrs.update(kind="slice", space="input", directions=kind, layer=layer, bn=net.bn_mode)
    return ds
