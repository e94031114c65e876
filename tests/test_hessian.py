"""Hessian operators and estimators against dense ground truth in float64.

The reference everywhere is ``torch.func.hessian`` of the loss (or of a unit's
activation) as a function of a flat vector, diagonalised by
``torch.linalg.eigvalsh``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyhessian
import pytest
import torch
from torch import nn

import landscape
from landscape.errors import LandscapeError
from landscape.hessian import (
    DenseOperator,
    HessianOperator,
    InputHessian,
    LossHessian,
    hessian_spectrum,
    hutchpp,
    input_hessian_spectrum,
    lanczos,
    negative_mass,
    slq,
    spectral_density,
    spectral_masses,
    top_eigenvectors,
)
from landscape.hessian.reductions import gram, row_dots, row_norms
from landscape.hessian.slq import trapezoid
from landscape.losses import Objective
from landscape.memory import format_bytes
from landscape.models import unit_activations
from landscape.results import load, save

F64 = torch.float64


# ----------------------------------------------------------------------------- fixtures

def _mlp() -> nn.Module:
    return landscape.build_model("mlp", init="xavier", bias_scale=0.5, width=8, depth=2,
                                 in_shape=(1, 3, 3), num_classes=3, activation="tanh").double()


def _cnn() -> nn.Module:
    return landscape.build_model("cnn", init="xavier", bias_scale=0.5, width=2, in_shape=(1, 6, 6),
                                 num_classes=3, activation="tanh").double()


def _bn_net() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(9, 6)), ("bn", nn.BatchNorm1d(6)),
        ("act", nn.Tanh()), ("head", nn.Linear(6, 3)),
    ])).double()
    with torch.no_grad():  # non-trivial running statistics
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
    model.task, model.in_shape, model.default_layer, model.name = "classify", (1, 3, 3), "act", "bn"
    return model


def _data(model: nn.Module, n: int = 64):
    x, y = landscape.load_dataset("digits", n=n, in_shape=model.in_shape)
    return x.to(F64), y % 3


def _flat_params(model: nn.Module):
    named = [(n, p.detach()) for n, p in model.named_parameters()]
    return torch.cat([p.reshape(-1) for _, p in named]), named


def _unflatten(flat, named):
    out, i = {}, 0
    for n, p in named:
        out[n] = flat[i:i + p.numel()].view_as(p)
        i += p.numel()
    return out


def dense_loss_hessian(model: nn.Module, x, y, bn_train: bool = False) -> torch.Tensor:
    flat, named = _flat_params(model)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    if bn_train:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.train()
                m.track_running_stats = False

    def loss(v):
        out = torch.func.functional_call(model, (_unflatten(v, named), buffers), (x,))
        return Objective(model)(out, x, y)

    try:
        if not bn_train:
            return torch.func.hessian(loss)(flat)
        # Row by row: torch.func.hessian (vmapped) returns an asymmetric, wrong matrix
        # for batch-statistics BatchNorm in torch 2.14.
        v = flat.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(v), v, create_graph=True)
        rows = [torch.autograd.grad(g[i], v, retain_graph=True)[0] for i in range(len(flat))]
        return torch.stack(rows).detach()
    finally:
        for m, flag in flags:
            m.training = flag
            if isinstance(m, nn.BatchNorm1d):
                m.track_running_stats = True


@pytest.fixture(scope="module")
def mlp_problem():
    model = _mlp()
    x, y = _data(model)
    H = dense_loss_hessian(model, x, y)
    return model, x, y, H, torch.linalg.eigvalsh(H).numpy()


def _snapshot(model: nn.Module):
    return ({n: p.detach().clone() for n, p in model.named_parameters()},
            {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            {n: b.clone() for n, b in model.named_buffers()},
            [(n, m.training) for n, m in model.named_modules()],
            [p.requires_grad for p in model.parameters()])


def _assert_same(model: nn.Module, snap) -> None:
    params, grads, buffers, flags, req = snap
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), params[n]), n
        assert (p.grad is None) == (grads[n] is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, grads[n]), n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert [(n, m.training) for n, m in model.named_modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == req


# ----------------------------------------------------------------------------- operators

@pytest.mark.parametrize("engine", ["double-backward", "forward-over-reverse"])
@pytest.mark.parametrize("make", [_mlp, _cnn, _bn_net], ids=["mlp", "cnn", "batchnorm"])
def test_hvp_engines_match_dense(make, engine):
    model = make()
    x, y = _data(model, n=24)
    H = dense_loss_hessian(model, x, y)
    V = torch.randn(7, H.shape[0], dtype=F64, generator=torch.Generator().manual_seed(0))
    for batch_probes in (True, False):  # vmapped probes, and one pass per probe
        op = LossHessian(model, x, y, engine=engine, chunk_size=3, batch_probes=batch_probes)
        assert op.dtype == F64 and op.dim == H.shape[0]
        torch.testing.assert_close(op.matmat(V), V @ H, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.matvec(V[0]), H @ V[0], rtol=1e-10, atol=1e-12)
        assert op.n_products == 8


@pytest.mark.parametrize("engine", ["double-backward", "forward-over-reverse"])
def test_batches_weighted_by_size_equal_full_batch(engine):
    model = _mlp()
    x, y = _data(model, n=23)  # batches of 7, 7, 7, 2: the last one must weigh 2/23
    H = dense_loss_hessian(model, x, y)
    op = LossHessian(model, x, y, batch_size=7, engine=engine, batch_probes=True)
    assert len(op.batches) == 4
    torch.testing.assert_close(op.dense(), H, rtol=1e-10, atol=1e-12)


def test_batchnorm_train_mode_uses_batch_statistics():
    model = _bn_net()
    x, y = _data(model, n=16)
    snap = _snapshot(model)
    H = dense_loss_hessian(model, x, y, bn_train=True)
    for engine in ("double-backward", "forward-over-reverse"):
        op = LossHessian(model, x, y, bn="batch", engine=engine)
        torch.testing.assert_close(op.dense(), H, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(H, dense_loss_hessian(model, x, y))
    _assert_same(model, snap)


def test_linear_mse_closed_form():
    # L = 1/(N d) Σ_n ‖W x_n − x_n‖²  =>  H = 2/(N d) · I_d ⊗ XᵀX (row-major vec W)
    d, n = 4, 9
    model = nn.Linear(d, d, bias=False).double()
    model.task = "reconstruct"
    x = torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(3))
    expected = 2 / (n * d) * torch.kron(torch.eye(d, dtype=F64), x.T @ x)
    for engine in ("double-backward", "forward-over-reverse"):
        torch.testing.assert_close(LossHessian(model, x, None, engine=engine).dense(), expected)


def test_gradient_and_loss_match_autograd(mlp_problem):
    model, x, y, _, _ = mlp_problem
    op = LossHessian(model, x, y, batch_size=10)
    model.zero_grad()
    loss = Objective(model)(model(x), x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(op.gradient(), torch.cat([g.reshape(-1) for g in grads]))
    assert op.loss() == pytest.approx(float(loss), rel=1e-12)


# ----------------------------------------------------------------------------- eigenvalues

def test_top_and_bottom_eigenvalues_match_dense(mlp_problem):
    model, x, y, _, exact = mlp_problem
    ds = hessian_spectrum(model, x, y, top_k=4, bottom_k=3, tol=1e-10)
    expected = np.concatenate([exact[::-1][:4], exact[:3][::-1]])
    np.testing.assert_allclose(ds.eigenvalue.values, expected, rtol=1e-6)
    assert np.all(np.diff(ds.eigenvalue.values) <= 0)
    assert list(ds.which.values) == ["top"] * 4 + ["bottom"] * 3
    assert ds.converged.values.all() and ds.converged.dtype == bool
    assert np.all(ds.residual.values <= 1e-10 * np.abs(exact).max())
    assert float(ds.ratio_min_max) == pytest.approx(abs(exact[0] / exact[-1]), rel=1e-6)
    assert ds.attrs["kind"] == "hessian" and int(ds.n_hvp) == ds.attrs["n_hvp"] > 0
    # Far fewer products than the dimension: Lanczos converges on the ends first.
    assert ds.attrs["lanczos_steps"] < op_dim(model)


def op_dim(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lanczos_residual_estimate_is_the_true_residual(mlp_problem):
    model, x, y, H, _ = mlp_problem
    op = LossHessian(model, x, y)
    res = lanczos(op, top_k=3, bottom_k=2, tol=1e-3, seed=1)
    explicit = (res.eigenvectors @ H - torch.as_tensor(res.eigenvalues)[:, None] * res.eigenvectors)
    np.testing.assert_allclose(res.residuals, explicit.norm(dim=1).numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.estimates, explicit.norm(dim=1).numpy(), rtol=1e-4, atol=1e-12)
    assert res.converged.all()
    # Loose tol: the eigenvalues are still within the residual bound of true ones.
    exact = torch.linalg.eigvalsh(H).numpy()
    gaps = np.abs(res.eigenvalues[:, None] - exact[None, :]).min(axis=1)
    assert np.all(gaps <= res.residuals + 1e-12)


def test_lanczos_keeps_its_basis_orthogonal_over_many_steps():
    # Without full reorthogonalisation, long runs grow "ghost" copies of the
    # converged top eigenvalue, so the top 3 would read 100, 100, 50.
    rng = np.random.default_rng(0)
    spectrum = np.concatenate([[100.0, 50.0, 49.0], np.linspace(-1, 1, 197)])
    basis, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    op = DenseOperator(torch.as_tensor(basis @ np.diag(spectrum) @ basis.T))
    res = lanczos(op, top_k=3, tol=1e-12, min_steps=150, max_steps=150, eigenvectors=True)
    assert res.steps == 150
    np.testing.assert_allclose(res.eigenvalues, [100.0, 50.0, 49.0], rtol=1e-10)
    gram = res.eigenvectors @ res.eigenvectors.T
    np.testing.assert_allclose(gram.numpy(), np.eye(3), atol=1e-8)


def _synthetic(spectrum, dtype=F64, seed: int = 0) -> tuple[DenseOperator, torch.Tensor]:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((len(spectrum), len(spectrum))))
    H = torch.as_tensor(basis @ np.diag(spectrum) @ basis.T)
    return DenseOperator(H.to(dtype)), H


REPEATED = np.concatenate([[5.0, 5.0, 5.0, 4.0, 3.0],
                           np.random.default_rng(1).uniform(-1, 1, 195)])


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_block_lanczos_finds_repeated_eigenvalues(dtype):
    # A single-vector Krylov space holds one direction of the triple eigenvalue 5:
    # it returns 5, 4, 3 and calls them converged.  The block space (block 3) finds 5, 5, 5.
    op, H = _synthetic(REPEATED, dtype)
    tol = 1e-8 if dtype == F64 else 1e-5
    res = lanczos(op, top_k=3, tol=tol)
    assert res.block_size == 3 and res.steps < 100  # far from a breakdown at dimension 200
    np.testing.assert_allclose(res.eigenvalues, [5.0, 5.0, 5.0], rtol=10 * tol)
    assert res.converged.all()
    Y = res.eigenvectors.double()
    explicit = (Y @ H - torch.as_tensor(res.eigenvalues)[:, None] * Y).norm(dim=1).numpy()
    assert np.all(explicit <= tol * 5.0)
    np.testing.assert_allclose((Y @ Y.T).numpy(), np.eye(3), atol=1e-5)
    single = lanczos(DenseOperator(H), top_k=3, tol=1e-8, block_size=1)
    np.testing.assert_allclose(single.eigenvalues, [5.0, 4.0, 3.0], rtol=1e-6)
    # Both ends at once: block 5 resolves the triple and the next two.
    both = lanczos(op, top_k=5, bottom_k=2, tol=tol)
    np.testing.assert_allclose(both.eigenvalues[:5], [5, 5, 5, 4, 3], rtol=10 * tol)
    np.testing.assert_allclose(both.eigenvalues[5:], np.sort(REPEATED)[:2][::-1], rtol=1e-4)


def test_converged_rests_on_the_explicit_residual():
    # float32 products cannot reach a residual of 1e-9 ||H||: the explicit check says so.
    op, _ = _synthetic(REPEATED, torch.float32)
    res = lanczos(op, top_k=2, tol=1e-9, max_steps=120)
    assert not res.converged.any()
    assert np.all(res.residuals > 1e-9 * 5.0)
    np.testing.assert_allclose(res.eigenvalues, [5.0, 5.0], rtol=1e-6)


def test_explicit_residuals_come_from_kept_products_where_they_fit():
    # Where a second basis fits the budget the explicit residuals are formed from the
    # basis rows' own products: no product beyond the Krylov space, the same residuals.
    op, H = _synthetic(REPEATED)
    exact = np.sort(REPEATED)[::-1][:3]

    def true_residuals(res):
        Y = res.eigenvectors
        return (Y @ H - torch.as_tensor(res.eigenvalues)[:, None] * Y).norm(dim=1).numpy()

    kept = lanczos(op, top_k=3, tol=1e-8, max_steps=60, block_size=3)  # one run, no restart
    assert op.n_products == kept.steps and kept.converged.all()
    np.testing.assert_allclose(kept.eigenvalues, exact, rtol=1e-8)
    np.testing.assert_allclose(kept.residuals, true_residuals(kept), rtol=1e-6, atol=1e-13)
    # A budget for one basis (60 + 15 working rows of 1600 bytes) but not two: fresh products.
    fresh_op = DenseOperator(H)
    fresh = lanczos(fresh_op, top_k=3, tol=1e-8, max_steps=60, max_memory=150_000,
                    block_size=3)
    assert fresh_op.n_products == fresh.steps + 3 and fresh.converged.all()
    np.testing.assert_allclose(fresh.eigenvalues, exact, rtol=1e-8)
    np.testing.assert_allclose(fresh.residuals, true_residuals(fresh), rtol=1e-6, atol=1e-13)


def test_default_min_steps_reach_an_outlier_behind_a_null_bulk():
    # Outliers up to 100, a bulk of 1990 eigenvalues within ±0.2, λmin = −3.  At tol 1e-2
    # (an absolute bound of 1) bulk Ritz values ≈ 0 pass the residual test after a few
    # products; the default basis of max(2k + 1, 20) finds −3 from every start.
    spectrum = np.concatenate([[100.0, 60.0, 40.0, 30.0, 20.0, 10.0, -2.0, -3.0],
                               np.linspace(-0.2, 0.2, 1990)])
    op, _ = _synthetic(spectrum)
    short = [lanczos(op, top_k=1, bottom_k=1, tol=1e-2, block_size=1, min_steps=2, seed=s,
                     eigenvectors=False) for s in range(4)]
    assert any(r.converged.all() and r.eigenvalues[-1] > -0.2 for r in short)  # the trap
    for seed in range(4):
        res = lanczos(op, top_k=1, bottom_k=1, tol=1e-2, block_size=1, seed=seed,
                      eigenvectors=False)
        assert res.steps >= 20 and res.converged.all()
        np.testing.assert_allclose(res.eigenvalues, [100.0, -3.0], rtol=1e-3)


def _symmetric_net(copies: int = 4, din: int = 12, seed: int = 1):
    """A tanh network whose hidden units are ``copies`` identical copies of one:
    permuting them fixes the point, so the Hessian commutes with the permutation
    group and eigenvalues on its (copies − 1)-dimensional representation repeat."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(din, copies), nn.Tanh(), nn.Linear(copies, 3)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(1, din, generator=g, dtype=F64).expand(copies, din)
                            / din ** 0.5)
        net[0].bias.copy_(torch.randn(1, generator=g, dtype=F64).expand(copies))
        net[2].weight.copy_(torch.randn(3, 1, generator=g, dtype=F64).expand(3, copies))
    net.task = "classify"
    x = torch.randn(32, din, generator=g, dtype=F64)
    y = torch.randint(0, 3, (32,), generator=g)
    return net, x, y


