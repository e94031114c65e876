"""The model API of max-activation reliability: a layer's units as a function of the
input, null models drawn from the model's recipe, and :func:`maxact` (definitions in
:mod:`landscape.maxact`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from .._heap import reusing_freed_memory
from ..errors import LandscapeError
from ..memory import activation_bytes, memory_budget, require
from ..models import resolve_layer, select_units, unit_activations
from ..results import provenance
from ..view import check_per_sample, model_view, resolve_bn, untouched
from .metrics import (
    DESCRIPTIONS,
    METRICS,
    Progress,
    UnitFunction,
    _check_positive,
    reliability_metrics,
)
from .relation import relate
from .search import DEFAULT_REGION, DEFAULT_REGION_K, search_region

# ----------------------------------------------------------------------------- model API

def layer_function(model: nn.Module, layer: str, units: Sequence[int],
                   in_shape: Sequence[int]) -> UnitFunction:
    """``z (P, D) -> (P, U)``: the activations of ``units`` of ``layer`` on flat inputs."""
    index = list(units)

    def f(z: torch.Tensor) -> torch.Tensor:
        return unit_activations(model, layer, z.view(-1, *in_shape), index)

    return f


def null_model(model: nn.Module, seed: int) -> nn.Module:
    """A fresh draw of ``model``'s architecture from its own recipe (``model.recipe``,
    set by :func:`landscape.build_model` and, for a checkpoint, taken from its
    meta by :func:`landscape.load_checkpoint`): the same init, weight std, bias
    scale and model options, another seed.  A model without a recipe is copied
    and every module's ``reset_parameters`` (PyTorch's own init) is drawn anew
    from ``seed``.  Never the model's own weights: the recipe's seed is skipped.
    ``model`` itself is untouched; the null is on its device and in its dtype."""
    from ..models import build_model

    reference = next(model.parameters(), None)
    recipe = getattr(model, "recipe", None)
    if recipe is not None:
        if seed == recipe.get("seed"):
            seed += 1
        null = build_model(**{**recipe, "seed": seed})
        if hasattr(model, "view_of"):  # an input view (token embeddings): view the null alike
            null = model.view_of(null)
    else:
        null = copy.deepcopy(model)
        resettable = [m for m in null.modules() if hasattr(m, "reset_parameters")]
        if not resettable:
            raise LandscapeError("null models: the model has no recipe (build it with "
                                 "landscape.build_model) and no module with reset_parameters")
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for m in resettable:
                m.reset_parameters()
    if reference is not None:
        null = null.to(device=reference.device, dtype=reference.dtype)
    return null


def _ascent_batch(model: nn.Module, x: torch.Tensor, n_units: int, n_starts: int,
                  batch_size: int, budget: int, corners: int = 0) -> int:
    """The largest batch (at most ``batch_size``) of ascending points that fits the
    budget beside every start and end point; refuses when one point does not.
    ``model``: the view the ascent runs (eval mode, its BatchNorm statistics set)."""
    _check_positive("batch_size", batch_size)
    feature_bytes = x[0].numel() * x.element_size()
    points = n_units * n_starts * feature_bytes * 2  # the starts and the ends
    # Autograd keeps every activation and their gradients; the point, its
    # gradient and Adam's two moments; in the data region also its ``corners``
    # neighbours (and their weights' state, small beside them).
    per_point = 2 * activation_bytes(model, x, retained=True) + (4 + corners) * feature_bytes
    require(points + per_point, budget, f"maxact: {n_units} units x {n_starts} starts of "
            f"gradient ascent")
    return int(max(1, min(batch_size, (budget - points) // per_point)))


@untouched
@reusing_freed_memory
def maxact(model: nn.Module, layer: str | None = None, units=16, x: torch.Tensor | None = None, *,
           top_k: int = 9, restarts: int = 16, steps: int = 200, lr: float = 0.05,
           region: str = DEFAULT_REGION, region_k: int = DEFAULT_REGION_K,
           radius: float | None = None, null_models: int = 0, k_neighbors: int = 10,
           eps: float = 0.05, merge_radius: float = 0.5, seed: int = 0, relation: bool = False,
           anchors: int = 4, batch_size: int = 512, bn: str = "auto",
           progress: Progress | None = None, dataset: str | None = None,
           max_memory=None) -> xr.Dataset:
    """Dataset top-k, gradient-ascent maxima and the reliability metrics (module
    docstring) of ``units`` of ``layer`` on the data ``x (N, *in_shape)``.

    ``region``: where the ascent looks for maxima (``data``, the default: blends of
    ``region_k`` neighbouring examples; ``ball`` of ``radius`` around the data mean;
    ``box``, the per-pixel data box; module docstring), recorded in the attrs
    ``region``, ``region_k``, ``region_radius`` and in ``config``; the null draws
    search the same region.  ``null_models``: how many re-initialised copies of the architecture give the
    null (variables ``<metric>_z``).  ``relation``: also slice the units through
    ``anchors`` data points (:func:`landscape.input_slice`) and take their input
    Hessians (:func:`landscape.hessian.input_hessian_spectrum`) and add the
    :func:`relate` variables.  ``bn``: BatchNorm statistics (``auto``, ``eval``,
    ``recompute`` on ``x``; ``batch`` is refused), the same for every part of the
    result.  The model runs in eval mode and is not changed.
    ``max_memory`` (default :func:`landscape.memory.memory_budget`) bounds the
    ascent: its points (units x starts x features, with the optimiser's state) and
    the batch that ascends at once (``batch_size`` at most), whose forward pass
    autograd keeps; what cannot fit is refused before any work.

    Returns a Dataset of kind ``maxact``: dims ``unit``, ``rank`` (top-k),
    ``restart`` (the ``restarts`` random starts, then the top-k starts),
    ``channel``, ``height``, ``width``; each metric ``(unit)``, ``topk_index``,
    ``topk_activation`` ``(unit, rank)``, ``endpoint_activation(unit, restart)``,
    ``best_activation``, ``data_max``, ``data_median``, ``data_std`` ``(unit)``,
    ``maximum(unit, channel, height, width)`` (float32, the best maximum) and
    ``topk_image(unit, rank, channel, height, width)`` (float16) for image inputs.
    """
    if x is None or x.dim() < 2:
        raise LandscapeError("x: give the data as a tensor (N, *in_shape)")
    _check_positive("null_models", null_models, 0)
    check_per_sample(bn, "maxact")
    layer = resolve_layer(model, layer)
    net = model_view(model, bn, x, batch_size)
    unit_idx = select_units(net, layer, units, x)
    in_shape = tuple(x.shape[1:])
    flat = x.detach().flatten(1)
    space = search_region(region, flat, radius=radius, k=region_k)  # validated before any work
    batch_size = _ascent_batch(net, x, len(unit_idx), restarts + top_k, batch_size,
                               memory_budget(x.device, max_memory), corners=space.k or 0)
    options = dict(top_k=top_k, restarts=restarts, steps=steps, lr=lr, region=space,
                   k_neighbors=k_neighbors, eps=eps, merge_radius=merge_radius,
                   batch_size=batch_size)
    res = reliability_metrics(layer_function(net, layer, unit_idx, in_shape), flat,
                              seed=seed, progress=progress, **options)
    coords = {"unit": np.asarray(unit_idx), "rank": np.arange(top_k),
              "restart": np.arange(restarts + top_k)}
    data = {name: ("unit", res[name], {"long_name": DESCRIPTIONS[name]}) for name in METRICS}
    data.update(
        topk_index=(("unit", "rank"), res["topk_index"].astype(np.int64)),
        topk_activation=(("unit", "rank"), res["topk_activation"]),
        endpoint_activation=(("unit", "restart"), res["endpoint_activation"]),
        best_activation=("unit", res["best_activation"]),
        data_max=("unit", res["data_max"]),
        data_median=("unit", res["data_median"]),
        data_std=("unit", res["data_std"]),
    )
    if len(in_shape) == 3:
        data["maximum"] = (("unit", "channel", "height", "width"),
                           res["maximum"].reshape(len(unit_idx), *in_shape).astype(np.float32))
        # The top-k images, so figures need only the file (float16 keeps it small).
        images = x.detach()[torch.as_tensor(res["topk_index"].ravel(), device=x.device)]
        data["topk_image"] = (("unit", "rank", "channel", "height", "width"),
                              images.cpu().numpy().reshape(len(unit_idx), top_k, *in_shape)
                              .astype(np.float16))
    else:
        data["maximum"] = (("unit", "feature"), res["maximum"].astype(np.float32))
    ds = xr.Dataset(data, coords=coords)
    ds["start_kind"] = ("restart", np.array(["random"] * restarts + ["topk"] * top_k))
    # A fresh draw has no trained statistics: where the model's own stored ones
    # are used, the nulls' are recomputed on the same data.
    null_bn = "recompute" if net.bn_mode == "eval" and resolve_bn(model, "auto") == "eval" else net.bn_mode
    if null_models:
        pooled: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
        null_seeds = []
        for i in range(null_models):
            asked = 10_000 + 7919 * (seed + 1) + i
            drawn = null_model(model, seed=asked)
            null_seeds.append(int(getattr(drawn, "recipe", {}).get("seed", asked)))
            other = model_view(drawn, null_bn, x, batch_size)
            nres = reliability_metrics(layer_function(other, layer, unit_idx, in_shape), flat,
                                       seed=seed + 1 + i, **options)
            for name in METRICS:
                pooled[name].append(nres[name])
        for name in METRICS:
            values = np.concatenate(pooled[name]).astype(float)
            values = values[np.isfinite(values)]
            mu = values.mean() if values.size else np.nan
            sd = values.std(ddof=1) if values.size > 1 else np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                z = (ds[name].values - mu) / sd if sd > 0 else np.full(len(unit_idx), np.nan)
            ds[f"{name}_z"] = ("unit", z, {"long_name": f"z-score of {name} against the null"})
            ds[f"{name}_null_mean"] = ((), mu)
            ds[f"{name}_null_std"] = ((), sd)
        ds.attrs["null_seeds"] = null_seeds
    config = dict(layer=layer, units=unit_idx, n_samples=int(x.shape[0]), seed=seed,
                  null_models=null_models, relation=relation, bn=net.bn_mode, null_bn=null_bn,
                  **{**options, "region": region, "region_k": int(region_k), "radius": radius,
                     "region_radius": space.attrs()["region_radius"] if space.radius else None})
    ds.attrs.update(provenance(model, dataset=dataset, seed=seed, device=x.device, config=config))
    ds.attrs.update(kind="maxact", layer=layer, bn=net.bn_mode, nn_distance=float(res["nn_distance"]),
                    eps=float(eps), k_neighbors=int(k_neighbors), null_models=int(null_models),
                    **space.attrs())
    if relation:
        from ..hessian import input_hessian_spectrum
        from ..slicing import input_slice

        points = x[: min(anchors, x.shape[0])]
        # On the view, whose statistics are already those of this result.
        slices = input_slice(net, layer, unit_idx, points, seed=seed, bn="eval", dataset=dataset)
        hess = input_hessian_spectrum(net, layer, unit_idx, points, top_k=1, density=True, bn="eval",
                                      density_runs=4, density_steps=30, seed=seed,
                                      dataset=dataset)
        ds = relate(ds, slices, hess)
    return ds


