"""The default Lanczos block (landscape.hessian.lanczos): a block of 2, widened
only where a converged cluster may hide copies of a wanted eigenvalue.

Ground truth: synthetic operators ``Q diag(λ) Qᵀ`` with known spectra, and the
dense Hessian of a small network.  Products are counted by the operator
(``n_products``), never timed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import landscape
from landscape.hessian import DenseOperator, LossHessian, hessian_spectrum, lanczos
from landscape.hessian.lanczos import hidden_copies

F64 = torch.float64
NOISE = np.random.default_rng(1).uniform(-1, 1, 195)
DISTINCT = np.concatenate([[10.0, 8.0, 6.5, 5.5, 4.8], NOISE])  # isolated ends, no multiplicity
TRIPLE = np.concatenate([[5.0, 5.0, 5.0, 4.0, 3.0], NOISE])
QUADRUPLE = np.concatenate([[7.0, 7.0, 7.0, 7.0, 6.0], NOISE])


def _synthetic(spectrum, seed: int = 0) -> tuple[DenseOperator, torch.Tensor]:
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(spectrum),) * 2))
    H = torch.as_tensor(basis @ np.diag(spectrum) @ basis.T)
    return DenseOperator(H), H


def _products(spectrum, **kw) -> tuple[int, object]:
    op, _ = _synthetic(spectrum)
    res = lanczos(op, eigenvectors=False, **kw)
    return op.n_products, res


def test_default_spends_the_products_of_a_block_of_two_without_multiplicity():
    # Five isolated top eigenvalues: one run of block 2, exactly the products of an
    # explicit block-2 run, far fewer than the block of 5 the wanted count would take.
    n_default, res = _products(DISTINCT, top_k=5, tol=1e-8)
    n_two, two = _products(DISTINCT, top_k=5, tol=1e-8, block_size=2)
    n_five, _ = _products(DISTINCT, top_k=5, tol=1e-8, block_size=5)
    assert res.runs == [(2, res.steps)] and res.block_size == 2
    assert n_default == n_two == two.steps == res.steps  # products kept: no product beyond
    assert n_default <= 0.8 * n_five
    np.testing.assert_allclose(res.eigenvalues, DISTINCT[:5], rtol=1e-10)
    assert res.converged.all()


def test_default_product_count_on_a_network_is_a_block_of_two():
    # The same on a real loss Hessian, counted by the operator: hessian_spectrum's
    # products are those of one block-2 run.
    model = landscape.build_model("mlp", init="xavier", bias_scale=0.5, width=5, depth=1,
                                  in_shape=(1, 3, 3), num_classes=3, activation="tanh").double()
    x, y = landscape.load_dataset("digits", n=32, in_shape=model.in_shape)
    x, y = x.double(), y % 3
    ds = hessian_spectrum(model, x, y, top_k=3, method="lanczos")
    op = LossHessian(model, x, y)
    two = lanczos(op, top_k=3, eigenvectors=False, block_size=2)
    assert ds.attrs["lanczos_blocks"] == "2" and ds.attrs["block_size"] == 2
    assert int(ds.n_hvp) == op.n_products == two.steps
    dense = torch.linalg.eigvalsh(LossHessian(model, x, y).dense()).numpy()[::-1][:3]
    np.testing.assert_allclose(ds.eigenvalue.values, dense, rtol=1e-6)


@pytest.mark.parametrize("spectrum, kw, expected, blocks", [
    # The triple shows twice in block 2 and fills wanted slots: restart with block 3.
    (TRIPLE, dict(top_k=3), [5, 5, 5], [2, 3]),
    # Block 2 -> 4 (the triple shows 3 < 4 times: its multiplicity is settled).
    (TRIPLE, dict(top_k=5), [5, 5, 5, 4, 3], [2, 4]),
    # The pair of 5s reaches the last wanted top slot: a hidden copy could take no
    # wanted place (the block could grow to 3 for the bottom end, and does not).
    (TRIPLE, dict(top_k=2, bottom_k=3), None, [2]),
    # Four copies: 2 -> 4 (shows 4 = p, next slot wanted) -> 5.
    (QUADRUPLE, dict(top_k=5), [7, 7, 7, 7, 6], [2, 4, 5]),
    # The bottom end, walked inwards from the smallest.
    (-TRIPLE, dict(top_k=1, bottom_k=4), None, [2, 4]),
])
def test_every_wanted_multiplicity_is_found(spectrum, kw, expected, blocks):
    op, _ = _synthetic(spectrum)
    res = lanczos(op, tol=1e-9, **kw)
    truth = np.sort(spectrum)[::-1]
    want = np.concatenate([truth[:kw.get("top_k", 0)], truth[len(truth) - kw.get("bottom_k", 0):]])
    if expected is not None:
        np.testing.assert_allclose(want, expected)
    np.testing.assert_allclose(res.eigenvalues, want, rtol=1e-8, atol=1e-8)
    assert res.converged.all()
    assert [p for p, _ in res.runs] == blocks
    assert op.n_products == sum(n for _, n in res.runs)


def test_a_close_pair_of_distinct_eigenvalues_keeps_the_block_of_two():
    # 5 and 5 - 1e-3 are told apart by residuals of 1e-9: no cluster, no wider block.
    spectrum = np.concatenate([[5.0, 5.0 - 1e-3, 4.0], NOISE])
    op, _ = _synthetic(spectrum)
    res = lanczos(op, top_k=3, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, spectrum[:3], rtol=1e-9)
    assert res.runs == [(2, res.steps)]


def test_a_given_block_size_is_kept_without_restarts():
    # The caller's block is used as it is: block 1 returns the triple once (one copy
    # per distinct eigenvalue, the single-vector guarantee) and does not widen.
    op, _ = _synthetic(TRIPLE)
    res = lanczos(op, top_k=3, tol=1e-8, block_size=1, max_steps=60)
    np.testing.assert_allclose(res.eigenvalues, [5, 4, 3], rtol=1e-6)
    assert res.runs == [(1, res.steps)]


def test_hidden_copies_reads_clusters_against_residuals():
    from landscape.hessian.lanczos import LanczosResult

    def result(values, residuals, which):
        n = len(values)
        return LanczosResult(np.asarray(values, float), which, np.asarray(residuals, float),
                             np.zeros(n), np.ones(n, bool), None, 0, 2, np.zeros((0, 0)))

    top = ["top"] * 4
    # 3.0 and 3.0 + 1e-6 overlap within residuals 1e-5: a cluster of 2 = p before slot 2.
    res = result([3.0 + 1e-6, 3.0, 2.0, 1.0], [1e-5, 1e-5, 1e-5, 1e-5], top)
    assert [list(c) for c in hidden_copies(res, 4, 0, 2)] == [[0, 1]]
    assert hidden_copies(res, 4, 0, 3) == []  # 2 < p = 3 copies: the multiplicity is 2
    assert hidden_copies(res, 2, 0, 2) == []  # the cluster fills the wanted slots
    res = result([3.0 + 1e-3, 3.0, 2.0, 1.0], [1e-5] * 4, top)  # apart: distinct
    assert hidden_copies(res, 4, 0, 2) == []