def test_block_lanczos_on_a_network_with_duplicated_units():
    net, x, y = _symmetric_net()
    exact = torch.linalg.eigvalsh(dense_loss_hessian(net, x, y)).numpy()
    assert np.ptp(exact[:3]) < 1e-10 and exact[3] - exact[0] > 0.1  # a triple at the bottom
    ds = hessian_spectrum(net, x, y, top_k=2, bottom_k=3, tol=1e-9)
    np.testing.assert_allclose(ds.eigenvalue.values,
                               np.concatenate([exact[::-1][:2], exact[:3][::-1]]), rtol=1e-7)
    assert ds.converged.values.all() and ds.attrs["block_size"] == 3
    single = lanczos(LossHessian(net, x, y), top_k=2, bottom_k=3, tol=1e-9, block_size=1)
    assert not np.allclose(np.sort(single.eigenvalues)[:3], exact[:3], rtol=1e-3)


def test_top_eigenvectors_span_a_repeated_top_eigenvalue():
    # Linear map under MSE: H = 2/(N d) I_d ⊗ XᵀX, every eigenvalue repeated d times.
    d, n = 12, 40
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(d, d, bias=False).double()
    model.task = "reconstruct"
    x = torch.randn(n, d, generator=g, dtype=F64) * torch.logspace(0, -1.5, d, dtype=F64)
    H = 2 / (n * d) * torch.kron(torch.eye(d, dtype=F64), x.T @ x)
    top = float(torch.linalg.eigvalsh(x.T @ x)[-1]) * 2 / (n * d)
    values, directions = top_eigenvectors(model, x, None, k=3, tol=1e-9)
    np.testing.assert_allclose(values.numpy(), [top] * 3, rtol=1e-8)
    V = torch.stack([d_["weight"].reshape(-1) for d_ in directions])
    np.testing.assert_allclose((V @ V.T).numpy(), np.eye(3), atol=1e-8)
    assert float((V @ H - top * V).norm()) <= 1e-8 * top
    # Single-vector, stopped inside its 12-dimensional Krylov space (past it the
    # breakdown's fresh random rows bring in the other copies).
    _, single = top_eigenvectors(model, x, None, k=3, tol=1e-6, block_size=1, min_steps=3)
    W = torch.stack([d_["weight"].reshape(-1) for d_ in single])
    assert float((W @ H - top * W).norm()) > 1e-3 * top


