"""The reliability metrics of units given as a function ``f: (P, D) -> (P, U)``
(definitions in :mod:`landscape.maxact`): the dataset top-k, the ascent inside the
search region (:mod:`landscape.maxact.search`), and the ten per-unit metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import LandscapeError
from .search import DEFAULT_REGION, DEFAULT_REGION_K, Region, ascend, search_region
from .search import random_starts as _random_starts

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


# ----------------------------------------------------------------------------- metrics

def reliability_metrics(f: UnitFunction, x: torch.Tensor, box: tuple | None = None, *,
                        top_k: int = 9, restarts: int = 16, steps: int = 200, lr: float = 0.05,
                        region: str | Region = DEFAULT_REGION, region_k: int = DEFAULT_REGION_K,
                        radius: float | None = None, k_neighbors: int = 10,
                        eps: float = 0.05, merge_radius: float = 0.5, seed: int = 0,
                        batch_size: int = 1024, progress: Progress | None = None) -> dict:
    """Every reliability metric of the units of ``f`` on the data ``x (N, D)``.

    ``f`` maps ``(P, D)`` to ``(P, U)`` and is differentiable; ``box`` is
    ``(lo, hi)`` per feature (default: the data's min and max).  ``region``: where
    the ascent searches (:mod:`landscape.maxact.search`: ``box``, ``ball`` of
    ``radius``, ``data`` hulls of ``region_k`` neighbours; or a built
    :class:`~landscape.maxact.search.Region`).  Returns a dict
    of numpy arrays: each name of :data:`METRICS` with shape ``(U,)``, and
    ``topk_index``, ``topk_activation`` ``(U, k)``, ``endpoint_activation``
    ``(U, R + k)`` (random restarts first, then the top-k starts), ``best_activation``,
    ``data_max``, ``data_median``, ``data_std`` ``(U,)``, ``maximum`` ``(U, D)``
    (the best maximum), the scalar ``nn_distance`` (h) and ``region`` (the Region).

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
    if not isinstance(region, Region):
        region = search_region(region, x, box=box, radius=radius, k=region_k)
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
    random_starts = _random_starts(region, x, n_units, restarts, gen)
    topk_starts = x[torch.as_tensor(order, device=x.device)]  # (U, k, D)
    starts = torch.cat([random_starts, topk_starts], dim=1)  # (U, S, D)
    n_starts = starts.shape[1]
    owner = torch.arange(n_units, device=x.device).repeat_interleave(n_starts)
    ends = ascend(f, starts.reshape(-1, x.shape[1]), owner, region, steps=steps, lr=lr,
                  batch_size=batch_size, progress=progress)
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
               data_std=data_std, maximum=maximum, nn_distance=h, region=region)
    return out


