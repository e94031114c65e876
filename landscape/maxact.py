"""Max-activating examples, gradient-ascent maxima, and how reliable the former
are as a portrait of a unit.

The claim under test: a dataset's max-activating examples describe a unit only
if the unit's response has few, well-separated maxima near the data.  When the
response is smooth and quasi-convex, the data lying densely near the maximum all
activate strongly — a consequence of data density and Lipschitz continuity, not
evidence of a learned feature — which is why random networks look
"interpretable" (cf. Olah et al., *Feature Visualization*, Distill 2017; Borowski
et al., *Exemplary natural images explain CNN activations better than
state-of-the-art feature visualization*, ICLR 2021).

Everything below works on any callable ``f: (N, D) tensor -> (N, U)`` (a unit's
activation ``a_u(x)`` is column ``u``), so synthetic units (a Gaussian bump, a
linear function) are measured by the same code as a network's units:
:func:`reliability_metrics`.  :func:`maxact` wraps a model's layer into such a
callable (:func:`landscape.models.unit_activations`, eval mode, the model
untouched).

Notation.  Data ``x_1..x_N ∈ R^D`` (inputs flattened), unit activations
``a_i = a_u(x_i)``, the data's value box ``B = Π_d [min_i x_id, max_i x_id]``,
``h`` = the median over i of the distance from ``x_i`` to its nearest other
datum, ``m_u`` = the median of ``a_u`` over the data, ``x*`` = the dataset argmax.

**Ascent.**  Projected gradient ascent with Adam (β = 0.9, 0.999), step
``lr_t · (max_d − min_d)`` per feature with ``lr_t`` decaying by a cosine from
``lr`` to ``lr/100`` over ``steps``; after every step the point is clamped to
``B`` and, when ``norm_ball=r``, pulled radially into the ball ``‖z − x̄‖ ≤ r``
around the data mean (both sets are convex and ``x̄ ∈ B``, so the result lies
in both).  Starts per unit: ``R`` random restarts drawn from
``N(x̄, diag σ²)`` (the data's per-feature mean and std) clamped to ``B``, and
the unit's ``k`` top examples.  All units × starts ascend in one batch: the
objective ``Σ_{u,s} a_u(z_{u,s})`` has gradient ``∇a_u(z_{u,s})`` for each point.

The **best maximum** ``z_u^best`` is the ascent endpoint with the highest
activation ``a_u^best`` (or ``x*`` if no endpoint beats it), and
``s_u = a_u^best − m_u`` is the *climb*, the scale of the unit's maxima.

Metrics per unit (the variables of a ``maxact`` result):

``rho``               ``(a_u(x*) − m_u) / s_u``: the share of the climb from the
                      median datum to the best maximum that the dataset's top
                      example achieves (1: the data's top example is the maximum).
``gain``              ``(a_u(z_{x*}) − a_u(x*)) / std_i a_i``: what ascending from
                      ``x*`` adds, in units of the activation's std over the data.
``displacement``      ``‖z_{x*} − x*‖ / h``: how far that ascent moves.
``n_maxima``          the number of distinct maxima within ε of the best: endpoints
                      with ``a ≥ a^best − ε s_u`` (ε = ``eps``, default 0.05) are
                      clustered by single linkage with merge distance ``δ =
                      merge_radius · h`` (default 0.5 h); clusters are counted.
``p_hit``             the share of the ``R`` random restarts whose endpoint reaches
                      the best: lies in the same cluster as ``z^best`` (so within ε
                      of its height and joined to it by steps shorter than δ).
``dist_to_data``      ``min_i ‖z^best − x_i‖ / h``.
``topk_compactness``  mean pairwise distance of the top-k examples over the mean
                      pairwise distance of all data pairs (the expected value for a
                      random k-subset; estimated on ≤ 2048 data points).  < 1: the
                      top examples cluster.
``topk_jaccard``      the data split at random into disjoint halves A, B (seeded);
                      ``T_A, T_B`` each half's top-k; ``N(T)`` = T with each
                      member's kNN in the whole data; the Jaccard index
                      ``|N(T_A) ∩ N(T_B)| / |N(T_A) ∪ N(T_B)|``.  1: both halves
                      point at the same region of input space.
``lipschitz``         the 99th percentile of ``|a_i − a_j| / ‖x_i − x_j‖`` over the
                      directed kNN edges (k = ``k_neighbors``, default 10).
``morans_i``          Moran's I of ``a`` on the symmetrised kNN graph ``W``
                      (``w_ij = 1`` if j ∈ kNN(i) or i ∈ kNN(j)):
                      ``I = (N / Σ w_ij) · Σ_ij w_ij (a_i − ā)(a_j − ā) / Σ_i (a_i − ā)²``;
                      ≈ 1 for a response smooth on the data's scale, ≈ 0 for noise.

Null: fresh draws of the same architecture from the model's own recipe (init,
weight std, bias scale, every model option; a checkpoint's from its meta), each
from another seed (:func:`null_model`), give each metric's null distribution,
pooled over their units; ``<metric>_z = (metric − mean_null) / std_null``.

:func:`relate` sets the metrics beside the input-slice quasi-convexity and the
input-Hessian statistics of the same units, with Spearman rank correlations;
:func:`compare_states` correlates a random and a trained network's metrics.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn

from ._heap import reusing_freed_memory
from ._state import check_per_sample, model_view, resolve_bn, untouched
from .errors import LandscapeError
from .memory import activation_bytes, memory_budget, require
from .models import resolve_layer, select_units, unit_activations
from .results import provenance

METRICS = ("rho", "gain", "displacement", "n_maxima", "p_hit", "dist_to_data",
           "topk_compactness", "topk_jaccard", "lipschitz", "morans_i")
DESCRIPTIONS = {
    "rho": "(a(x*) - median a) / (best maximum - median a), x* the dataset argmax",
    "gain": "activation gained by ascent from x*, over the std of a on the data",
    "displacement": "length of the ascent from x*, over the median nearest-neighbour distance",
    "n_maxima": "distinct maxima within eps of the best (single-linkage clusters of endpoints)",
    "p_hit": "share of random restarts whose endpoint joins the best maximum's cluster",
    "dist_to_data": "best maximum to the nearest datum, over the median nearest-neighbour distance",
    "topk_compactness": "mean pairwise distance of the top-k over that of random pairs",
    "topk_jaccard": "Jaccard index of the kNN-closed top-k sets of two disjoint data halves",
    "lipschitz": "99th percentile of |a_i - a_j| / |x_i - x_j| over kNN edges",
    "morans_i": "Moran's I of the activation on the symmetrised kNN graph",
}
GEOMETRY = ("slice_quasi_convex", "slice_qcvx_barrier", "slice_quasi_concave",
            "hessian_negative_mass", "hessian_top_eigenvalue")
Progress = Callable[[int, str], object]
UnitFunction = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- helpers

def _check_positive(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise LandscapeError(f"{name}: must be an integer >= {minimum}, got {value!r}")


def _evaluate(f: UnitFunction, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``f`` on the rows of ``z`` in batches, without gradients, as float64 on the CPU."""
    with torch.no_grad():
        parts = [f(z[i:i + batch_size]).detach().double().cpu() for i in range(0, len(z), batch_size)]
    return torch.cat(parts)


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each point's ``k`` nearest other points (exact)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    index = NearestNeighbors(n_neighbors=k).fit(x)
    dist, idx = index.kneighbors()  # X=None: each point's neighbours exclude itself
    return dist, idx