class _Diagonal(HessianOperator):
    """``diag(d)`` in float32 without a dense matrix."""

    def __init__(self, d: torch.Tensor):
        super().__init__(chunk_size=None)
        self.d, self.dim, self.dtype, self.device = d, len(d), d.dtype, d.device

    def _matmat(self, V):
        return V * self.d


def test_reductions_over_long_float32_vectors_are_float64_accurate():
    # torch's float32 norm of a 1e7-element Gaussian vector is off by ~4e-4 on this
    # kind of CPU build; every reduction of the estimators goes through these.
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 10_000_000, generator=g)
    ref = v.double()
    np.testing.assert_allclose(row_norms(v).numpy(), ref.norm(dim=1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(row_dots(v, v.flip(0)).numpy(), (ref * ref.flip(0)).sum(1).numpy(),
                               rtol=1e-10)
    np.testing.assert_allclose(gram(v).numpy(), (ref @ ref.T).numpy(), rtol=1e-10)


def test_lanczos_on_a_long_float32_operator_is_unbiased():
    # Half of 4M coordinates carry the top eigenvalue 5: its eigenvectors are spread
    # over 2M entries, so float32 sums would bias the Ritz value by ~1e-4.
    n = 2**21
    d = torch.cat([torch.full((n,), 5.0), torch.rand(n, generator=torch.Generator().manual_seed(0))
                   * 2 - 1])
    res = lanczos(_Diagonal(d), top_k=1, tol=1e-5, eigenvectors=False)
    assert abs(res.eigenvalues[0] - 5.0) <= 1e-6 * 5
    assert res.converged.all() and res.residuals[0] <= 1e-5 * 5


def test_lanczos_handles_invariant_subspaces_and_zero_operator():
    diag = torch.tensor([5.0, 5.0, 3.0, 0.0, 0.0, 0.0, -2.0, -2.0], dtype=F64)
    res = lanczos(DenseOperator(torch.diag(diag)), top_k=3, bottom_k=2, tol=1e-12)
    np.testing.assert_allclose(res.eigenvalues, [5, 5, 3, -2, -2], atol=1e-10)
    zero = lanczos(DenseOperator(torch.zeros(6, 6, dtype=F64)), top_k=2, bottom_k=1)
    np.testing.assert_array_equal(zero.eigenvalues, 0.0)
    assert zero.converged.all()


def test_float32_model_gives_float64_tridiagonal_and_close_values(mlp_problem):
    model, x, y, _, exact = mlp_problem
    ds = hessian_spectrum(model.float(), x.float(), y, top_k=2, tol=1e-5)
    model.double()
    assert ds.eigenvalue.dtype == np.float64
    np.testing.assert_allclose(ds.eigenvalue.values, exact[::-1][:2], rtol=1e-4)


def test_top_eigenvectors_are_parameter_dicts(mlp_problem):
    model, x, y, H, exact = mlp_problem
    values, directions = top_eigenvectors(model, x, y, k=2, tol=1e-10)
    np.testing.assert_allclose(values.numpy(), exact[::-1][:2], rtol=1e-8)
    names = [n for n, _ in model.named_parameters()]
    for value, d in zip(values, directions, strict=True):
        assert list(d) == names
        assert all(d[n].shape == p.shape for n, p in model.named_parameters())
        v = torch.cat([d[n].reshape(-1) for n in names])
        assert float(v.norm()) == pytest.approx(1.0, abs=1e-10)
        assert float(v @ H @ v) == pytest.approx(float(value), rel=1e-8)


# ----------------------------------------------------------------------------- trace, density

def test_hutchpp_trace_within_standard_errors(mlp_problem):
    model, x, y, _, exact = mlp_problem
    true = exact.sum()
    for probes, seed in ((30, 0), (30, 1), (99, 2)):
        est = hutchpp(LossHessian(model, x, y), n_probes=probes, seed=seed)
        assert abs(est.trace - true) <= 3 * est.stderr, (probes, seed)
    ds = hessian_spectrum(model, x, y, top_k=0, trace=True, trace_probes=100, seed=0)
    assert abs(float(ds.trace) - true) <= 0.02 * abs(true)
    assert float(ds.trace_stderr) > 0


def test_hutchpp_is_exact_when_the_sketch_spans_everything():
    A = torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    A = A + A.T
    est = hutchpp(DenseOperator(A), n_probes=21)
    assert est.trace == pytest.approx(float(A.trace()), abs=1e-10)


def _wasserstein1(lam: np.ndarray, density: np.ndarray, eigenvalues: np.ndarray) -> float:
    """W1 between a density on a grid and the empirical law of ``eigenvalues``."""
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(lam))])
    exact_cdf = np.searchsorted(np.sort(eigenvalues), lam, side="right") / len(eigenvalues)
    return trapezoid(np.abs(cdf - exact_cdf), lam)


