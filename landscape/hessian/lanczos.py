"""Block Lanczos with full reorthogonalisation: extreme eigenpairs of a
symmetric operator, multiplicities included.

Lanczos (1950), *An iteration method for the solution of the eigenvalue problem
of linear differential and integral operators*, J. Res. Nat. Bur. Standards 45;
the block form follows Golub & Underwood (1977), *The block Lanczos method for
computing eigenvalues*, and the convergence test Parlett, *The Symmetric
Eigenvalue Problem* (1998), ch. 13.

A single-vector Krylov space holds one direction of every eigenspace: an
eigenvalue of multiplicity 3 shows up once, and the next eigenvalues take the
places of its copies.  From a block of ``p`` orthonormal start rows ``X_1`` the
iteration builds an orthonormal basis ``Q = [X_1; …; X_j]`` of the block Krylov
space ``span{X_1, X_1 H, …, X_1 H^{j−1}}`` with

    X_j H = B_{j−1} X_{j−1} + A_j X_j + B_jᵀ X_{j+1},

so ``Q H Qᵀ = T`` is block tridiagonal (symmetric ``p × p`` blocks ``A_j`` on
the diagonal, ``B_j`` beside it).  Such a space holds up to ``p`` directions of
each eigenspace, so multiplicities up to ``p`` are resolved.  The ``p`` products
of one step go to the operator together (one batched backward pass where the
operator batches its probes).  Every new block is orthogonalised against the
whole basis (classical Gram–Schmidt, a second pass when the first removed most
of a row: "twice is enough") and split as ``R = B_jᵀ X_{j+1}`` through the
eigen-decomposition of its Gram matrix; rank-deficient directions (an invariant
subspace, e.g. a low-rank or zero operator) are replaced by random rows
orthogonal to the basis, with zero coupling.  All coefficients, norms and dot
products are accumulated in float64 (:mod:`.reductions`), whatever the dtype of
the vectors, and ``T`` is diagonalised in float64: ``T = S Θ Sᵀ``.

A Ritz pair ``(θ_i, y_i = s_iᵀ Q)`` has the residual estimate
``‖y_i H − θ_i y_i‖ = ‖s_iᵀ R‖`` (``R`` the last orthogonalised block), which
costs no product.  Once the estimates of the wanted ``top_k`` largest and
``bottom_k`` smallest pairs are at most ``tol · max_i |θ_i|`` the Ritz vectors
are formed and their residuals ``‖H y − θ y‖`` recomputed explicitly: from
the products of the basis rows, kept beside the basis where a second basis
fits the memory budget, else with ``top_k + bottom_k`` fresh products.  A pair
is *converged* only when both the estimate and the explicit residual are within
the tolerance.  (Rounding in the
products bounds what the explicit residual can reach, about ``eps · ‖H‖`` for
the vectors' dtype; a tolerance below that is reported as not converged rather
than trusted.)  When the explicit check fails the iteration continues with a
ten times tighter target for the estimates.  Then some eigenvalue of ``H`` lies
within the residual of ``θ_i`` (and within residual²/gap when it is isolated).

Multiplicities at the price of a block of 2.  In exact arithmetic, from start
rows in general position, a block-``p`` Krylov space holds exactly
``min(r, p)`` directions of an eigenspace of multiplicity ``r`` (the start
block's projection onto it has that rank with probability one), so once
converged it shows each eigenvalue ``min(r, p)`` times: single-vector Krylov
(``p = 1``) finds one copy of each distinct eigenvalue and lets the next ones
take the places of the others.  Hence a converged wanted eigenvalue that shows
``c < p`` times has multiplicity exactly ``c``; only one that shows ``p``
times may hide more.  The default (``block_size=None``) starts with ``p = 2``,
the narrowest block that can show a multiplicity, and after convergence looks
at each end for clusters: neighbouring converged Ritz values within the sum of
their residuals (each is within its residual of an eigenvalue, so values
further apart are distinct eigenvalues).  A cluster of ``p`` or more values
that does not reach the last wanted slot may hide copies that belong among the
wanted ones: then the run restarts from fresh random rows with the block
doubled (at most ``max(top_k, bottom_k)``), and the test repeats.
Guarantee: at the end every wanted converged eigenvalue appears as often as it
is repeated (up to the wanted slots left), the same as a block of
``max(top_k, bottom_k)`` from the start, in exact arithmetic and with
probability one over the start.  The wider block is paid only where ``p``
converged values agree within their residuals: a real multiplicity, or a
cluster tighter than the tolerance can tell from one.  Why 2 and not 1: a
single vector cannot show a multiplicity at all, and a second sequence started
after the first has converged needs about as many products again before a
hidden copy could converge in it; block 2 runs both sequences at once (the
xavier ``cnn`` top-5 on 128 digits: 34 products, against 24 for block 1, which
has no such guarantee, and 60 for a block of 5).  A given ``block_size`` is
used as it is, without restarts.  The basis is allocated once per run,
``max_steps`` rows (products) of the operator's dimension, planned for the
widest block the run may reach, and the memory for it is checked against the
budget of :mod:`landscape.memory` before anything is computed.

Example — ``diag(1, …, 10)`` with 10 twice has top eigenvalues 10, 10::

    >>> import torch
    >>> from landscape.hessian.hvp import DenseOperator
    >>> d = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 10, 10], dtype=torch.float64)
    >>> res = lanczos(DenseOperator(torch.diag(d)), top_k=2, tol=1e-8)
    >>> [round(float(v), 8) for v in res.eigenvalues]
    [10.0, 10.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh

from ..errors import LandscapeError
from ..memory import memory_budget, require, total_memory
from .hvp import HessianOperator
from .reductions import REORTH_RATIO, gram, orthogonalize, orthonormal_factor, row_norms

START_BLOCK = 2  # the default first block: the narrowest that shows a multiplicity
BREAKDOWN = 1e-10  # a norm below this (relative to ‖T‖ so far) means an invariant subspace
DEFAULT_MAX_STEPS = 300
# Products before a Ritz pair may count as converged, by default: max(2k + 1, this),
# as ARPACK's default Krylov dimension.  A Hessian whose bulk is a vast near-null
# space (resnet18: most of its 11 M dimensions) gives Ritz values ≈ 0 with tiny
# residuals after a few products, which pass for λmin before the negative outliers
# have entered the Krylov space (a trained resnet18-noskip: −0.001 after 5
# products, −73 from about 15 on).
DEFAULT_MIN_STEPS = 20
# By default on the CPU a Krylov basis (and its working rows) takes at most this
# share of physical memory: on a 24 GiB machine 3.9 GB, so that a resnet18 basis
# plus the model and its autograd graph peak under 6 GB.
CPU_BASIS_SHARE = 0.15


@dataclass
class LanczosResult:
    """Ritz pairs of the wanted end(s) of the spectrum, sorted by descending eigenvalue."""

    eigenvalues: np.ndarray          # (k,) float64, descending
    which: list[str]                 # "top" / "bottom" for each eigenvalue
    residuals: np.ndarray            # (k,) explicit ‖H y − θ y‖ of the returned vectors
    estimates: np.ndarray            # (k,) the Krylov estimate ‖sᵀ R‖ of the same residuals
    converged: np.ndarray            # (k,) bool: estimate and explicit residual within tol
    eigenvectors: torch.Tensor | None  # (k, dim) unit rows, or None
    steps: int                       # basis size (products with H in the Krylov space)
    block_size: int
    T: np.ndarray                    # the projected matrix Q H Qᵀ (block tridiagonal)
    runs: list = None                # (block size, basis size) of every run, the last one above


def _random_rows(n: int, dim: int, dtype, device, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, dim, generator=generator, dtype=dtype, device="cpu").to(device)


def _next_block(R: torch.Tensor, Q: torch.Tensor, scale: float,
                generator: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """``R = Bᵀ X`` with ``X`` orthonormal and orthogonal to ``Q``; deficient
    directions become random rows orthogonal to everything, with zero coupling."""
    X, B, kept = orthonormal_factor(R, BREAKDOWN * scale)
    norms = np.sqrt(np.clip(np.diag(B.T @ B), 0, None))
    if kept.any() and np.sqrt((B ** 2).sum(axis=1))[kept].min() < REORTH_RATIO * norms.max():
        # Cancellation within the block: the small directions carry the rounding
        # of the large ones; orthogonalise once more and fold the correction into B.
        X2, B2, _ = orthonormal_factor(orthogonalize(X[kept], Q), 0.0)
        X[kept] = X2
        B[kept] = B2 @ B[kept]
    for i in np.flatnonzero(~kept):
        row = _random_rows(1, X.shape[1], X.dtype, X.device, generator)
        before = float(row_norms(row)[0])
        for _ in range(2):
            row = orthogonalize(orthogonalize(row, Q), X[kept])
        norm = float(row_norms(row)[0])
        if norm > torch.finfo(X.dtype).eps ** 0.5 * before:  # else the basis spans everything
            X[i] = row[0] / norm
            kept[i] = True
    return X[kept], B[kept]


def basis_budget(device, max_memory=None) -> int:
    """Bytes a Krylov basis may take: the budget of :mod:`landscape.memory`,
    and by default on the CPU (no ``max_memory``, no ``LANDSCAPE_MAX_MEMORY``)
    at most :data:`CPU_BASIS_SHARE` of physical memory."""
    import os

    budget = memory_budget(device, max_memory)
    kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
    if max_memory is None and not os.environ.get("LANDSCAPE_MAX_MEMORY") and kind == "cpu":
        budget = min(budget, int(CPU_BASIS_SHARE * total_memory()))
    return int(budget)


def working_rows(k: int, p: int, eigenvectors: bool) -> int:
    """Vectors Lanczos holds besides its basis: the current block, its products
    and the next (``3p``); then the Ritz vectors (all ``k`` when they are
    returned, else one at a time) and their products, one at a time."""
    return 3 * p + (2 * k if eigenvectors else 2)


def lanczos_steps(dim: int, itemsize: int, k: int, p: int, budget: int,
                  max_steps: int | None = None, eigenvectors: bool = True) -> int:
    """The basis size (rows): ``max_steps`` checked against ``budget`` (bytes),
    or by default ``max(300, 4k)`` fitted to it; refused with the size when not
    even the smallest useful basis fits."""
    vector = dim * itemsize
    extra = working_rows(k, p, eigenvectors)
    hint = "lower --max-steps or raise --max-memory"
    if max_steps is not None:
        require((max_steps + extra) * vector, budget,
                f"Lanczos with a basis of {max_steps} vectors of {dim}", hint)
        return max_steps
    wanted = min(max(DEFAULT_MAX_STEPS, 4 * k), dim)
    least = min(k + 2 * p, dim)
    require((least + extra) * vector, budget,
            f"Lanczos with its smallest basis ({least} vectors of {dim})", hint)
    return int(max(least, min(wanted, budget // vector - extra)))


def lanczos(op: HessianOperator, top_k: int = 5, bottom_k: int = 0, tol: float = 1e-4,
            max_steps: int | None = None, seed: int = 0, start: torch.Tensor | None = None,
            eigenvectors: bool = True, min_steps: int | None = None,
            block_size: int | None = None, max_memory=None) -> LanczosResult:
    """The ``top_k`` largest and ``bottom_k`` smallest eigenpairs of ``op``.

    ``block_size`` is the number of rows per block, the largest multiplicity
    resolved; by default 2, doubled by a restart (up to ``max(top_k, bottom_k)``)
    only while a converged cluster may hide copies of a wanted eigenvalue (see
    the module docstring; ``runs`` lists each run's block and basis size).  ``max_steps`` caps the basis
    size, i.e. the products with ``op`` in the Krylov space (default
    ``max(300, 4 (top_k + bottom_k))``, less if the basis would not fit the
    memory budget ``max_memory``, see :func:`landscape.memory.memory_budget`);
    ``min_steps`` (default ``max(2k + 1, 20)``, at most ``max_steps``) is the
    basis size before any pair may count as converged: a residual says that
    ``θ`` is *an* eigenvalue, not that it is an extreme one, and a
    short run can converge on the bulk before an outlier enters its Krylov
    space.  ``start`` seeds the first row of
    the first block.  ``eigenvectors=False`` returns no vectors (they are
    formed anyway, for the explicit residuals).
    """
    k = top_k + bottom_k
    if top_k < 0 or bottom_k < 0 or k < 1:
        raise LandscapeError(f"top_k, bottom_k: need top_k + bottom_k >= 1 and both >= 0, "
                             f"got top_k={top_k}, bottom_k={bottom_k}")
    dim = op.dim
    if k > dim:
        raise LandscapeError(f"top_k + bottom_k: at most the dimension {dim}, got {k}")
    if not tol > 0:
        raise LandscapeError(f"tol: must be > 0, got {tol}")
    if block_size is not None and block_size < 1:
        raise LandscapeError(f"block_size: must be >= 1, got {block_size}")
    adaptive = block_size is None
    widest = min(max(top_k, bottom_k), dim)  # the most copies one end can want
    p = min(START_BLOCK if adaptive else block_size, dim)
    if max_steps is not None and max_steps < k:
        raise LandscapeError(f"max_steps: must be >= top_k + bottom_k = {k}, got {max_steps}")
    itemsize = torch.empty((), dtype=op.dtype).element_size()
    budget = memory_budget(op.device, max_memory) if max_steps is not None \
        else basis_budget(op.device, max_memory)
    # Planned for the widest block the run may reach.
    keep_vectors = eigenvectors
    max_steps = min(lanczos_steps(dim, itemsize, k, max(p, widest) if adaptive else p, budget,
                                  max_steps, keep_vectors), dim)
    if min_steps is None:
        min_steps = max(2 * k + 1, DEFAULT_MIN_STEPS)
    min_steps = min(max(min_steps, k), max_steps)
    generator = torch.Generator().manual_seed(seed)
    rows = None if start is None else start.detach().reshape(1, -1)
    runs = []
    while True:
        res = _block_lanczos(op, top_k, bottom_k, tol, max_steps, min_steps, p, generator, rows,
                             keep_vectors, budget)
        runs.append((p, res.steps))
        clusters = hidden_copies(res, top_k, bottom_k, p) if adaptive and p < widest else []
        if not clusters:
            break
        # A fresh start: rows seeded with converged Ritz vectors would have residuals
        # near the rounding of the products, and normalising those blocks amplifies it.
        p = min(widest, 2 * p)
        del res
    res.runs = runs
    if not eigenvectors:
        res.eigenvectors = None
    return res


def hidden_copies(res: LanczosResult, top_k: int, bottom_k: int, p: int) -> list[np.ndarray]:
    """Clusters of a block-``p`` result that may hide further copies of one
    eigenvalue inside the wanted slots (indices into ``res.eigenvalues``).

    Walking each end inwards, neighbouring converged Ritz values ``θ_a, θ_b``
    belong to one cluster when ``|θ_a − θ_b| ≤ r_a + r_b`` (their explicit
    residuals): each lies within its residual of an eigenvalue of ``H``, so
    values further apart approximate distinct eigenvalues, and values closer
    may be copies of one.  A cluster of at least ``p`` values may hold ``p``
    copies of an eigenvalue of higher multiplicity; it matters only when the
    slot after it is still a wanted one (the hidden copies would take it)."""
    values, residuals, ok = res.eigenvalues, res.residuals, res.converged
    which = np.asarray(res.which)
    out = []
    for end, k in (("top", top_k), ("bottom", bottom_k)):
        index = np.flatnonzero(which == end)  # descending values
        if end == "bottom":
            index = index[::-1]  # inwards from the smallest
        start = 0
        for i in range(1, len(index) + 1):
            a, b = index[i - 1], index[i] if i < len(index) else None
            together = b is not None and ok[a] and ok[b] and \
                abs(values[a] - values[b]) <= residuals[a] + residuals[b]
            if together:
                continue
            size = i - start
            if size >= p and ok[index[start]] and i < k:
                out.append(index[start:i])
            start = i
    return out


def _block_lanczos(op: HessianOperator, top_k: int, bottom_k: int, tol: float, max_steps: int,
                   min_steps: int, p: int, generator: torch.Generator,
                   start: torch.Tensor | None, eigenvectors: bool, budget: int) -> LanczosResult:
    """One block-``p`` run from random rows (the first of them ``start``, if given)."""
    k, dim = top_k + bottom_k, op.dim
    itemsize = torch.empty((), dtype=op.dtype).element_size()
    basis = torch.empty(max_steps, dim, dtype=op.dtype, device=op.device)
    # Where a second basis fits the budget, the products themselves are kept, and the
    # explicit residuals are formed from them (H is linear: H sᵀQ = sᵀ(HQ)) instead of
    # from k fresh products.
    vector = dim * itemsize
    keep = (2 * max_steps + working_rows(k, p, eigenvectors)) * vector <= budget
    products = torch.empty(max_steps, dim, dtype=op.dtype, device=op.device) if keep else None
    X = _random_rows(p, dim, op.dtype, op.device, generator)
    if start is not None:
        X[:len(start)] = start.to(device=op.device, dtype=op.dtype)
    X, _ = _next_block(X, basis[:0], 1.0, generator)
    T = np.zeros((max_steps, max_steps))
    m = 0                   # rows of the basis filled
    previous = None         # (rows of the previous block, B coupling it to the current one)
    scale = 0.0
    target = tol            # the estimates must reach target · max|θ| before a check
    checked = None          # (m, vectors, values, explicit residuals) of the last explicit check
    while True:
        X = X[:max_steps - m]
        rows = slice(m, m + len(X))
        basis[rows] = X
        W = op.matmat(X)  # fresh memory, updated in place below
        if products is not None:
            products[rows] = W
        A = gram(X, W).cpu().numpy()
        A = (A + A.T) / 2
        T[rows, rows] = A
        # The block three-term recurrence first, so that what full reorthogonalisation
        # removes is rounding error and one pass over the basis usually suffices.
        W.sub_(torch.as_tensor(A, dtype=op.dtype, device=op.device) @ X)
        if previous is not None:
            prev_rows, B = previous
            W.sub_(torch.as_tensor(B, dtype=op.dtype, device=op.device) @ basis[prev_rows])
        m += len(X)
        R = orthogonalize(W, basis[:m])
        G = gram(R).cpu().numpy()
        scale = max(scale, np.abs(A).max(), float(np.sqrt(max(np.trace(G), 0.0))))
        X = B = None
        if m < max_steps and m < dim:
            X, B = _next_block(R, basis[:m], scale, generator)
        done = X is None or not len(X)
        if m >= min_steps or done:
            theta, S = eigh(T[:m, :m])
            wanted = _wanted(m, top_k, bottom_k)
            last = S[rows][:, wanted]
            estimates = np.sqrt(np.clip(np.einsum("iw,ij,jw->w", last, G, last), 0, None))
            bound = max(np.abs(theta).max(), np.finfo(float).tiny)
            if np.all(estimates <= target * bound) or done:
                checked = _explicit(op, basis[:m], theta[wanted], S[:, wanted], eigenvectors,
                                    None if products is None else products[:m])
                failing = checked[2] > tol * bound
                if done or not failing.any() or np.any(checked[2] > 100 * estimates):
                    break  # converged, out of steps, or at the precision of the products
                target /= 10
        B = B[:max_steps - m]
        T[m:m + len(B), rows] = B
        T[rows, m:m + len(B)] = B.T
        previous = (rows, B)
    vectors, values, residuals = checked
    converged = (residuals <= tol * bound) & (estimates <= tol * bound)
    which = ["top"] * top_k + ["bottom"] * bottom_k
    order = np.argsort(-values, kind="stable")
    return LanczosResult(
        eigenvalues=values[order],
        which=[which[i] for i in order],
        residuals=residuals[order],
        estimates=estimates[order],
        converged=converged[order],
        eigenvectors=vectors[torch.as_tensor(order.copy(), device=vectors.device)]
        if eigenvectors else None,
        steps=m,
        block_size=p,
        T=T[:m, :m].copy(),
    )


def _explicit(op: HessianOperator, Q: torch.Tensor, values: np.ndarray, S: np.ndarray,
              keep: bool = True, HQ: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor | None, np.ndarray, np.ndarray]:
    """Unit Ritz vectors ``Sᵀ Q`` and their residuals ``‖H y − θ y‖`` (float64
    norms), ``H y`` from a fresh product, or, given the products ``HQ`` of the
    basis rows, as ``Sᵀ HQ``: the same vector up to the rounding of the products,
    with no product spent.  One vector at a time; the vectors are kept (and
    returned) only when ``keep``."""
    coeff = torch.as_tensor(S.T.copy(), dtype=op.dtype, device=op.device)
    theta = torch.as_tensor(values, dtype=op.dtype, device=op.device)
    vectors = torch.empty(len(values), Q.shape[1], dtype=op.dtype, device=op.device) \
        if keep else None
    residuals = np.zeros(len(values))
    for i in range(len(values)):
        y = coeff[i:i + 1] @ Q
        norm = row_norms(y).to(y.dtype)[:, None]
        y.div_(norm)
        hy = op.matmat(y) if HQ is None else (coeff[i:i + 1] @ HQ).div_(norm)
        hy.sub_(theta[i] * y)
        residuals[i] = float(row_norms(hy)[0])
        if keep:
            vectors[i] = y[0]
        del y, hy
    return vectors, values, residuals


def _wanted(m: int, top_k: int, bottom_k: int) -> np.ndarray:
    """Indices (into ascending Ritz values) of the top then the bottom ones; empty
    while there are too few Ritz values to tell them apart."""
    if m < top_k + bottom_k:
        return np.array([], dtype=int)
    top = np.arange(m - 1, m - 1 - top_k, -1)
    bottom = np.arange(bottom_k)
    return np.concatenate([top, bottom]).astype(int)