def _median_nn(dist: np.ndarray) -> float:
    nearest = dist[:, 0]
    positive = nearest[nearest > 0]
    return float(np.median(positive)) if positive.size else float("nan")


def morans_i(a: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Moran's I of each column of ``a (N, U)`` on the symmetrised graph of
    ``neighbours (N, k)`` (see the module docstring)."""
    from scipy import sparse

    n, k = neighbours.shape
    rows = np.repeat(np.arange(n), k)
    w = sparse.coo_matrix((np.ones(n * k), (rows, neighbours.ravel())), shape=(n, n)).tocsr()
    w = ((w + w.T) > 0).astype(float)
    z = a - a.mean(axis=0, keepdims=True)
    num = np.einsum("iu,iu->u", z, w @ z)
    den = (z ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (n / w.sum()) * num / den, np.nan)


def lipschitz_knn(a: np.ndarray, x: np.ndarray, dist: np.ndarray, neighbours: np.ndarray,
                  q: float = 99.0) -> np.ndarray:
    """The ``q``-th percentile over directed kNN edges of ``|a_i − a_j| / ‖x_i − x_j‖``,
    per column of ``a``; edges of length 0 (duplicates) are skipped."""
    keep = dist > 0
    i = np.nonzero(keep)[0]
    j = neighbours[keep]
    ratio = np.abs(a[i] - a[j]) / dist[keep][:, None]
    return np.percentile(ratio, q, axis=0) if len(ratio) else np.full(a.shape[1], np.nan)


def _mean_pairwise(x: np.ndarray) -> float:
    from scipy.spatial.distance import pdist

    return float(pdist(x).mean()) if len(x) > 1 else float("nan")


def _clusters(points: np.ndarray, radius: float) -> np.ndarray:
    """Single-linkage cluster labels of ``points`` with merge distance ``radius``."""
    if len(points) == 1:
        return np.zeros(1, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    return fcluster(linkage(points, method="single"), t=radius, criterion="distance")


# ----------------------------------------------------------------------------- ascent

def project(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
            centre: torch.Tensor | None = None, radius: float | None = None) -> torch.Tensor:
    """Clamp ``z (..., D)`` to the box ``[lo, hi]``, then pull it radially into the
    ball ``‖z − centre‖ ≤ radius`` (``centre`` in the box, so the box holds)."""
    z = torch.maximum(torch.minimum(z, hi), lo)
    if radius is not None:
        offset = z - centre
        norm = offset.norm(dim=-1, keepdim=True)
        z = centre + offset * torch.clamp(radius / norm.clamp_min(1e-30), max=1.0)
    return z


def gradient_ascent(f: UnitFunction, starts: torch.Tensor, owner: torch.Tensor, lo: torch.Tensor,
                    hi: torch.Tensor, *, steps: int = 200, lr: float = 0.05,
                    norm_ball: float | None = None, centre: torch.Tensor | None = None,
                    batch_size: int = 1024, progress: Progress | None = None) -> torch.Tensor:
    """Maximise ``a_{owner[p]}(z_p)`` for every start ``z_p`` (rows of ``starts``,
    ``(P, D)``) by projected Adam (module docstring); returns the endpoints.

    Points in one batch ascend together: the gradient of ``Σ_p a_{owner[p]}(z_p)``
    with respect to ``z_p`` is the gradient of that point's own unit, because
    every sample's activation depends on its own input only (eval mode)."""
    width = (hi - lo).to(starts.dtype)
    out = torch.empty_like(starts)
    bar = progress(len(starts) * steps, "ascent") if progress is not None else None
    beta1, beta2 = 0.9, 0.999
    for begin in range(0, len(starts), batch_size):
        z = project(starts[begin:begin + batch_size].clone(), lo, hi, centre, norm_ball)
        own = owner[begin:begin + batch_size].view(-1, 1)
        m = torch.zeros_like(z)
        v = torch.zeros_like(z)
        for t in range(1, steps + 1):
            z.requires_grad_(True)
            with torch.enable_grad():
                objective = f(z).gather(1, own).sum()
                (grad,) = torch.autograd.grad(objective, z)
            z = z.detach()
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            m_hat = m / (1 - beta1 ** t)
            v_hat = v / (1 - beta2 ** t)
            frac = (t - 1) / max(steps - 1, 1)
            rate = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
            z = z + rate * width * m_hat / (v_hat.sqrt() + 1e-30)
            z = project(z, lo, hi, centre, norm_ball)
            if bar is not None:
                bar.update(len(z))
        out[begin:begin + batch_size] = z
    if bar is not None:
        bar.close()
    return out


# ----------------------------------------------------------------------------- metrics

def reliability_metrics(f: UnitFunction, x: torch.Tensor, box: tuple | None = None, *,
                        top_k: int = 9, restarts: int = 16, steps: int = 200, lr: float = 0.05,
                        norm_ball: float | None = None, k_neighbors: int = 10,
                        eps: float = 0.05, merge_radius: float = 0.5, seed: int = 0,
                        batch_size: int = 1024, progress: Progress | None = None) -> dict:
    """Every reliability metric of the units of ``f`` on the data ``x (N, D)``.

    ``f`` maps ``(P, D)`` to ``(P, U)`` and is differentiable; ``box`` is
    ``(lo, hi)`` per feature (default: the data's min and max).  Returns a dict
    of numpy arrays: each name of :data:`METRICS` with shape ``(U,)``, and
    ``topk_index``, ``topk_activation`` ``(U, k)``, ``endpoint_activation``
    ``(U, R + k)`` (random restarts first, then the top-k starts), ``best_activation``,
    ``data_max``, ``data_median``, ``data_std`` ``(U,)``, ``maximum`` ``(U, D)``
    (the best maximum), and the scalar ``nn_distance`` (h).

    Example: ``f(z) = exp(−‖z − c‖² / 2σ²)`` on a grid whose nearest point to
    ``c`` lies at distance ``d`` has ``rho ≈ exp(−d²/2σ²)`` (median ≈ 0),
    ``n_maxima = 1`` and ``dist_to_data = d / h``.
    """
    if x.dim() != 2:
        raise LandscapeError(f"x: expected a (N, D) tensor, got shape {tuple(x.shape)}")
    n = x.shape[0]
    _check_positive("top_k", top_k)
    _check_positive("restarts", restarts)
    _check_positive("steps", steps)
    if n < max(2 * top_k, k_neighbors + 1, 4):
        raise LandscapeError(f"x: need at least {max(2 * top_k, k_neighbors + 1, 4)} samples for "
                             f"top_k={top_k}, k_neighbors={k_neighbors}; got {n}")
    if not eps > 0:
        raise LandscapeError(f"eps: must be > 0, got {eps}")
    if norm_ball is not None and not norm_ball > 0:
        raise LandscapeError(f"norm_ball: must be > 0, got {norm_ball}")
    lo, hi = (x.min(dim=0).values, x.max(dim=0).values) if box is None else box
    lo, hi = torch.as_tensor(lo).to(x), torch.as_tensor(hi).to(x)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    rng = np.random.default_rng(seed)

    act = _evaluate(f, x, batch_size).numpy()  # (N, U)
    n_units = act.shape[1]
    xn = x.detach().double().cpu().numpy()
    dist, neighbours = _knn(xn, k_neighbors)
    h = _median_nn(dist)

    # Starts: R random restarts per unit, then the unit's top-k examples.
    order = np.argsort(-act, axis=0, kind="stable")[:top_k].T  # (U, k)
    topk_act = np.take_along_axis(act, order.T, axis=0).T
    mean, std = x.mean(dim=0), x.std(dim=0)
    noise = torch.randn((n_units, restarts, x.shape[1]), generator=gen, dtype=x.dtype).to(x.device)
    random_starts = project(mean + std * noise, lo, hi)
    topk_starts = x[torch.as_tensor(order, device=x.device)]  # (U, k, D)
    starts = torch.cat([random_starts, topk_starts], dim=1)  # (U, S, D)
    n_starts = starts.shape[1]
    owner = torch.arange(n_units, device=x.device).repeat_interleave(n_starts)
    centre = x.mean(dim=0) if norm_ball is not None else None
    ends = gradient_ascent(f, starts.reshape(-1, x.shape[1]), owner, lo, hi, steps=steps, lr=lr,
                           norm_ball=norm_ball, centre=centre, batch_size=batch_size,
                           progress=progress)
    end_act_all = _evaluate(f, ends, batch_size).numpy()
    end_act = end_act_all[np.arange(len(ends)), owner.cpu().numpy()].reshape(n_units, n_starts)
    ends_np = ends.detach().double().cpu().numpy().reshape(n_units, n_starts, -1)

    out = {name: np.full(n_units, np.nan) for name in METRICS}
    maximum = np.zeros((n_units, x.shape[1]))
    best_act = np.zeros(n_units)
    median = np.median(act, axis=0)
    data_std = act.std(axis=0)
    for u in range(n_units):
        star = order[u, 0]
        a_star = act[star, u]
        points, values = ends_np[u], end_act[u]
        if values.max() >= a_star:
            best = int(values.argmax())
        else:  # the ascent never beat the data: the best maximum is x* itself
            points = np.vstack([points, xn[star]])
            values = np.append(values, a_star)
            best = len(values) - 1
        a_best = values[best]
        climb = a_best - median[u]
        scale = climb if climb > 0 else max(abs(a_best), 1e-30)
        near = np.nonzero(values >= a_best - eps * scale)[0]
        labels = _clusters(points[near], merge_radius * h)
        best_label = labels[np.searchsorted(near, best)]
        hit = set(near[labels == best_label].tolist())
        from_star = ends_np[u, restarts]  # the ascent that started at x*
        out["rho"][u] = (a_star - median[u]) / climb if climb > 0 else np.nan
        out["gain"][u] = ((end_act[u, restarts] - a_star) / data_std[u]
                          if data_std[u] > 0 else np.nan)
        out["displacement"][u] = np.linalg.norm(from_star - xn[star]) / h
        out["n_maxima"][u] = len(np.unique(labels))
        out["p_hit"][u] = np.mean([s in hit for s in range(restarts)])
        out["dist_to_data"][u] = np.sqrt(((xn - points[best]) ** 2).sum(axis=1)).min() / h
        maximum[u] = points[best]
        best_act[u] = a_best

    # Top-k geometry: compactness and split-half stability.
    sub = rng.choice(n, size=min(n, 2048), replace=False)
    reference = _mean_pairwise(xn[sub])
    halves = rng.permutation(n)
    half_a, half_b = halves[: n // 2], halves[n // 2:]
    for u in range(n_units):
        out["topk_compactness"][u] = _mean_pairwise(xn[order[u]]) / reference
        sets = []
        for half in (half_a, half_b):
            top = half[np.argsort(-act[half, u], kind="stable")[:top_k]]
            sets.append(set(top.tolist()) | set(neighbours[top].ravel().tolist()))
        out["topk_jaccard"][u] = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
    out["lipschitz"] = lipschitz_knn(act, xn, dist, neighbours)
    out["morans_i"] = morans_i(act, neighbours)
    out["n_maxima"] = out["n_maxima"].astype(np.int64)
    out.update(topk_index=order, topk_activation=topk_act, endpoint_activation=end_act,
               best_activation=best_act, data_max=act.max(axis=0), data_median=median,
               data_std=data_std, maximum=maximum, nn_distance=h)
    return out


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
    from .models import build_model

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
                  batch_size: int, budget: int) -> int:
    """The largest batch (at most ``batch_size``) of ascending points that fits the
    budget beside every start and end point; refuses when one point does not.
    ``model``: the view the ascent runs (eval mode, its BatchNorm statistics set)."""
    _check_positive("batch_size", batch_size)
    feature_bytes = x[0].numel() * x.element_size()
    points = n_units * n_starts * feature_bytes * 2  # the starts and the ends
    # Autograd keeps every activation and their gradients; the point, its
    # gradient and Adam's two moments.
    per_point = 2 * activation_bytes(model, x, retained=True) + 4 * feature_bytes
    require(points + per_point, budget, f"maxact: {n_units} units x {n_starts} starts of "
            f"gradient ascent")
    return int(max(1, min(batch_size, (budget - points) // per_point)))


@untouched
@reusing_freed_memory
def maxact(model: nn.Module, layer: str | None = None, units=16, x: torch.Tensor | None = None, *,
           top_k: int = 9, restarts: int = 16, steps: int = 200, lr: float = 0.05,
           norm_ball: float | None = None, null_models: int = 0, k_neighbors: int = 10,
           eps: float = 0.05, merge_radius: float = 0.5, seed: int = 0, relation: bool = False,
           anchors: int = 4, batch_size: int = 512, bn: str = "auto",
           progress: Progress | None = None, dataset: str | None = None,
           max_memory=None) -> xr.Dataset:
    """Dataset top-k, gradient-ascent maxima and the reliability metrics (module
    docstring) of ``units`` of ``layer`` on the data ``x (N, *in_shape)``.

    ``null_models``: how many re-initialised copies of the architecture give the
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
    batch_size = _ascent_batch(net, x, len(unit_idx), restarts + top_k, batch_size,
                               memory_budget(x.device, max_memory))
    options = dict(top_k=top_k, restarts=restarts, steps=steps, lr=lr, norm_ball=norm_ball,
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
                  **options)
    ds.attrs.update(provenance(model, dataset=dataset, seed=seed, device=x.device, config=config))
    ds.attrs.update(kind="maxact", layer=layer, bn=net.bn_mode, nn_distance=float(res["nn_distance"]),
                    eps=float(eps), k_neighbors=int(k_neighbors), null_models=int(null_models))
    if relation:
        from .hessian import input_hessian_spectrum
        from .slicing import input_slice

        points = x[: min(anchors, x.shape[0])]
        # On the view, whose statistics are already those of this result.
        slices = input_slice(net, layer, unit_idx, points, seed=seed, bn="eval", dataset=dataset)
        hess = input_hessian_spectrum(net, layer, unit_idx, points, top_k=1, density=True, bn="eval",
                                      density_runs=4, density_steps=30, seed=seed,
                                      dataset=dataset)
        ds = relate(ds, slices, hess)
    return ds


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