def _mass_of(lam, dens, lo, hi) -> float:
    """The trapezoid integral of a density on a grid over [lo, hi]."""
    fine = np.linspace(max(lo, lam[0]), min(hi, lam[-1]), 20001)
    return trapezoid(np.interp(fine, lam, dens), fine)


def test_slq_density_and_masses(mlp_problem):
    model, x, y, _, exact = mlp_problem
    # The cluster of eigenvalues around 0 (41 of 179 lie within 1e-3) is resolved
    # only by many quadrature nodes: 90 steps for this check.
    ds = hessian_spectrum(model, x, y, top_k=0, density=True, density_runs=16, density_steps=90,
                          seed=0, method="lanczos")
    lam, dens = ds.lam.values, ds.density.values
    sigma, eps = ds.attrs["sigma"], ds.attrs["zero_eps"]
    assert trapezoid(dens, lam) == pytest.approx(1.0, abs=1e-10)
    assert np.all(dens >= 0)
    spread = exact.max() - exact.min()
    assert eps == pytest.approx(0.03 * spread, rel=0.02)  # zero_tol of the SLQ range
    assert _wasserstein1(lam, dens, exact) <= 0.02 * spread
    # The broadened exact spectrum at the same σ on the same grid is close to the SLQ one.
    reference = spectral_density(exact, None, lam, sigma)
    assert trapezoid(np.abs(reference - dens), lam) < 0.15
    masses = [float(ds[n]) for n in ("negative_mass", "zero_mass", "positive_mass")]
    assert sum(masses) == pytest.approx(1.0, abs=1e-12)
    # Each mass is the mass of the returned density over its range.
    for mass, (lo, hi) in zip(masses, [(-np.inf, -eps), (-eps, eps), (eps, np.inf)], strict=True):
        assert mass == pytest.approx(_mass_of(lam, dens, lo, hi), abs=2e-3)
    # Against the exact eigenvalues: the same broadened masses, and the plain fractions.
    np.testing.assert_allclose(masses, spectral_masses(exact, None, sigma, eps), atol=0.03)
    fractions = [np.mean(exact < -eps), np.mean(np.abs(exact) <= eps), np.mean(exact > eps)]
    assert min(fractions) > 0.05  # three non-trivial parts: a zero cluster, both signs
    np.testing.assert_allclose(masses, fractions, atol=0.05)


