"""The exact path for small models (landscape.hessian.dense) against
``torch.func.hessian`` + ``eigvalsh`` in float64, and against the iterative
path at the crossover."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import ndtr
from torch import nn

import landscape
from landscape.errors import LandscapeError
from landscape.hessian import hessian_spectrum, input_hessian_spectrum
from landscape.hessian.dense import choose_method, iterative_products

F64 = torch.float64


def _net(hidden: int, seed: int = 0) -> nn.Module:
    """The example of docs/guide/your-own-network.md (6 inputs, tanh, 3 classes), float32."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, 3))


def _data(n: int = 64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def _exact_spectrum(model: nn.Module, x, y) -> np.ndarray:
    """Eigenvalues (ascending) of the float64 Hessian of the mean cross-entropy."""
    model = model.double() if next(model.parameters()).dtype != F64 else model
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1).to(F64) for p in model.parameters()])

    def loss(v):
        parts, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            parts[name] = v[i:i + shape.numel()].view(shape)
            i += shape.numel()
        out = torch.func.functional_call(model, parts, (x.to(F64),))
        return nn.functional.cross_entropy(out, y)

    return torch.linalg.eigvalsh(torch.func.hessian(loss)(flat)).numpy()


def test_dense_path_is_exact_on_a_float32_model():
    net, (x, y) = _net(8), _data()
    truth = _exact_spectrum(_net(8), x, y)  # the same weights, a separate copy
    ds = hessian_spectrum(net, x, y, top_k=3, bottom_k=2, density=True, trace=True,
                          method="dense")
    assert next(net.parameters()).dtype == torch.float32  # the model is left as it was
    assert ds.attrs["method"] == "dense" and int(ds.n_hvp) == len(truth) == ds.attrs["n_params"]
    # float64 products on a copy: exact to rounding, not to float32's 1e-7.
    np.testing.assert_allclose(ds.eigenvalue.values,
                               np.concatenate([truth[::-1][:3], truth[:2][::-1]]),
                               rtol=1e-10, atol=1e-12)
    assert ds.converged.values.all() and np.all(ds.residual.values < 1e-12)
    assert float(ds.trace) == pytest.approx(truth.sum(), rel=1e-10, abs=1e-12)
    assert float(ds.trace_stderr) == 0
    # The density of the exact eigenvalues at SLQ's own σ (1 % of the range) and its masses.
    sigma, eps = ds.attrs["sigma"], ds.attrs["zero_eps"]
    assert sigma == pytest.approx(0.01 * np.ptp(truth), rel=1e-9)
    assert eps == pytest.approx(0.03 * np.ptp(truth), rel=1e-9)
    lam = ds.lam.values
    phi = np.exp(-0.5 * ((lam[:, None] - truth[None, :]) / sigma) ** 2).mean(axis=1)
    phi /= np.sum((phi[1:] + phi[:-1]) * np.diff(lam)) / 2
    np.testing.assert_allclose(ds.density.values, phi, rtol=1e-8, atol=1e-12)
    negative = ndtr((-eps - truth) / sigma).mean()
    positive = ndtr((truth - eps) / sigma).mean()
    assert float(ds.negative_mass) == pytest.approx(negative, abs=1e-12)
    assert float(ds.positive_mass) == pytest.approx(positive, abs=1e-12)
    assert float(ds.zero_mass) == pytest.approx(1 - negative - positive, abs=1e-12)


# A request whose iterative path spends at least 20 + 4 x 40 + 31 = 211 products.
REQUEST = dict(top_k=2, bottom_k=2, density=True, density_runs=4, density_steps=40, trace=True,
               trace_probes=31)


def test_auto_takes_the_dense_path_up_to_the_crossover():
    planned = iterative_products(2, 2, True, True, 4, 40, 31)
    assert planned == 211
    assert choose_method("auto", 211, planned, "cpu") == "dense"
    assert choose_method("auto", 212, planned, "cpu") == "lanczos"
    # The documentation's own example (163 parameters, top-3, bottom-3, density): dense; a cnn top-5: not.
    assert choose_method("auto", 163, iterative_products(3, 3, True, False, 8, 80, 99),
                         "cpu") == "dense"
    assert choose_method("auto", 24234, iterative_products(5, 0, False, False, 8, 80, 99),
                         "cpu") == "lanczos"
    # Small enough by cost but not by memory: lanczos; asked for explicitly: refused.
    assert choose_method("auto", 211, planned, "cpu", max_memory="100kB") == "lanczos"
    with pytest.raises(LandscapeError, match="needs .* more than the budget"):
        choose_method("dense", 211, planned, "cpu", max_memory="100kB")
    with pytest.raises(LandscapeError, match="method"):
        choose_method("exact", 211, planned, "cpu")


