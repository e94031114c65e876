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
trapezoid rule.  The *negative mass* (the Hessian index of Dauphin et al.,
*Identifying and attacking the saddle point problem*, NeurIPS 2014) is the
fraction of the broadened density below zero,
``(1/n) Σ_r Σ_i τ_ri Φ(−θ_ri / σ)`` with Φ the standard normal CDF.  The
broadening matters: trained and random ReLU networks have a large cluster of
eigenvalues at or near zero, whose sign the raw quadrature weight resolves only
by chance (a single node at −1e-9 can carry a fifth of the mass); at resolution
σ a zero eigenvalue counts one half, and the estimate agrees with the same
quantity of the exact spectrum.

Example — the density of ``diag(−1, 1, 1, 1)`` has a quarter of its mass below 0::

    >>> import numpy as np
    >>> negative_mass(np.array([-1.0, 1.0, 1.0, 1.0]))
    0.25
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from ..errors import LandscapeError
from .hvp import HessianOperator
from .lanczos import BREAKDOWN


@dataclass
class Quadrature:
    """The nodes and weights of ``n`` Lanczos quadratures (one array per run)."""

    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    n_products: int

    def all(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes and weights, each weight divided by the number of runs."""
        n = len(self.nodes)
        return np.concatenate(self.nodes), np.concatenate(self.weights) / n


def slq(op: HessianOperator, n_runs: int = 8, steps: int = 80, seed: int = 0,
        reorthogonalize: bool = True) -> Quadrature:
    """``n_runs`` Lanczos quadratures of ``steps`` steps each, run side by side
    (one batched product per step; every run is reorthogonalised against its own
    basis, which costs ``steps · n_runs · dim`` numbers of memory)."""
    if n_runs < 1:
        raise LandscapeError(f"density runs: must be >= 1, got {n_runs}")
    if steps < 1:
        raise LandscapeError(f"density steps: must be >= 1, got {steps}")
    dim = op.dim
    steps = min(steps, dim)
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(n_runs, dim, generator=generator, dtype=op.dtype).to(op.device)
    q = q / q.norm(dim=1, keepdim=True)
    basis = None
    if reorthogonalize:
        basis = torch.empty(steps, n_runs, dim, dtype=op.dtype, device=op.device)
    alpha = np.zeros((n_runs, steps))
    beta = np.zeros((n_runs, steps))
    length = np.full(n_runs, steps)
    active = np.ones(n_runs, dtype=bool)
    scale = np.zeros(n_runs)
    previous = torch.zeros_like(q)
    products = 0
    for j in range(steps):
        idx = torch.as_tensor(np.flatnonzero(active), device=op.device)
        if basis is not None:
            basis[j] = q
        w = torch.zeros_like(q)
        w[idx] = op.matmat(q[idx])
        products += len(idx)
        a = (q.double() * w.double()).sum(dim=1)
        if basis is not None:
            for _ in range(2):
                coeff = torch.einsum("jnd,nd->jn", basis[:j + 1], w)
                w = w - torch.einsum("jn,jnd->nd", coeff, basis[:j + 1])
        else:
            b_prev = torch.as_tensor(beta[:, j - 1] if j else np.zeros(n_runs), dtype=op.dtype,
                                     device=op.device)
            w = w - a.to(op.dtype)[:, None] * q - b_prev[:, None] * previous
        b = w.double().norm(dim=1).cpu().numpy()
        a = a.cpu().numpy()
        for r in np.flatnonzero(active):
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
    nodes, weights = [], []
    for r in range(n_runs):
        m = length[r]
        theta, S = eigh_tridiagonal(alpha[r, :m], beta[r, :m - 1], lapack_driver="stev")
        nodes.append(theta)
        weights.append(S[0] ** 2)
    return Quadrature(nodes, weights, products)


def default_sigma(nodes: np.ndarray, relative: float = 0.01) -> float:
    """Broadening ``σ = relative · (max θ − min θ)`` (or ``relative`` for a point spectrum)."""
    span = float(np.max(nodes) - np.min(nodes)) if len(nodes) else 0.0
    if span > 0:
        return relative * span
    return relative * max(1.0, float(np.max(np.abs(nodes), initial=0)))


def default_grid(nodes: np.ndarray, sigma: float, num: int = 501) -> np.ndarray:
    """An even grid over ``[min θ − 5σ, max θ + 5σ]``."""
    return np.linspace(float(np.min(nodes)) - 5 * sigma, float(np.max(nodes)) + 5 * sigma, num)


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
    area = np.trapezoid(phi, lam)
    return phi / area if area > 0 else phi


def negative_mass(nodes: np.ndarray, weights: np.ndarray | None = None,
                  sigma: float | None = None) -> float:
    """The fraction of the density broadened by ``σ`` below zero,
    ``Σ_i w_i Φ(−θ_i / σ) / Σ_i w_i``; ``weights=None`` weighs every node equally
    (the exact value when ``nodes`` are all eigenvalues).  ``σ`` defaults to
    :func:`default_sigma` of the nodes, as for the density."""
    from scipy.special import ndtr

    nodes = np.asarray(nodes, dtype=float)
    w = np.full(len(nodes), 1.0 / len(nodes)) if weights is None else np.asarray(weights, float)
    sigma = default_sigma(nodes) if sigma is None else float(sigma)
    return float((w * ndtr(-nodes / sigma)).sum() / w.sum())