def test_masses_follow_the_sigma_and_zero_tol_asked_for(mlp_problem):
    model, x, y, _, exact = mlp_problem
    common = dict(top_k=0, density=True, density_runs=6, density_steps=50, seed=1,
                  method="lanczos")
    wide = hessian_spectrum(model, x, y, sigma=0.2, zero_tol=0.0, **common)
    assert wide.attrs["sigma"] == 0.2 and wide.attrs["zero_eps"] == 0.0
    lam, dens = wide.lam.values, wide.density.values
    assert float(wide.negative_mass) == pytest.approx(_mass_of(lam, dens, -np.inf, 0), abs=2e-3)
    assert float(wide.zero_mass) == 0.0
    assert float(wide.negative_mass) == pytest.approx(negative_mass(exact, None, 0.2), abs=0.03)
    narrow = hessian_spectrum(model, x, y, sigma=0.005, zero_tol=0.05, **common)
    eps = narrow.attrs["zero_eps"]
    lam, dens = narrow.lam.values, narrow.density.values
    assert float(narrow.negative_mass) == pytest.approx(_mass_of(lam, dens, -np.inf, -eps),
                                                        abs=2e-3)
    assert float(narrow.zero_mass) == pytest.approx(np.mean(np.abs(exact) <= eps), abs=0.05)
    assert float(narrow.zero_mass) > float(wide.zero_mass) + 0.2


def test_masses_of_a_network_with_a_zero_cluster():
    # ReLU units that never fire contribute exact zero eigenvalues: 10 of 24 hidden units dead.
    g = torch.Generator().manual_seed(2)
    net = nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 4)).double()
    with torch.no_grad():
        net[0].bias[:10] = -50.0
    net.task = "classify"
    x = torch.randn(40, 6, generator=g, dtype=F64)
    y = torch.randint(0, 4, (40,), generator=g)
    exact = torch.linalg.eigvalsh(dense_loss_hessian(net, x, y)).numpy()
    ds = hessian_spectrum(net, x, y, top_k=1, bottom_k=1, density=True, density_runs=10,
                          density_steps=50, seed=0, method="lanczos")
    eps = ds.attrs["zero_eps"]
    fractions = [np.mean(exact < -eps), np.mean(np.abs(exact) <= eps), np.mean(exact > eps)]
    assert fractions[1] > 0.5 and fractions[0] > 0.02 and fractions[2] > 0.05
    masses = [float(ds[n]) for n in ("negative_mass", "zero_mass", "positive_mass")]
    np.testing.assert_allclose(masses, fractions, atol=0.03)
    # Below zero without the split, half the zero cluster would count as negative.
    assert negative_mass(exact, None, ds.attrs["sigma"]) > fractions[0] + 0.2


def test_slq_quadrature_is_exact_for_small_operators():
    diag = torch.tensor([-3.0, -1.0, 0.0, 2.0, 2.0, 7.0], dtype=F64)
    quad = slq(DenseOperator(torch.diag(diag)), n_runs=3, steps=10, seed=0)
    nodes, weights = quad.all()
    assert weights.sum() == pytest.approx(1.0)
    # Every node is an eigenvalue (invariant Krylov spaces), and the moments match.
    assert np.all(np.abs(nodes[:, None] - diag.numpy()[None, :]).min(axis=1) < 1e-10)
    assert negative_mass(nodes, weights) == pytest.approx(
        np.mean([negative_mass(n, w) for n, w in zip(quad.nodes, quad.weights, strict=True)]))
    # At resolution σ a zero eigenvalue counts one half.
    assert negative_mass(np.array([-1.0, 1e-12, 1.0, 2.0])) == pytest.approx(0.375)


