"""Lanczos iteration with full reorthogonalisation: extreme eigenpairs of a
symmetric operator.

Lanczos (1950), *An iteration method for the solution of the eigenvalue problem
of linear differential and integral operators*, J. Res. Nat. Bur. Standards 45;
the convergence test and the residual estimate follow Parlett, *The Symmetric
Eigenvalue Problem* (1998), ch. 13.

From a unit start vector ``q_1`` the iteration builds an orthonormal basis
``Q_m = [q_1 … q_m]`` of the Krylov space ``span{q_1, H q_1, …, H^{m−1} q_1}`` with

    H Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ,

``T_m`` tridiagonal (diagonal ``α_j = q_jᵀ H q_j``, off-diagonal ``β_j``).  Every
new vector is orthogonalised against the whole basis twice (classical
Gram–Schmidt, "twice is enough"), so no spurious copies of converged
eigenvalues appear.  ``T_m`` is kept in float64 and diagonalised with
:func:`scipy.linalg.eigh_tridiagonal`: ``T_m = S Θ Sᵀ``.  The Ritz pairs
``(θ_i, y_i = Q_m s_i)`` approximate eigenpairs of ``H`` with residual

    ‖H y_i − θ_i y_i‖ = β_m |e_mᵀ s_i|,

which costs nothing to evaluate.  A Ritz pair is *converged* when that residual
is at most ``tol · max_i |θ_i|`` (relative to the estimated spectral norm, so
eigenvalues near zero converge too); then some eigenvalue of ``H`` lies within
the residual of ``θ_i`` (and within residual²/gap when it is isolated).  The
iteration stops as soon as the wanted ``top_k`` largest and ``bottom_k``
smallest Ritz pairs are converged, or after ``max_steps``.  When the Krylov
space becomes invariant (``β_j ≈ 0``) the iteration restarts from a random
vector orthogonal to the basis, so low-rank operators (and the zero operator)
are handled.

Example — ``diag(1, …, 10)`` has top eigenvalue 10::

    >>> import torch
    >>> from landscape.hessian.hvp import DenseOperator
    >>> op = DenseOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
    >>> res = lanczos(op, top_k=1)
    >>> round(float(res.eigenvalues[0]), 8)
    10.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from ..errors import LandscapeError
from .hvp import HessianOperator

BREAKDOWN = 1e-10  # β below this (relative to the largest |α|, β seen) means an invariant subspace
REORTH_RATIO = 0.5 ** 0.5  # a second Gram–Schmidt pass when a pass keeps less of the norm


@dataclass
class LanczosResult:
    """Ritz pairs of the wanted end(s) of the spectrum, sorted by descending eigenvalue."""

    eigenvalues: np.ndarray          # (k,) float64, descending
    which: list[str]                 # "top" / "bottom" for each eigenvalue
    residuals: np.ndarray            # (k,) ‖H y − θ y‖ (estimate, or explicit when asked)
    converged: np.ndarray            # (k,) bool
    eigenvectors: torch.Tensor | None  # (k, dim) unit rows, or None
    steps: int                       # Lanczos steps taken (= products with H)
    alpha: np.ndarray                # the tridiagonal's diagonal
    beta: np.ndarray                 # and off-diagonal (length steps − 1)


class _Basis:
    """A growing stack of orthonormal rows, stored as one tensor (amortised doubling)."""

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device, capacity: int):
        self.data = torch.empty(max(capacity, 1), dim, dtype=dtype, device=device)
        self.size = 0

    def append(self, q: torch.Tensor) -> None:
        if self.size == len(self.data):
            grown = torch.empty(2 * len(self.data), self.data.shape[1], dtype=self.data.dtype,
                                device=self.data.device)
            grown[:self.size] = self.data
            self.data = grown
        self.data[self.size] = q
        self.size += 1

    @property
    def rows(self) -> torch.Tensor:
        return self.data[:self.size]

    def orthogonalize(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` (updated in place) minus its projection on the basis (classical Gram–Schmidt), repeated
        when the first pass removed most of ``w`` and so left it inaccurate (the
        Daniel–Gragg–Kaufman–Stewart test).  Each pass reads the whole basis, the
        main cost besides the products with the operator when the dimension is large."""
        Q = self.rows
        before = w.norm()
        w.addmv_(Q.T, Q @ w, alpha=-1)
        if w.norm() < REORTH_RATIO * before:
            w.addmv_(Q.T, Q @ w, alpha=-1)
        return w


def _dot(u: torch.Tensor, v: torch.Tensor, block: int = 2**16) -> float:
    """``u · v`` accumulated in float64, without float64 copies of long vectors."""
    if u.dtype == torch.float64 or u.numel() <= block:
        return float(torch.dot(u.double(), v.double()))
    return sum(float(torch.dot(a.double(), b.double()))
               for a, b in zip(u.split(block), v.split(block), strict=True))


def _random_unit(dim: int, dtype, device, generator: torch.Generator) -> torch.Tensor:
    v = torch.randn(dim, generator=generator, dtype=dtype, device="cpu").to(device)
    return v / v.norm()


