"""The exact path for small operators: the dense Hessian and its eigendecomposition.

For an operator of dimension ``n`` the whole matrix costs ``n`` Hessian-vector
products (the columns ``H e_i``, in batches of :data:`COLUMN_BATCH`), and
``eigh`` (LAPACK's ``syevd``, ``O(n³)``) gives every eigenvalue to rounding.
From them the ends, the trace ``Σ λ_i``, the density and its masses follow
exactly: the density is that of the ``n`` eigenvalues with weight ``1/n`` each,
broadened by the same Gaussian ``σ`` as stochastic Lanczos quadrature (1 % of
the spectral range by default), and the masses are that density's below
``−ε``, within ``±ε`` and above ``ε`` — the quantities SLQ estimates, here
without quadrature or sampling error.

The iterative path spends a fixed number of products whatever ``n`` (Lanczos
about ``max(2k + 1, 20)`` and more, SLQ ``runs × steps``, Hutch++ its probes),
so below some ``n`` the dense matrix is cheaper and exact.
:func:`choose_method` picks by that crossover: the dense path when its ``n``
columns cost no more than the products the iterative path would spend
(:func:`iterative_products`, weighed by the measured cost of a batched column
against a Lanczos product, :data:`COLUMN_COST`) and the matrix and ``eigh``'s
workspace fit the memory budget.  ``bench/RESULTS.md`` records the crossover.

Example — a diagonal operator is its own spectrum::

    >>> import torch
    >>> from landscape.hessian.hvp import DenseOperator
    >>> values, _, _ = dense_eigh(DenseOperator(torch.diag(torch.tensor([3.0, -1.0, 2.0]))))
    >>> [float(v) for v in values]
    [-1.0, 2.0, 3.0]
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import LandscapeError
from ..memory import memory_budget, require
from .hvp import HessianOperator
from .lanczos import DEFAULT_MIN_STEPS, LanczosResult

METHODS = ("auto", "dense", "lanczos")
COLUMN_BATCH = 64  # columns H e_i per call of the operator
# The CPU time of one column of the dense matrix (a product on the float64 copy,
# no orthogonalisation) over that of one product of the iterative path on the
# model as it is: 0.5 on small MLPs (the iteration pays for its reductions), 1-2
# on small CNNs (float64 convolutions are slow on the CPU: cnn width 2 with 518
# parameters, the dense path took 26 s of CPU against 19 s for 765 products of the
# iterative one); bench/dense_crossover.py, bench/RESULTS.md 2026-12-03.
COLUMN_COST = 1.0
# Beyond this dimension eigh's O(n³) dominates whatever the products cost
# (16 s of one core at n = 4096, 1.3 s at 2000); the dense path is then never automatic.
DENSE_MAX_DIM = 4096


def dense_bytes(dim: int) -> int:
    """Memory of the dense path: the float64 matrix, its eigenvectors and
    ``eigh``'s workspace (about ``3 n²`` float64)."""
    return 3 * dim * dim * 8


def iterative_products(top_k: int, bottom_k: int, density: bool, trace: bool,
                       density_runs: int, density_steps: int, trace_probes: int) -> int:
    """A lower bound on the products of the iterative path for this request:
    Lanczos' minimum basis ``max(2k + 1, 20)`` (a converged run takes more),
    SLQ's ``runs × steps`` and Hutch++'s probes."""
    k = top_k + bottom_k
    return ((max(2 * k + 1, DEFAULT_MIN_STEPS) if k else 0)
            + (density_runs * density_steps if density else 0)
            + (trace_probes if trace else 0))


def choose_method(method: str, dim: int, planned: int, device, max_memory=None) -> str:
    """``"dense"`` or ``"lanczos"`` for ``method`` (``auto``, ``dense``,
    ``lanczos``) on an operator of dimension ``dim`` whose iterative path would
    spend at least ``planned`` products.  ``dense`` asked for explicitly is
    refused, with the size it needs, when the matrix does not fit the budget."""
    if method not in METHODS:
        raise LandscapeError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "lanczos":
        return method
    budget = memory_budget(device, max_memory)
    if method == "dense":
        require(dense_bytes(dim), budget, f"the dense Hessian of {dim} parameters",
                "use method lanczos or raise --max-memory")
        return method
    cheaper = COLUMN_COST * dim <= planned
    fits = dim <= DENSE_MAX_DIM and dense_bytes(dim) <= budget
    return "dense" if cheaper and fits else "lanczos"


def dense_eigh(op: HessianOperator) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """All eigenvalues of ``op`` (ascending, float64), their eigenvectors (the
    columns of a float64 matrix) and the float64 matrix itself, from its ``dim``
    columns (symmetrised: ``(H + Hᵀ)/2``)."""
    n = op.dim
    H = torch.empty(n, n, dtype=torch.float64)
    for i in range(0, n, COLUMN_BATCH):
        rows = min(COLUMN_BATCH, n - i)
        eye = torch.zeros(rows, n, dtype=op.dtype, device=op.device)
        eye[:, i:i + rows] = torch.eye(rows, dtype=op.dtype, device=op.device)
        H[i:i + rows] = op.matmat(eye).to(device="cpu", dtype=torch.float64)
        del eye
    H = (H + H.T) / 2
    values, vectors = torch.linalg.eigh(H)
    return values.numpy(), vectors, H


def dense_ends(values: np.ndarray, vectors: torch.Tensor, H: torch.Tensor, top_k: int,
               bottom_k: int,
               eigenvectors: bool = False) -> LanczosResult:
    """The ``top_k`` largest and ``bottom_k`` smallest eigenpairs of the dense
    ``H`` in the form of :class:`LanczosResult` (descending), each with its
    explicit residual ``‖H v − λ v‖`` in float64 and ``converged`` true."""
    n = len(values)
    if top_k + bottom_k > n:
        raise LandscapeError(f"top_k + bottom_k: at most the dimension {n}, "
                             f"got {top_k + bottom_k}")
    index = np.concatenate([np.arange(n - 1, n - 1 - top_k, -1), np.arange(bottom_k)[::-1]])
    index = index.astype(int)
    which = ["top"] * top_k + ["bottom"] * bottom_k
    chosen = torch.as_tensor(values[index])
    V = vectors[:, torch.as_tensor(index)].T  # rows
    residuals = (V @ H - chosen[:, None] * V).norm(dim=1).numpy() if len(index) else np.zeros(0)
    return LanczosResult(
        eigenvalues=chosen.numpy(), which=which, residuals=residuals,
        estimates=residuals.copy(), converged=np.ones(len(index), dtype=bool),
        eigenvectors=V.clone() if eigenvectors else None, steps=0, block_size=0,
        T=np.zeros((0, 0)), runs=[])