# ----------------------------------------------------------------------------- input Hessian

def _dense_input_hessian(model, layer, unit, anchor):
    def act(v):
        return unit_activations(model, layer, v.view(1, *model.in_shape), [unit])[0, 0]
    with torch.no_grad():
        flags = [(m, m.training) for m in model.modules()]
        model.eval()
    try:
        return torch.func.hessian(act)(anchor.reshape(-1)).detach()
    finally:
        for m, flag in flags:
            m.training = flag


@pytest.mark.parametrize("make,layer", [(_mlp, "act2"), (_cnn, "act2"), (_bn_net, None)],
                         ids=["mlp", "cnn", "batchnorm"])
def test_input_hessian_matches_dense(make, layer):
    model = make()
    x, _ = _data(model, n=2)
    H = _dense_input_hessian(model, layer, 1, x[0])
    assert H.abs().max() > 1e-6  # smooth activation: a non-zero Hessian to compare
    V = torch.randn(5, H.shape[0], dtype=F64, generator=torch.Generator().manual_seed(0))
    for engine in ("double-backward", "forward-over-reverse"):
        for batch_probes in (True, False):
            op = InputHessian(model, layer, 1, x[0], engine=engine, chunk_size=2,
                              batch_probes=batch_probes)
            torch.testing.assert_close(op.matmat(V), V @ H, rtol=1e-10, atol=1e-12)


def test_input_hessian_spectrum_dims_and_values():
    model = _mlp()
    x, _ = _data(model, n=3)
    snap = _snapshot(model)
    ds = input_hessian_spectrum(model, "act2", units=[0, 5], anchors=x, top_k=2, bottom_k=2,
                                density=True, trace=True, tol=1e-10, trace_probes=27,
                                density_runs=4, density_steps=9, method="lanczos")
    _assert_same(model, snap)
    assert ds.attrs["kind"] == "input_hessian" and ds.attrs["layer"] == "act2"
    assert ds.eigenvalue.dims == ("unit", "anchor", "eig")
    assert list(ds.unit.values) == [0, 5] and list(ds.anchor.values) == [0, 1, 2]
    assert ds.density.dims == ("unit", "anchor", "lam")
    for i, unit in enumerate([0, 5]):
        for a in range(3):
            exact = torch.linalg.eigvalsh(_dense_input_hessian(model, "act2", unit, x[a])).numpy()
            expected = np.concatenate([exact[::-1][:2], exact[:2][::-1]])
            np.testing.assert_allclose(ds.eigenvalue.values[i, a], expected, rtol=1e-6,
                                       atol=1e-12)
            # dim 9: a sketch of 27 // 3 = 9 probes spans everything, so Hutch++ is exact.
            assert float(ds.trace[i, a]) == pytest.approx(exact.sum(), abs=1e-10)
            # The masses of this unit's quadrature at the shared σ and ε of the result
            # (not at each unit's own).
            quad = slq(InputHessian(model, "act2", unit, x[a]), n_runs=4, steps=9, seed=1)
            expected = spectral_masses(*quad.all(), ds.attrs["sigma"], ds.attrs["zero_eps"])
            got = [float(ds[n][i, a]) for n in ("negative_mass", "zero_mass", "positive_mass")]
            np.testing.assert_allclose(got, expected, atol=1e-8)
    # Default layer and an int number of units; one anchor given without batch dimension.
    one = input_hessian_spectrum(model, units=2, anchors=x[0], top_k=1)
    assert one.sizes["unit"] == 2 and one.sizes["anchor"] == 1


# ----------------------------------------------------------------------------- side effects, results

@pytest.mark.parametrize("engine,bn", [("double-backward", "eval"),
                                       ("forward-over-reverse", "batch")])
def test_model_unchanged(engine, bn):
    model = _bn_net()
    x, y = _data(model, n=16)
    model.train()
    model.head.eval()  # a mixed state must come back exactly
    model.fc1.weight.grad = torch.ones_like(model.fc1.weight)
    model.head.bias.requires_grad_(False)
    snap = _snapshot(model)
    hessian_spectrum(model, x, y, top_k=2, bottom_k=1, density=True, trace=True, engine=engine,
                     bn=bn, density_runs=2, density_steps=5, trace_probes=6, batch_size=4)
    top_eigenvectors(model, x, y, k=1, engine=engine, bn=bn)
    _assert_same(model, snap)


def test_frozen_parameters_are_excluded_and_zero_in_directions():
    model = _mlp()
    x, y = _data(model, n=16)
    model.head.bias.requires_grad_(False)
    op = LossHessian(model, x, y)
    assert op.dim == op_dim(model) - 3
    _, directions = top_eigenvectors(model, x, y, k=1)
    assert torch.equal(directions[0]["head.bias"], torch.zeros(3, dtype=F64))


def test_results_round_trip(tmp_path, mlp_problem):
    model, x, y, _, _ = mlp_problem
    ds = hessian_spectrum(model, x, y, top_k=2, bottom_k=1, density=True, trace=True,
                          density_runs=2, density_steps=5, trace_probes=6, dataset="digits")
    back = load(save(ds, tmp_path / "h.nc"), kind="hessian")
    for name in ("eigenvalue", "residual", "converged", "density", "trace", "negative_mass",
                 "zero_mass", "positive_mass"):
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert back.converged.dtype == bool
    assert list(back.which.values) == list(ds.which.values)
    assert back.attrs["dataset"] == "digits" and back.attrs["kind"] == "hessian"
    cfg = landscape.results.config_of(back)
    assert cfg["top_k"] == 2 and cfg["density"] is True and cfg["engine"] == "double-backward"

    ids = input_hessian_spectrum(model, "act1", units=2, anchors=x[:2], top_k=1, bottom_k=1)
    back = load(save(ids, tmp_path / "i.nc"), kind="input_hessian")
    np.testing.assert_array_equal(back.eigenvalue.values, ids.eigenvalue.values)
    assert list(back.unit.values) == [0, 1] and back.converged.dtype == bool


