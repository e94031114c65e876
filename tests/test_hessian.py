"""Hessian operators and estimators against dense ground truth in float64.

The reference everywhere is ``torch.func.hessian`` of the loss (or of a unit's
activation) as a function of a flat vector, diagonalised by
``torch.linalg.eigvalsh``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import landscape
from landscape.errors import LandscapeError
from landscape.hessian import (
    DenseOperator,
    InputHessian,
    LossHessian,
    hessian_spectrum,
    hutchpp,
    input_hessian_spectrum,
    lanczos,
    negative_mass,
    slq,
    spectral_density,
    top_eigenvectors,
)
from landscape.models import per_sample_loss, unit_activations
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
        return per_sample_loss(model, out, x, y).mean()

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
    loss = per_sample_loss(model, model(x), x, y).mean()
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
    np.testing.assert_allclose(res.residuals, explicit.norm(dim=1).numpy(), rtol=1e-4, atol=1e-12)
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
    return float(np.trapezoid(np.abs(cdf - exact_cdf), lam))


def test_slq_density_and_negative_mass(mlp_problem):
    model, x, y, _, exact = mlp_problem
    # The sign of the cluster of eigenvalues around 0 (41 of 179 lie within 1e-3)
    # is resolved only by many quadrature nodes: 90 steps for this check.
    ds = hessian_spectrum(model, x, y, top_k=0, density=True, density_runs=16, density_steps=90,
                          seed=0)
    lam, dens = ds.lam.values, ds.density.values
    assert np.trapezoid(dens, lam) == pytest.approx(1.0, abs=1e-10)
    assert np.all(dens >= 0)
    spread = exact.max() - exact.min()
    assert _wasserstein1(lam, dens, exact) <= 0.05 * spread
    assert float(ds.negative_mass) == pytest.approx(negative_mass(exact), abs=0.06)
    assert 0.3 < negative_mass(exact) < 0.7  # the check can fail: the spectrum is indefinite
    # The broadened exact spectrum on the same grid is close to the SLQ one.
    reference = spectral_density(exact, None, lam, ds.attrs["sigma"])
    assert np.trapezoid(np.abs(reference - dens), lam) < 0.5


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
                                density_runs=4, density_steps=9)
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
            assert 0 <= float(ds.negative_mass[i, a]) <= 1
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
    for name in ("eigenvalue", "residual", "converged", "density", "trace", "negative_mass"):
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
    pyhessian = pytest.importorskip("pyhessian")
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
