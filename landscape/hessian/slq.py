"""Stochastic Lanczos quadrature (SLQ): the spectral density of a symmetric operator.

Ubaru, Chen & Saad, *Fast estimation of tr(f(A)) via stochastic Lanczos
quadrature*, SIAM J. Matrix Anal. Appl. 38 (2017); used for neural-network
Hessians by Ghorbani, Krishnan & Xiao, *An investigation into neural net
optimization via Hessian eigenvalue density*, ICML 2019.

The spectral density of ``H`` (dimension ``d``, eigenvalues ``λ_j``) is
``φ(t) = (1/d) Σ_j δ(t − λ_j)``.  For a unit random vector ``v`` (a normalised
Gaussian, so ``E[(u_jᵀv)²] = 1/d`` for every eigenvector ``u_j``), ``m`` Lanczos
steps from ``v`` give ``T_m = S Θ Sᵀ`` and the Gauss quadrature

    vᵀ g(H) v ≈ Σ_i τ_i g(θ_i),     τ_i = (e_1ᵀ s_i)²,   Σ_i τ_i = 1,

exact for polynomials ``g`` of degree ``≤ 2m − 1``.  Averaging over ``n`` runs
gives the discrete estimate ``φ̂ = (1/n) Σ_r Σ_i τ_ri δ(· − θ_ri)``.  The density
is that estimate broadened by a Gaussian of width ``σ``:

    φ_σ(t) = (1/n) Σ_r Σ_i τ_ri · exp(−(t − θ_ri)² / 2σ²) / (σ √(2π)),

evaluated on a grid ``lam`` and renormalised to integrate to 1 with the
trapezoid rule.

The *index* of Dauphin et al. (*Identifying and attacking the saddle point
problem*, NeurIPS 2014) is hidden by the cluster of eigenvalues at or near zero
that trained and random networks alike have: half of a broadened zero cluster
lies below zero, so the mass below zero reads about 0.5 whatever the network.
Three masses of the same broadened density are reported instead, split at
``±ε`` with ``ε = zero_tol · (max θ − min θ)`` (``zero_tol`` a fraction of the
spectral range, default 0.03: three broadening widths at the default σ, so
that a broadened point at zero stays within ``±ε``):

    negative = (1/n) Σ_r Σ_i τ_ri Φ((−ε − θ_ri) / σ),
    positive = (1/n) Σ_r Σ_i τ_ri Φ((θ_ri − ε) / σ),
    zero     = 1 − negative − positive,

Φ the standard normal CDF.  Each is the integral of ``φ_σ`` over
``(−∞, −ε)``, ``[−ε, ε]``, ``(ε, ∞)``, and with weights ``1/d`` on the exact
eigenvalues it is the broadened fraction of eigenvalues in that range.

Example — ``diag(−1, 0, 1, 1)`` at σ = 0.01, ε = 0.1::

    >>> import numpy as np
    >>> [round(m, 6) for m in spectral_masses(np.array([-1.0, 0.0, 1.0, 1.0]), None, 0.01, 0.1)]
    [0.25, 0.25, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from ..errors import LandscapeError
from ..memory import memory_budget, require
from .hvp import HessianOperator
from .lanczos import BREAKDOWN
from .reductions import orthogonalize_each, row_dots, row_norms


@dataclass
class Quadrature:
    """The nodes and weights of ``n`` Lanczos quadratures (one array per run)."""

    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    n_products: int
    n_groups: int = 1  # sequential groups the runs were split into to fit the memory budget

    def all(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes and weights, each weight divided by the number of runs."""
        n = len(self.nodes)
        return np.concatenate(self.nodes), np.concatenate(self.weights) / n


def slq_group_size(op: HessianOperator, n_runs: int, steps: int, reorthogonalize: bool = True,
                   max_memory=None) -> int:
    """How many runs go side by side (refused, with the size, when not even
    one fits the memory budget): see :func:`parallel_runs`."""
    itemsize = torch.empty((), dtype=op.dtype).element_size()
    return parallel_runs(op.dim, itemsize, op.device, n_runs, steps,
                         memory_budget(op.device, max_memory), reorthogonalize)