def test_no_density_no_trace_are_nan(mlp_problem):
    model, x, y, _, _ = mlp_problem
    ds = hessian_spectrum(model, x, y, top_k=1)
    assert "density" not in ds and "lam" not in ds.dims
    assert np.isnan(ds.trace) and np.isnan(ds.trace_stderr) and np.isnan(ds.negative_mass)
    assert np.isnan(ds.zero_mass) and np.isnan(ds.positive_mass)
    assert np.isnan(ds.ratio_min_max)


def test_bad_arguments_raise_one_clear_error(mlp_problem):
    model, x, y, _, _ = mlp_problem
    with pytest.raises(LandscapeError, match="engine"):
        LossHessian(model, x, y, engine="magic")
    with pytest.raises(LandscapeError, match="bn"):
        LossHessian(model, x, y, bn="frozen")
    with pytest.raises(LandscapeError, match="top_k"):
        hessian_spectrum(model, x, y, top_k=100, bottom_k=100)
    with pytest.raises(LandscapeError, match="nothing to compute"):
        hessian_spectrum(model, x, y, top_k=0)
    with pytest.raises(LandscapeError, match="units"):
        input_hessian_spectrum(model, "act1", units=[99], anchors=x[:1])
    with pytest.raises(LandscapeError, match="anchors"):
        input_hessian_spectrum(model, "act1", units=1, anchors=torch.zeros(2, 5))


# ----------------------------------------------------------------------------- PyHessian