def test_both_paths_agree_with_the_truth_at_the_crossover():
    # 9 inputs, 16 tanh units, 3 classes: 9*16 + 16 + 16*3 + 3 = 211 parameters, the
    # crossover of REQUEST (auto takes the dense path here, and Lanczos one more up).
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(9, 16), nn.Tanh(), nn.Linear(16, 3))

    net = make()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 9, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    truth = _exact_spectrum(make(), x, y)
    assert len(truth) == 211
    auto = hessian_spectrum(net, x, y, **REQUEST)
    iterative = hessian_spectrum(net, x, y, method="lanczos", **REQUEST)
    assert auto.attrs["method"] == "dense" and iterative.attrs["method"] == "lanczos"
    assert json.loads(auto.attrs["config"])["method"] == "auto"
    ends = np.concatenate([truth[::-1][:2], truth[:2][::-1]])
    scale = np.abs(truth).max()
    np.testing.assert_allclose(auto.eigenvalue.values, ends, rtol=0, atol=1e-10 * scale)
    # Lanczos: converged pairs within tol (1e-4) x max|λ| of the truth.
    assert iterative.converged.values.all()
    np.testing.assert_allclose(iterative.eigenvalue.values, ends, rtol=0, atol=1e-4 * scale)
    # Hutch++: within 4 standard errors; exact on the dense path.
    assert float(auto.trace) == pytest.approx(truth.sum(), rel=1e-10)
    assert abs(float(iterative.trace) - truth.sum()) <= 4 * float(iterative.trace_stderr)
    # SLQ with 4 runs of 40 steps: masses within 0.05 of the exact ones at the same σ, ε.
    assert iterative.attrs["sigma"] == pytest.approx(auto.attrs["sigma"], rel=0.05)
    for name in ("negative_mass", "zero_mass", "positive_mass"):
        assert abs(float(iterative[name]) - float(auto[name])) < 0.05, name


def test_input_hessian_takes_the_same_rule():
    torch.manual_seed(0)
    model = landscape.build_model("mlp", init="xavier", bias_scale=0.5, width=6, depth=2,
                                  in_shape=(1, 3, 3), num_classes=3, activation="tanh").double()
    x, _ = landscape.load_dataset("digits", n=4, in_shape=model.in_shape)
    x = x.double()
    kw = dict(units=[0, 3], anchors=x[:2], top_k=2, bottom_k=2, trace=True)
    dense = input_hessian_spectrum(model, "act2", **kw)  # 9 inputs: auto is dense
    iterative = input_hessian_spectrum(model, "act2", method="lanczos", tol=1e-10, **kw)
    assert dense.attrs["method"] == "dense" and iterative.attrs["method"] == "lanczos"
    np.testing.assert_allclose(dense.eigenvalue.values, iterative.eigenvalue.values,
                               rtol=1e-7, atol=1e-9)
    assert int(dense.n_hvp.sum()) == 9 * 4  # 9 columns per unit and anchor


def test_cli_method_is_recorded(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from landscape.cli import cli

    monkeypatch.chdir(tmp_path)
    args = ["hessian", "--model", "mlp", "--init", "xavier", "--width", "4", "--in-shape",
            "1x3x3", "--samples", "32", "--top-k", "2", "--bottom-k", "1", "--density"]
    res = CliRunner().invoke(cli, [*args, "--out", "auto.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("auto.nc", kind="hessian")
    assert ds.attrs["method"] == "dense" and json.loads(ds.attrs["config"])["method"] == "auto"
    assert "exact" in res.output
    res = CliRunner().invoke(cli, [*args, "--method", "lanczos", "--out", "lz.nc"])
    assert res.exit_code == 0, res.output
    lz = landscape.load("lz.nc", kind="hessian")
    assert lz.attrs["method"] == "lanczos"
    np.testing.assert_allclose(lz.eigenvalue.values, ds.eigenvalue.values, rtol=1e-4, atol=1e-6)
    res = CliRunner().invoke(cli, [*args, "--method", "exact", "--out", "bad.nc"])
    assert res.exit_code != 0 and not (tmp_path / "bad.nc").exists()