def lanczos(op: HessianOperator, top_k: int = 5, bottom_k: int = 0, tol: float = 1e-4,
            max_steps: int | None = None, seed: int = 0, start: torch.Tensor | None = None,
            eigenvectors: bool = True, explicit_residuals: bool = False,
            min_steps: int | None = None) -> LanczosResult:
    """The ``top_k`` largest and ``bottom_k`` smallest eigenpairs of ``op``.

    ``max_steps`` (default ``min(dim, max(300, 4 (top_k + bottom_k)))``) caps the
    number of products with ``op``; ``explicit_residuals`` recomputes
    ``‖H y − θ y‖`` with ``top_k + bottom_k`` extra products instead of the
    estimate ``β_m |e_mᵀ s|``.  ``eigenvectors=False`` skips forming ``Q_m S``.
    """
    k = top_k + bottom_k
    if top_k < 0 or bottom_k < 0 or k < 1:
        raise LandscapeError(f"top_k, bottom_k: need top_k + bottom_k >= 1 and both >= 0, "
                             f"got top_k={top_k}, bottom_k={bottom_k}")
    if k > op.dim:
        raise LandscapeError(f"top_k + bottom_k: at most the dimension {op.dim}, got {k}")
    if not tol > 0:
        raise LandscapeError(f"tol: must be > 0, got {tol}")
    dim = op.dim
    if max_steps is None:
        max_steps = max(300, 4 * k)
    if max_steps < k:
        raise LandscapeError(f"max_steps: must be >= top_k + bottom_k = {k}, got {max_steps}")
    max_steps = min(max_steps, dim)
    min_steps = k if min_steps is None else max(min_steps, k)
    generator = torch.Generator().manual_seed(seed)
    if start is None:
        q = _random_unit(dim, op.dtype, op.device, generator)
    else:
        q = start.detach().reshape(-1).to(device=op.device, dtype=op.dtype)
        q = q / q.norm()
    basis = _Basis(dim, op.dtype, op.device, capacity=min(max_steps, 64))
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0
    theta = S = None
    for step in range(1, max_steps + 1):
        basis.append(q)
        w = op.matvec(q)  # a fresh tensor: updated in place below
        a = _dot(q, w)
        # The three-term recurrence first, so that what full reorthogonalisation
        # removes is rounding error and one pass over the basis usually suffices.
        w.sub_(q, alpha=a)
        if beta:
            w.sub_(basis.rows[-2], alpha=beta[-1])
        w = basis.orthogonalize(w)
        b = float(w.norm())
        alpha.append(a)
        scale = max(scale, abs(a), b)
        done = step == max_steps
        if step >= min_steps or done:
            theta, S = eigh_tridiagonal(np.array(alpha), np.array(beta), lapack_driver="stev")
            wanted = _wanted(len(theta), top_k, bottom_k)
            if len(wanted) == k:
                res = np.abs(b * S[-1, wanted])
                if np.all(res <= tol * max(np.abs(theta).max(), np.finfo(float).tiny)):
                    done = True
        if done:
            break
        if b <= BREAKDOWN * scale:
            # Invariant subspace: continue from a fresh direction, T gets a zero off-diagonal.
            q = basis.orthogonalize(_random_unit(dim, op.dtype, op.device, generator))
            q = basis.orthogonalize(q)
            q = q / q.norm()
            beta.append(0.0)
        else:
            q = w.div_(b)
            beta.append(b)
    steps = len(alpha)
    wanted = _wanted(len(theta), top_k, bottom_k)
    res = np.abs(b * S[-1, wanted])
    values = theta[wanted]
    which = ["top"] * top_k + ["bottom"] * bottom_k
    vectors = None
    if eigenvectors or explicit_residuals:
        coeff = torch.as_tensor(S[:, wanted].T.copy(), dtype=op.dtype, device=op.device)
        vectors = coeff @ basis.rows
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
    if explicit_residuals:
        HY = op.matmat(vectors)
        lam = torch.as_tensor(values, dtype=op.dtype, device=op.device)
        res = (HY - lam[:, None] * vectors).norm(dim=1).double().cpu().numpy()
    converged = res <= tol * max(np.abs(theta).max(), np.finfo(float).tiny)
    order = np.argsort(-values, kind="stable")
    return LanczosResult(
        eigenvalues=values[order],
        which=[which[i] for i in order],
        residuals=res[order],
        converged=converged[order],
        eigenvectors=None if not eigenvectors else vectors[torch.as_tensor(order.copy())],
        steps=steps,
        alpha=np.array(alpha),
        beta=np.array(beta[:steps - 1]),
    )


def _wanted(m: int, top_k: int, bottom_k: int) -> np.ndarray:
    """Indices (into ascending Ritz values) of the top then the bottom ones; empty
    while there are too few Ritz values to tell them apart."""
    if m < top_k + bottom_k:
        return np.array([], dtype=int)
    top = np.arange(m - 1, m - 1 - top_k, -1)
    bottom = np.arange(bottom_k)
    return np.concatenate([top, bottom]).astype(int)
