"""Reductions over parameter-sized vectors, accumulated in float64.

A float32 sum of ten million terms carries a relative error of order 1e-4 on
this kind of hardware (a Gaussian vector of 11.2 M elements: ``norm`` off by
4.4e-4, a dot product by 6e-5), enough to bias Lanczos' eigenvalues and to
make its residual estimates claim accuracy the vectors do not have.  Every
norm, dot product and orthogonalisation coefficient of the Hessian estimators
goes through this module: float32 operands are cast to float64 a slice of
columns at a time (never a float64 copy of a whole basis), and the result
stays on the device, so one host synchronisation per step suffices.

Example — the float64 norm of a float32 vector::

    >>> import torch
    >>> v = torch.full((3,), 2.0)
    >>> float(row_norms(v[None])[0]) ** 2
    12.0
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_ELEMENTS = 2**22  # float64 elements cast per slice (32 MB)
REORTH_RATIO = 0.5 ** 0.5  # a second Gram–Schmidt pass when a pass keeps less of the norm


def _width(rows: int, dim: int) -> int:
    return max(4096, min(dim, CHUNK_ELEMENTS // max(rows, 1)))


def gram(A: torch.Tensor, B: torch.Tensor | None = None) -> torch.Tensor:
    """``A Bᵀ`` (rows against rows, ``B = A`` by default) as a float64 tensor on
    the operands' device."""
    B = A if B is None else B
    if A.dtype == torch.float64 and B.dtype == torch.float64:
        return A @ B.T
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float64, device=A.device)
    width = _width(A.shape[0] + B.shape[0], A.shape[1])
    for s in range(0, A.shape[1], width):
        out.addmm_(A[:, s:s + width].double(), B[:, s:s + width].double().T)
    return out


def row_dots(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``(A_i · B_i)_i`` for equally shaped ``(n, dim)`` operands, in float64."""
    if A.dtype == torch.float64 and B.dtype == torch.float64:
        return torch.einsum("nd,nd->n", A, B)
    out = torch.zeros(A.shape[0], dtype=torch.float64, device=A.device)
    width = _width(2 * A.shape[0], A.shape[1])
    for s in range(0, A.shape[1], width):
        out += torch.einsum("nd,nd->n", A[:, s:s + width].double(), B[:, s:s + width].double())
    return out


def row_norms(A: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each row of ``(n, dim)`` ``A``, in float64."""
    return row_dots(A, A).clamp_min_(0).sqrt_()


def project_out(W: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``W − (W Qᵀ) Q`` in place (classical Gram–Schmidt of every row of ``W``
    against the orthonormal rows of ``Q``), coefficients in float64."""
    if len(Q):
        W.sub_(gram(W, Q).to(W.dtype) @ Q)
    return W


def orthogonalize(W: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Rows of ``W`` (in place) minus their projection on the rows of ``Q``,
    repeated when a pass removed most of a row and so left it inaccurate (the
    Daniel–Gragg–Kaufman–Stewart test: "twice is enough").  Each pass reads the
    whole of ``Q``, the main cost besides the products when the dimension is
    large."""
    if not len(Q):
        return W
    before = row_norms(W)
    project_out(W, Q)
    if bool((row_norms(W) < REORTH_RATIO * before).any()):
        project_out(W, Q)
    return W


def orthogonalize_each(W: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Row ``n`` of ``W`` (``n × dim``, in place) orthogonalised against its own
    basis ``Q[n]`` (``n × j × dim``), as :func:`orthogonalize` does for one row."""
    def coefficients() -> torch.Tensor:
        if W.dtype == torch.float64:
            return torch.einsum("njd,nd->nj", Q, W)
        out = torch.zeros(Q.shape[:2], dtype=torch.float64, device=W.device)
        width = _width(Q.shape[0] * (Q.shape[1] + 1), W.shape[1])
        for s in range(0, W.shape[1], width):
            out += torch.einsum("njd,nd->nj", Q[..., s:s + width].double(),
                                W[:, s:s + width].double())
        return out

    before = row_norms(W)
    for second in (False, True):
        W.sub_(torch.einsum("nj,njd->nd", coefficients().to(W.dtype), Q))
        if second or not bool((row_norms(W) < REORTH_RATIO * before).any()):
            break
    return W


def orthonormal_factor(R: torch.Tensor, threshold: float, in_place: bool = False
                       ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Split ``R`` (``p × dim``) as ``R ≈ Bᵀ X`` with orthonormal rows ``X``.

    From the float64 Gram matrix ``R Rᵀ = U Λ Uᵀ``: ``X = Λ^{−1/2} Uᵀ R`` and
    ``B = Λ^{1/2} Uᵀ``.  Directions with ``√λ ≤ threshold`` are rank-deficient:
    their rows of ``X`` are left zero (for the caller to replace) and their rows
    of ``B`` are zero.  Returns ``(X, B, kept)`` with ``B`` a float64 array and
    ``kept`` a boolean mask over the rows.
    """
    G = gram(R).cpu().numpy()
    lam, U = np.linalg.eigh((G + G.T) / 2)
    lam, U = lam[::-1], U[:, ::-1]  # the strongest directions first
    kept = lam > max(threshold, 0.0) ** 2
    root = np.sqrt(np.clip(lam, 0, None))
    inv = np.where(kept, 1 / np.where(kept, root, 1), 0.0)
    coeff = torch.as_tensor((U * inv[None, :]).T.copy(), dtype=R.dtype, device=R.device)
    if in_place:  # X overwrites R a slice of columns at a time: no second copy
        width = _width(2 * R.shape[0], R.shape[1])
        for s in range(0, R.shape[1], width):
            R[:, s:s + width] = coeff @ R[:, s:s + width]
        X = R
    else:
        X = coeff @ R
    B = (U * np.where(kept, root, 0.0)[None, :]).T
    return X, B, kept