def parallel_runs(dim: int, itemsize: int, device, n_runs: int, steps: int, budget: int,
                  reorthogonalize: bool = True) -> int:
    """Runs side by side for ``n_runs`` of ``steps`` on dimension ``dim``.

    Each run holds its basis and four working rows.  On the CPU the products of
    a group are computed one after another anyway, so running side by side
    buys no speed: one run at a time, and the memory is one run's whatever
    ``n_runs``.  Elsewhere (CUDA) as many as fit ``budget`` (bytes).
    """
    vector = dim * itemsize
    per_run = (min(steps, dim) + 4 if reorthogonalize else 4) * vector
    require(per_run, budget, f"density (SLQ): one run of {steps} steps on dimension {dim}",
            "lower --density-steps or raise --max-memory")
    kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
    if kind == "cpu":
        return 1
    return int(max(1, min(n_runs, budget // per_run)))


def slq(op: HessianOperator, n_runs: int = 8, steps: int = 80, seed: int = 0,
        reorthogonalize: bool = True, max_memory=None,
        group_size: int | None = None) -> Quadrature:
    """``n_runs`` Lanczos quadratures of ``steps`` steps each.

    Runs go side by side in groups (one batched product per step for the whole
    group); each run is reorthogonalised against its own basis, ``steps ×
    dim`` numbers, so a group holds ``group_size`` runs, by default one on the
    CPU and as many as fit the memory budget elsewhere (``max_memory``, see
    :func:`parallel_runs` and :func:`landscape.memory.memory_budget`).  Memory
    grows with the runs of one group, not with ``n_runs``, and the result does
    not depend on the grouping: run ``r`` starts from the ``r``-th vector drawn
    from ``seed`` whatever group it is in.
    """
    if n_runs < 1:
        raise LandscapeError(f"density runs: must be >= 1, got {n_runs}")
    if steps < 1:
        raise LandscapeError(f"density steps: must be >= 1, got {steps}")
    steps = min(steps, op.dim)
    if group_size is None:
        group_size = slq_group_size(op, n_runs, steps, reorthogonalize, max_memory)
    generator = torch.Generator().manual_seed(seed)
    nodes, weights, products, groups = [], [], 0, 0
    for first in range(0, n_runs, group_size):
        n = min(group_size, n_runs - first)
        q = torch.stack([torch.randn(op.dim, generator=generator, dtype=op.dtype)
                         for _ in range(n)]).to(op.device)
        alpha, beta, length, used = _lanczos_group(op, q, steps, reorthogonalize)
        products += used
        groups += 1
        for r in range(n):
            m = length[r]
            theta, S = eigh_tridiagonal(alpha[r, :m], beta[r, :m - 1], lapack_driver="stev")
            nodes.append(theta)
            weights.append(S[0] ** 2)
    return Quadrature(nodes, weights, products, groups)


def _lanczos_group(op: HessianOperator, q: torch.Tensor, steps: int, reorthogonalize: bool):
    """Lanczos from each row of ``q`` side by side: the tridiagonals ``(α, β)``,
    the length of each run (shorter when its Krylov space became invariant) and
    the number of products."""
    n_runs, dim = q.shape
    q.div_(row_norms(q).to(q.dtype)[:, None])
    basis = None
    if reorthogonalize:
        basis = torch.empty(n_runs, steps, dim, dtype=op.dtype, device=op.device)
    alpha = np.zeros((n_runs, steps))
    beta = np.zeros((n_runs, steps))
    length = np.full(n_runs, steps)
    active = np.ones(n_runs, dtype=bool)
    scale = np.zeros(n_runs)
    previous = torch.zeros_like(q)
    products = 0
    for j in range(steps):
        idx = np.flatnonzero(active)
        if basis is not None:
            basis[:, j] = q
        w = torch.zeros_like(q)
        w[idx] = op.matmat(q[idx])
        products += len(idx)
        a = row_dots(q, w)
        if basis is not None:
            orthogonalize_each(w, basis[:, :j + 1])
        else:
            b_prev = torch.as_tensor(beta[:, j - 1] if j else np.zeros(n_runs), dtype=op.dtype,
                                     device=op.device)
            w.sub_(a.to(op.dtype)[:, None] * q).sub_(b_prev[:, None] * previous)
        ab = torch.stack([a, row_norms(w)]).cpu().numpy()  # one synchronisation per step
        a, b = ab[0], ab[1]
        for r in idx:
            alpha[r, j] = a[r]
            beta[r, j] = b[r]
            scale[r] = max(scale[r], abs(a[r]), b[r])
            if b[r] <= BREAKDOWN * scale[r]:
                length[r] = j + 1  # invariant Krylov space: this quadrature is exact
                active[r] = False
        if not active.any():
            break
        previous = q
        safe = torch.as_tensor(np.where(active, b, 1.0), dtype=op.dtype, device=op.device)
        q = torch.where(torch.as_tensor(active, device=op.device)[:, None], w / safe[:, None],
                        torch.zeros_like(w))
    return alpha, beta, length, products


def spectral_range(nodes: np.ndarray) -> float:
    """``max θ − min θ`` (or ``max(1, max |θ|)`` for a point spectrum): the
    scale of σ and ε."""
    span = float(np.max(nodes) - np.min(nodes)) if len(nodes) else 0.0
    if span > 0:
        return span
    return max(1.0, float(np.max(np.abs(nodes), initial=0)))


def default_sigma(nodes: np.ndarray, relative: float = 0.01) -> float:
    """Broadening ``σ = relative ·`` :func:`spectral_range` of the nodes."""
    return relative * spectral_range(nodes)


def default_grid(nodes: np.ndarray, sigma: float, num: int = 501) -> np.ndarray:
    """An even grid over ``[min θ − 5σ, max θ + 5σ]``."""
    return np.linspace(float(np.min(nodes)) - 5 * sigma, float(np.max(nodes)) + 5 * sigma, num)


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoid rule (``np.trapezoid`` exists only from NumPy 2)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)


def spectral_density(nodes: np.ndarray, weights: np.ndarray | None, lam: np.ndarray,
                     sigma: float) -> np.ndarray:
    """``φ_σ`` on the grid ``lam`` (see the module docstring), integrating to 1
    under the trapezoid rule.  ``weights=None`` gives every node weight
    ``1/len(nodes)`` (the density of exactly known eigenvalues)."""
    nodes = np.asarray(nodes, dtype=float)
    lam = np.asarray(lam, dtype=float)
    if lam.ndim != 1 or len(lam) < 2 or np.any(np.diff(lam) <= 0):
        raise LandscapeError("lam: need an increasing grid of at least 2 points")
    if not sigma > 0:
        raise LandscapeError(f"sigma: must be > 0, got {sigma}")
    w = np.full(len(nodes), 1.0 / len(nodes)) if weights is None else np.asarray(weights, float)
    z = (lam[:, None] - nodes[None, :]) / sigma
    phi = (np.exp(-0.5 * z ** 2) * w[None, :]).sum(axis=1) / (sigma * np.sqrt(2 * np.pi))
    area = trapezoid(phi, lam)
    return phi / area if area > 0 else phi


def spectral_masses(nodes: np.ndarray, weights: np.ndarray | None, sigma: float,
                    eps: float = 0.0) -> tuple[float, float, float]:
    """``(negative, zero, positive)``: the mass of the density broadened by
    ``σ`` below ``−ε``, within ``±ε`` and above ``ε`` (see the module
    docstring); ``weights=None`` weighs every node equally."""
    from scipy.special import ndtr

    nodes = np.asarray(nodes, dtype=float)
    w = np.full(len(nodes), 1.0 / len(nodes)) if weights is None else np.asarray(weights, float)
    if not sigma > 0:
        raise LandscapeError(f"sigma: must be > 0, got {sigma}")
    if not eps >= 0:
        raise LandscapeError(f"zero tolerance: must be >= 0, got {eps}")
    total = w.sum()
    negative = float((w * ndtr((-eps - nodes) / sigma)).sum() / total)
    positive = float((w * ndtr((nodes - eps) / sigma)).sum() / total)
    return negative, max(0.0, 1.0 - negative - positive), positive


def negative_mass(nodes: np.ndarray, weights: np.ndarray | None = None,
                  sigma: float | None = None, eps: float = 0.0) -> float:
    """The mass of the density broadened by ``σ`` below ``−ε``
    (:func:`spectral_masses`); ``σ`` defaults to :func:`default_sigma` of the
    nodes, as for the density."""
    nodes = np.asarray(nodes, dtype=float)
    sigma = default_sigma(nodes) if sigma is None else float(sigma)
    return spectral_masses(nodes, weights, sigma, eps)[0]
