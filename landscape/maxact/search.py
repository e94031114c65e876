"""Where :func:`landscape.maxact.maxact` looks for a unit's maximum: the named search
regions and the projected gradient ascent inside each.

A unit's "maximum" is a property of the unit *and* of the set it is maximised over.
For a piecewise-linear unit (ReLU networks) the maximum over a box or a ball lies on
the boundary of that set, so how far the maxima lie from the data is largely fixed by
the choice of region.  The region is therefore an option with a name, recorded in
every result.  Notation as in :mod:`landscape.maxact`: data ``x_1..x_N ∈ R^D``, mean
``x̄``, per-feature std ``σ``.

``box``   ``B = Π_d [min_i x_id, max_i x_id]``, the per-feature value box of the data
          (or a given ``(lo, hi)``).  Every corner of ``B`` is admitted, however far
          it lies from every datum.
``ball``  ``{z : ‖z − x̄‖ ≤ r}``, with ``r`` by default the largest distance of a
          datum to the mean, ``max_i ‖x_i − x̄‖`` (so every datum, and the dataset's
          top example, is a feasible point).  One number sets its scale; unlike the
          box it has no corners, but it admits every direction, also those in which
          the data never vary.
``data``  for each start ``s``, the convex hull of its ``k`` nearest data points
          ``N_k(s)``: ``z = Σ_j w_j x_{n_j}``, ``w`` on the simplex ``Δ_k``.  Every
          candidate is a blend of ``k`` neighbouring real examples, so the maximum
          answers "what in the data's world drives this unit most" while it may still
          lie between examples.  A start that is itself a datum is its own nearest
          neighbour and starts at that vertex (``w = e_1``); any other start begins at
          the centroid of its neighbours (``w = 1/k``).  ``k = 1`` is the nearest datum.

**Ascent.**  Adam-like steps with the rate ``lr_t`` falling on a cosine from
``lr`` to ``lr/100`` over ``steps``; after every step the iterate is projected back
onto the region (Euclidean projection).

- ``box``: Adam (β = 0.9, 0.999), step ``lr_t · (max_d − min_d)`` for feature d,
  then a clamp to ``B``.  The box is a product of intervals, so the per-feature
  preconditioner commutes with the projection: a linear unit ``w·x`` ends at the
  corner ``lo + (hi − lo)·[w > 0]``.
- ``ball`` and ``data``: *isotropic* Adam, one second moment per point (``v`` the
  moving mean of ``‖g‖²``, β₂ = 0.9: on the simplex the gradient within a face
  can shrink by orders of magnitude as weights reach 0, and a long memory of the
  earlier, larger gradients would stall the last moves), so every step is parallel
  to the momentum, of length about ``lr_t · L`` with ``L`` the set's diameter
  (``2r`` for the ball, ``√2`` for the simplex of weights, as the box's step is
  ``lr_t`` times each feature's range).  A per-feature preconditioner would bend
  the step and the projection would then stop at the wrong point (on a ball, a
  linear unit would end at ``x̄ + r·sign(w)/√D``, not at ``x̄ + r·w/‖w‖``; on a
  simplex, every coordinate with a positive gradient would grow alike).  With the
  isotropic step the fixed points are the KKT points: a linear unit ends at
  ``x̄ + r·w/‖w‖`` on the ball (the angle to ``w`` shrinks by ``1/(1 + 2 lr_t)`` a
  step) and at the vertex ``x_j`` of ``N_k(s)`` with the largest ``w·x_j`` on the
  simplex (a linear function on a simplex peaks at a vertex).  On the simplex the
  gradient and the momentum are taken in its tangent cone
  (:func:`simplex_tangent`), and the endpoint is finally compared with the ``k``
  vertices: a blend that does not beat its best example is replaced by it (so a
  near-tie between two vertices, where the last moves are slow, still ends
  exactly on the better one).  Simplex projection: the sort-based rule of Held,
  Wolfe & Crowder (1974); see Duchi et al., *Efficient projections onto the
  l1-ball*, ICML 2008.

All points of one batch ascend together: the gradient of ``Σ_p a_{owner[p]}(z_p)``
with respect to ``z_p`` is the gradient of that point's own unit, because every
sample's activation depends on its own input only (eval mode).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LandscapeError

REGIONS = ("box", "ball", "data")
DEFAULT_REGION = "data"
DEFAULT_REGION_K = 16
Progress = Callable[[int, str], object]
UnitFunction = Callable[[torch.Tensor], torch.Tensor]
_BETA1, _BETA2 = 0.9, 0.999
# The isotropic steps remember the gradient's size briefly: on the simplex it drops
# by orders of magnitude as weights leave the free set.
_BETA2_ISOTROPIC = 0.9


@dataclass(frozen=True)
class Region:
    """A search region on data ``x`` (see the module docstring).  ``lo``/``hi``: the data
    box (the box region, and where random starts are clamped); ``centre``/``radius``:
    the ball; ``data``/``k``: the neighbourhoods of the data region."""

    name: str
    lo: torch.Tensor
    hi: torch.Tensor
    centre: torch.Tensor | None = None
    radius: float | None = None
    data: torch.Tensor | None = None
    k: int | None = None

    def attrs(self) -> dict:
        """What a result records of its region (netCDF-safe: no None)."""
        return {"region": self.name, "region_k": int(self.k or 0),
                "region_radius": float(self.radius) if self.radius is not None else float("nan")}


def search_region(name: str, x: torch.Tensor, *, box: tuple | None = None,
                  radius: float | None = None, k: int = DEFAULT_REGION_K) -> Region:
    """The region ``name`` (``box``, ``ball`` or ``data``) of the data ``x (N, D)``.
    ``box``: ``(lo, hi)`` per feature (default the data's min and max); ``radius``: the
    ball's (default ``max_i ‖x_i − x̄‖``); ``k``: neighbours of the data region."""
    if name not in REGIONS:
        raise LandscapeError(f"region: must be one of {', '.join(REGIONS)}; got {name!r}")
    lo, hi = (x.min(dim=0).values, x.max(dim=0).values) if box is None else box
    lo, hi = torch.as_tensor(lo).to(x), torch.as_tensor(hi).to(x)
    if name == "ball":
        centre = x.mean(dim=0)
        if radius is None:
            radius = float((x - centre).norm(dim=1).max())
        if not (isinstance(radius, (int, float)) and radius > 0 and math.isfinite(radius)):
            raise LandscapeError(f"radius: the ball's radius must be a finite number > 0, got {radius!r}")
        return Region(name, lo, hi, centre=centre, radius=float(radius))
    if radius is not None:
        raise LandscapeError(f"radius: only the ball region has a radius (region {name!r})")
    if name == "data":
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise LandscapeError(f"region_k: must be an integer >= 1, got {k!r}")
        return Region(name, lo, hi, data=x, k=int(min(k, len(x))))
    return Region(name, lo, hi)


# ----------------------------------------------------------------------------- projections

def project(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Clamp ``z (..., D)`` to the box ``[lo, hi]``."""
    return torch.maximum(torch.minimum(z, hi), lo)


def project_ball(z: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """The nearest point of the ball ``‖z − centre‖ ≤ radius`` to each row of ``z``."""
    offset = z - centre
    norm = offset.norm(dim=-1, keepdim=True)
    return centre + offset * torch.clamp(radius / norm.clamp_min(1e-30), max=1.0)


def project_simplex(w: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of each row of ``w (P, k)`` onto the simplex
    ``{w ≥ 0, Σ w = 1}``: ``max(w − τ, 0)`` with ``τ`` from the sorted row (Held et
    al. 1974; Duchi et al. 2008)."""
    u, _ = torch.sort(w, dim=-1, descending=True)
    css = u.cumsum(dim=-1) - 1
    index = torch.arange(1, w.shape[-1] + 1, device=w.device, dtype=w.dtype)
    support = (u - css / index > 0).sum(dim=-1, keepdim=True)  # ≥ 1 always
    tau = css.gather(-1, support - 1) / support.to(w.dtype)
    return (w - tau).clamp_min(0)


def simplex_tangent(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The projection of each row of ``g (P, k)`` onto the tangent cone of the simplex
    at ``w``: ``{d : Σ d = 0, d_j ≥ 0 where w_j = 0}``.  By the KKT conditions
    ``d_j = g_j − μ`` on the free set ``F`` and 0 elsewhere, where ``F`` holds every
    ``j`` with ``w_j > 0`` and the zero weights with ``g_j > μ``, ``μ`` the mean of
    ``g`` over ``F``; the zero weights join greedily in decreasing ``g`` while
    ``g_j`` exceeds the running mean (a joining ``g_j`` only raises the mean, so the
    first one that fails ends the list).  A weight below 1e-9 counts as 0: the
    projection leaves rounding residues, and a residue with a steep negative
    gradient would swell the step's normalisation and stall the ascent."""
    free = w > 1e-9
    n0 = free.sum(dim=1, keepdim=True).to(g.dtype)
    s0 = (g * free).sum(dim=1, keepdim=True)
    candidates, _ = torch.sort(torch.where(free, torch.full_like(g, -math.inf), g), dim=1,
                               descending=True)
    valid = torch.isfinite(candidates)
    cums = torch.where(valid, candidates, 0).cumsum(dim=1)
    before = torch.cat([torch.zeros_like(cums[:, :1]), cums[:, :-1]], dim=1)
    joined = torch.arange(g.shape[1], device=g.device, dtype=g.dtype)
    mean_before = (s0 + before) / (n0 + joined).clamp_min(1)
    count = (valid & (candidates > mean_before)).to(torch.int64).cumprod(dim=1).sum(dim=1, keepdim=True)
    total = s0 + torch.where(count > 0, cums.gather(1, (count - 1).clamp_min(0)), 0)
    mu = total / (n0 + count.to(g.dtype))
    return torch.where(free | (g > mu), g - mu, 0)


def random_starts(region: Region, x: torch.Tensor, n_units: int, restarts: int,
                  gen: torch.Generator) -> torch.Tensor:
    """``(U, R, D)`` draws from ``N(x̄, diag σ²)`` clamped to the data box, and for the
    ball also projected onto it (the same draws for every region and seed)."""
    mean, std = x.mean(dim=0), x.std(dim=0)
    noise = torch.randn((n_units, restarts, x.shape[1]), generator=gen, dtype=x.dtype).to(x.device)
    starts = project(mean + std * noise, region.lo, region.hi)
    if region.name == "ball":
        starts = project_ball(starts, region.centre, region.radius)
    return starts


def neighbourhoods(region: Region, starts: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """For the data region: each start's ``k`` nearest data (indices ``(P, k)``, nearest
    first) and its initial weights (``e_1`` for a start that is a datum, else ``1/k``)."""
    from sklearn.neighbors import NearestNeighbors

    data = region.data.detach().double().cpu().numpy()
    dist, idx = NearestNeighbors(n_neighbors=region.k).fit(data).kneighbors(
        starts.detach().double().cpu().numpy())
    weights = torch.full(idx.shape, 1.0 / region.k, dtype=starts.dtype)
    # a start that is a datum (to rounding of the distance computation)
    on_datum = torch.as_tensor(dist[:, 0] <= 1e-9 * (1 + np.abs(data).max()))
    weights[on_datum] = 0.0
    weights[on_datum, 0] = 1.0
    return idx, weights.to(starts.device)


# ----------------------------------------------------------------------------- ascent

def _rate(lr: float, t: int, steps: int) -> float:
    frac = (t - 1) / max(steps - 1, 1)
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))


def _unit_gradient(f: UnitFunction, own: torch.Tensor, params: torch.Tensor,
                   to_input: Callable) -> torch.Tensor:
    params = params.detach().requires_grad_(True)
    with torch.enable_grad():
        objective = f(to_input(params)).gather(1, own).sum()
        (grad,) = torch.autograd.grad(objective, params)
    return grad


def gradient_ascent(f: UnitFunction, starts: torch.Tensor, owner: torch.Tensor, lo: torch.Tensor,
                    hi: torch.Tensor, *, steps: int = 200, lr: float = 0.05, batch_size: int = 1024,
                    progress: Progress | None = None) -> torch.Tensor:
    """Maximise ``a_{owner[p]}(z_p)`` over the box ``[lo, hi]`` for every start ``z_p``
    (rows of ``starts``, ``(P, D)``) by per-feature projected Adam (module docstring);
    returns the endpoints."""
    width = (hi - lo).to(starts.dtype)
    out = torch.empty_like(starts)
    bar = progress(len(starts) * steps, "ascent") if progress is not None else None
    for begin in range(0, len(starts), batch_size):
        z = project(starts[begin:begin + batch_size].clone(), lo, hi)
        own = owner[begin:begin + batch_size].view(-1, 1)
        m = torch.zeros_like(z)
        v = torch.zeros_like(z)
        for t in range(1, steps + 1):
            grad = _unit_gradient(f, own, z, lambda p: p)
            m.mul_(_BETA1).add_(grad, alpha=1 - _BETA1)
            v.mul_(_BETA2).addcmul_(grad, grad, value=1 - _BETA2)
            m_hat = m / (1 - _BETA1 ** t)
            v_hat = v / (1 - _BETA2 ** t)
            z = project(z + _rate(lr, t, steps) * width * m_hat / (v_hat.sqrt() + 1e-30), lo, hi)
            if bar is not None:
                bar.update(len(z))
        out[begin:begin + batch_size] = z
    if bar is not None:
        bar.close()
    return out


def _isotropic_ascent(f: UnitFunction, params: torch.Tensor, own: torch.Tensor,
                      to_input: Callable, projection: Callable, scale: float, steps: int,
                      lr: float, bar, on_simplex: bool = False) -> torch.Tensor:
    """Projected isotropic Adam on ``params (B, m)``: the step is ``lr_t · scale ·
    m̂ / √v̂`` with ``v`` the moving mean (β₂ = 0.9) of ``‖g‖²``, one per point.
    ``on_simplex``: the gradient and the momentum are projected onto the simplex's
    tangent cone at ``params`` (:func:`simplex_tangent`): a component along
    ``(1, …, 1)``, or one pushing a zero weight below zero, is undone by the
    projection and would only shrink the step that counts."""
    m = torch.zeros_like(params)
    v = torch.zeros(len(params), 1, dtype=params.dtype, device=params.device)
    tiny = torch.finfo(params.dtype).tiny
    for t in range(1, steps + 1):
        grad = _unit_gradient(f, own, params, to_input)
        if on_simplex:
            grad = simplex_tangent(grad, params)
        m.mul_(_BETA1).add_(grad, alpha=1 - _BETA1)
        if on_simplex:  # old pushes on weights now 0 would stall the step
            m = simplex_tangent(m, params)
        v.mul_(_BETA2_ISOTROPIC).add_((grad ** 2).sum(dim=1, keepdim=True), alpha=1 - _BETA2_ISOTROPIC)
        m_hat = m / (1 - _BETA1 ** t)
        v_hat = v / (1 - _BETA2_ISOTROPIC ** t)
        params = projection(params + _rate(lr, t, steps) * scale * m_hat / v_hat.sqrt().clamp_min(tiny))
        if bar is not None:
            bar.update(len(params))
    return params


def _best_of_blend_and_corners(f: UnitFunction, blend: torch.Tensor, corners: torch.Tensor,
                               own: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Each blend ``(B, D)``, or the corner of its ``corners (B, k, D)`` with a higher
    activation of the point's own unit where one beats it."""
    with torch.no_grad():
        b, k, d = corners.shape
        at_blend = f(blend).gather(1, own)
        flat = corners.reshape(b * k, d)
        at_corner = torch.cat([f(flat[i:i + batch_size]) for i in range(0, len(flat), batch_size)])
        at_corner = at_corner.gather(1, own.repeat_interleave(k, dim=0)).view(b, k)
        value, best = at_corner.max(dim=1, keepdim=True)
        corner = corners.gather(1, best.view(b, 1, 1).expand(b, 1, d))[:, 0]
    return torch.where(value >= at_blend, corner, blend)


def ascend(f: UnitFunction, starts: torch.Tensor, owner: torch.Tensor, region: Region, *,
           steps: int = 200, lr: float = 0.05, batch_size: int = 1024,
           progress: Progress | None = None) -> torch.Tensor:
    """Maximise ``a_{owner[p]}`` from every start (rows of ``starts (P, D)``) inside
    ``region``; returns the endpoints ``(P, D)``, points of the region."""
    if region.name == "box":
        return gradient_ascent(f, starts, owner, region.lo, region.hi, steps=steps, lr=lr,
                               batch_size=batch_size, progress=progress)
    out = torch.empty_like(starts)
    bar = progress(len(starts) * steps, "ascent") if progress is not None else None
    if region.name == "data":
        index, weights = neighbourhoods(region, starts)
        index = torch.as_tensor(index, device=starts.device)
    for begin in range(0, len(starts), batch_size):
        own = owner[begin:begin + batch_size].view(-1, 1)
        if region.name == "ball":
            z = project_ball(starts[begin:begin + batch_size].clone(), region.centre, region.radius)
            out[begin:begin + batch_size] = _isotropic_ascent(
                f, z, own, lambda p: p,
                lambda p: project_ball(p, region.centre, region.radius),
                2 * region.radius, steps, lr, bar)
        else:
            corners = region.data[index[begin:begin + batch_size]].to(starts.dtype)  # (B, k, D)

            def blend(w, corners=corners):
                return torch.einsum("bk,bkd->bd", w, corners)

            w = _isotropic_ascent(f, weights[begin:begin + batch_size].clone(), own, blend,
                                  project_simplex, math.sqrt(2), steps, lr, bar, on_simplex=True)
            out[begin:begin + batch_size] = _best_of_blend_and_corners(
                f, blend(w).detach(), corners, own, batch_size)
    if bar is not None:
        bar.close()
    return out