def test_agrees_with_pyhessian(mlp_problem):
    model, x, y, _, exact = mlp_problem
    ours = hessian_spectrum(model, x, y, top_k=2, tol=1e-10).eigenvalue.values
    twin = _mlp()  # PyHessian writes .grad and switches to eval mode: give it its own copy
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # its random probes follow the default dtype
    torch.manual_seed(0)
    try:
        comp = pyhessian.hessian(twin, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        theirs, _ = comp.eigenvalues(maxIter=500, tol=1e-8, top_n=2)
    finally:
        torch.set_default_dtype(default)
    theirs = np.sort(np.asarray(theirs, dtype=float))[::-1]
    np.testing.assert_allclose(theirs, ours, rtol=1e-3)
    np.testing.assert_allclose(ours, exact[::-1][:2], rtol=1e-6)


def test_plots_are_drawn_from_saved_results(tmp_path, mlp_problem):
    from landscape.plot.spectra import plot_hessian

    model, x, y, _, _ = mlp_problem
    ds = hessian_spectrum(model, x, y, top_k=2, bottom_k=1, density=True, density_runs=2,
                          density_steps=8)
    ds = load(save(ds, tmp_path / "h.nc"))
    assert [p.name for p in plot_hessian(ds, tmp_path, "h")] == ["h_spectrum.png"]
    bare = load(save(hessian_spectrum(model, x, y, top_k=3), tmp_path / "b.nc"))
    assert plot_hessian(bare, tmp_path, "b")[0].stat().st_size > 0
    ids = input_hessian_spectrum(model, "act1", units=3, anchors=x[:2], top_k=1, bottom_k=1,
                                 density=True, density_runs=2, density_steps=4)
    ids = load(save(ids, tmp_path / "i.nc"))
    names = sorted(p.name for p in plot_hessian(ids, tmp_path, "i"))
    assert names == ["i_eigenvalues.png", "i_negative_mass.png", "i_spectrum.png"]
    assert all((tmp_path / n).stat().st_size > 0 for n in names)


# ----------------------------------------------------------------------------- memory

def test_slq_in_groups_gives_the_density_of_one_group(mlp_problem):
    model, x, y, _, _ = mlp_problem
    op = LossHessian(model, x, y)
    per_run = (20 + 4) * op.dim * 8  # basis and working rows of one run, float64
    one = slq(op, n_runs=5, steps=20, seed=3, group_size=5)
    assert one.n_groups == 1
    grouped = slq(op, n_runs=5, steps=20, seed=3, group_size=2, max_memory=int(2.5 * per_run))
    assert grouped.n_groups == 3 and grouped.n_products == one.n_products
    single = slq(op, n_runs=5, steps=20, seed=3)  # the CPU's default: one run at a time
    assert single.n_groups == 5 and single.n_products == one.n_products
    for a, b in zip(one.nodes + one.weights, single.nodes + single.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(one.nodes + one.weights, grouped.nodes + grouped.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    ds1 = hessian_spectrum(model, x, y, top_k=0, density=True, density_runs=3, density_steps=20)
    ds3 = hessian_spectrum(model, x, y, top_k=0, density=True, density_runs=3, density_steps=20,
                           max_memory=int(1.5 * per_run))
    assert ds3.attrs["density_groups"] == 3
    np.testing.assert_allclose(ds3.density.values, ds1.density.values, rtol=1e-8, atol=1e-10)
    assert float(ds3.negative_mass) == pytest.approx(float(ds1.negative_mass), abs=1e-10)


def test_default_plan_fits_resnet18_in_6gb_on_a_24gib_cpu(monkeypatch):
    """The documentation's Hessian example (resnet18, 11.2 M float32 parameters) on a 24 GiB CPU
    machine: the density holds one run's basis whatever the number of runs, the
    Lanczos basis is fitted under the CPU share, and both leave room for the
    model (about 1.5 GB) under 6 GB.  On CUDA runs go side by side as they fit."""
    import sys

    from landscape.hessian.lanczos import basis_budget, lanczos_steps, working_rows
    from landscape.hessian.slq import parallel_runs

    gib = 2**30
    monkeypatch.delenv("LANDSCAPE_MAX_MEMORY", raising=False)
    monkeypatch.setattr(sys.modules["landscape.hessian.lanczos"], "total_memory", lambda: 24 * gib)
    monkeypatch.setattr("landscape.memory.available_memory", lambda device=None: 22 * gib)
    dim, vector = 11_173_962, 11_173_962 * 4
    budget = 11 * gib  # the default: half of what is available
    for runs in (1, 8, 16):
        assert parallel_runs(dim, 4, "cpu", runs, 80, budget) == 1
    assert parallel_runs(dim, 4, "cpu", 16, 80, budget) * (80 + 4) * vector < 3.8e9
    assert parallel_runs(dim, 4, "cuda", 16, 80, 40 * 10**9) == 40 * 10**9 // (84 * vector)
    assert parallel_runs(dim, 4, "cuda:0", 4, 80, 100 * 10**9) == 4
    cpu = basis_budget("cpu")
    assert cpu == int(0.15 * 24 * gib)
    assert basis_budget("cpu", max_memory="20GB") == 20 * 10**9  # an explicit budget wins
    steps = lanczos_steps(dim, 4, 10, 5, cpu, eigenvectors=False)
    held = (steps + working_rows(10, 5, False)) * vector
    assert held <= cpu < 4.5e9 and steps == cpu // vector - 17
    # Small problems keep the full default basis.
    assert lanczos_steps(10_000, 8, 10, 5, cpu, eigenvectors=False) == 300
    # The trace: the sketch (33 of 99 probes) and one probe with its product at a time.
    from landscape.hessian.hutchpp import trace_group_size

    group = trace_group_size(dim, 4, "cpu", 33, budget)
    assert group == 1 and (33 + 2 * group) * vector < 1.6e9
    assert trace_group_size(dim, 4, "cuda", 33, 40 * 10**9) == (40 * 10**9 - 33 * vector) // (2 * vector)


def test_hutchpp_streams_one_product_at_a_time_on_the_cpu():
    """After the sketch, the CPU takes probes one by one: no group of probes and
    products is held at once (the resnet18 example peaked at 7.0 GB when all 33
    went together); an explicit group size is still honoured."""
    A = torch.randn(40, 40, dtype=F64, generator=torch.Generator().manual_seed(0))
    A = A + A.T
    for group, widest in ((None, 1), (5, 5)):
        op = DenseOperator(A, chunk_size=None)
        seen = []
        original = op.matmat
        op.matmat = lambda V, seen=seen, original=original: (seen.append(V.shape[0]), original(V))[1]
        est = hutchpp(op, n_probes=30, seed=0, group_size=group)
        assert seen[0] == 10 and max(seen[1:]) == widest  # the sketch, then the stream
        assert sum(seen) == est.n_products == 30


def test_work_too_big_for_the_budget_is_refused_with_its_size(mlp_problem):
    model, x, y, _, _ = mlp_problem
    op = LossHessian(model, x, y)
    vector = op.dim * 8
    needed = format_bytes((20 + 4) * vector)
    with pytest.raises(LandscapeError, match=rf"density \(SLQ\).* needs {needed} of memory"):
        slq(op, n_runs=4, steps=20, max_memory=10 * vector)
    with pytest.raises(LandscapeError, match=r"Lanczos with a basis of 100 .* needs \d+\.?\d* kB"):
        lanczos(op, top_k=2, max_steps=100, max_memory=50 * vector)
    with pytest.raises(LandscapeError, match=r"trace \(Hutch\+\+\).* needs"):
        hutchpp(op, n_probes=99, max_memory=20 * vector)
    assert op.n_products == 0  # refused before any work
    # Without max_steps the basis is fitted to the budget.
    res = lanczos(op, top_k=2, tol=1e-12, max_memory=(30 + 6 + 4) * vector)
    assert res.steps == 30 and op.n_products > 0
    with pytest.raises(LandscapeError, match="needs"):
        hessian_spectrum(model, x, y, top_k=2, density=True, max_memory="20kB")


def test_cli_hessian_masses_zero_tol_and_max_memory(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from landscape.cli import cli

    monkeypatch.chdir(tmp_path)
    args = ["hessian", "--model", "mlp", "--init", "xavier", "--width", "8", "--in-shape",
            "1x3x3", "--samples", "64", "--top-k", "1", "--method", "lanczos", "--density",
            "--density-runs", "4", "--density-steps", "30"]
    res = CliRunner().invoke(cli, [*args, "--zero-tol", "0.1", "--out", "h.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("h.nc", kind="hessian")
    assert ds.attrs["zero_tol"] == 0.1
    nodes = ds.lam.values  # ε is 0.1 of the spectral range, inside the grid's span
    assert 0.08 * np.ptp(nodes) < ds.attrs["zero_eps"] < 0.1 * np.ptp(nodes)
    eps, lam, dens = ds.attrs["zero_eps"], ds.lam.values, ds.density.values
    assert float(ds.zero_mass) == pytest.approx(_mass_of(lam, dens, -eps, eps), abs=2e-3)
    assert "mass below/within/above" in res.output
    assert "not converged" not in res.output
    # A basis too short to converge is said on the command line, not only in the file.
    res = CliRunner().invoke(cli, [*args[:-4], "--top-k", "2", "--max-steps", "4", "--tol",
                                   "1e-12", "--out", "short.nc"])
    assert res.exit_code == 0, res.output
    short = landscape.load("short.nc", kind="hessian")
    assert not short.converged.values.all()
    assert f"not converged: {int((~short.converged.values.astype(bool)).sum())} of" in res.output
    res = CliRunner().invoke(cli, [*args, "--max-memory", "2kB", "--out", "small.nc"])
    assert res.exit_code != 0
    (line,) = res.output.strip().splitlines()
    assert line.startswith("landscape: error: ") and "needs" in line and "2 kB" in line
    assert not (tmp_path / "small.nc").exists()
