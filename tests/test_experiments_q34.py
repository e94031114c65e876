"""Q3 (saddles) and Q4 (skip connections): the scripts' code paths against answers known
by construction (a quadratic of known index, dense float64 Hessians) and their --quick
runs against dense ground truth."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import landscape

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))  # the scripts import their shared _common

import _common as common  # noqa: E402
import q3_saddles as q3  # noqa: E402

# ----------------------------------------------------------------------------- constructions

# Eigenvalues of the constructed Hessian and how often each occurs (d = 200).
SPECTRUM = {-1.0: 30, -0.02: 20, 0.0: 50, 0.002: 20, 1.0: 40, 2.0: 40}


class Quadratic(nn.Module):
    """Logits (z0, 0, ..., 0) with z0 = θᵀAθ / 2, at θ = 0.  With every label 1 the mean
    cross-entropy is log(e^z0 + 9), so at θ = 0 its Hessian is softmax(z)_0 · A = A / 10
    exactly (the Gauss–Newton part p0(1 − p0) ∇z0 ∇z0ᵀ vanishes with ∇z0 = Aθ = 0)."""

    def __init__(self, eigenvalues: dict[float, int]):
        super().__init__()
        a = np.concatenate([np.full(n, 10 * v) for v, n in eigenvalues.items()])
        self.register_buffer("a", torch.as_tensor(np.random.default_rng(0).permutation(a),
                                                  dtype=torch.float32))
        self.theta = nn.Parameter(torch.zeros(len(a)))

    def forward(self, x):
        z0 = 0.5 * (self.a * self.theta ** 2).sum()
        onehot = torch.zeros(10, dtype=self.theta.dtype)
        onehot[0] = 1
        return (z0 * onehot).expand(len(x), 10)


def _quadratic_data(n: int = 4):
    return torch.zeros(n, 1, 2, 2), torch.ones(n, dtype=torch.long)


def _exact_quadratic_eigenvalues() -> np.ndarray:
    return np.sort(np.concatenate([np.full(n, v) for v, n in SPECTRUM.items()]))


# ----------------------------------------------------------------------------- Q3

def test_q3_dense_eigenvalues_of_constructed_quadratic():
    x, y = _quadratic_data()
    eigs = q3.dense_eigenvalues(Quadratic(SPECTRUM), x, y)
    np.testing.assert_allclose(eigs, _exact_quadratic_eigenvalues(), atol=1e-7)


@pytest.mark.parametrize("block", [None, 1])  # the API's default block, resnet18's single vector
def test_q3_spectrum_of_constructed_quadratic_has_known_index(block):
    x, y = _quadratic_data()
    h = dict(top_k=1, bottom_k=1, max_steps=40, runs=24, steps=12, block=block)
    spec = q3.spectrum(Quadratic(SPECTRUM), x, y, h, seed=0)
    assert spec["lanczos_hvp"] <= 40 + 2  # the basis and the explicit residual check
    assert spec["lambda_max"] == pytest.approx(2.0, rel=1e-5)
    assert spec["lambda_min"] == pytest.approx(-1.0, rel=1e-5)
    assert spec["ratio_min_max"] == pytest.approx(0.5, rel=1e-5)
    assert spec["converged_top"] and spec["converged_min"]
    assert spec["spectral_range"] == pytest.approx(3.0, rel=1e-5)
    eigs = _exact_quadratic_eigenvalues()
    for tol in q3.ZERO_TOLS:
        eps = tol * 3.0
        # ε = 0.009: -1 and -0.02 are negative, 0 and 0.002 zero; ε = 0.03 or 0.09: -0.02
        # joins the zero cluster.  SLQ weights are random (d = 200, 24 runs: std ≈ 0.01).
        assert spec[f"negative_{tol}"] == pytest.approx((eigs < -eps).mean(), abs=0.035)
        assert spec[f"zero_{tol}"] == pytest.approx((abs(eigs) <= eps).mean(), abs=0.035)
        assert spec[f"positive_{tol}"] == pytest.approx((eigs > eps).mean(), abs=0.035)
    assert (eigs < -0.009).mean() == 0.25 and (eigs < -0.03).mean() == 0.15
    # The API's own masses at its zero_tol are the density integrated the same way.
    assert spec["api_negative_mass"] == pytest.approx(spec[f"negative_{q3.API_ZERO_TOL}"], abs=2e-3)
    assert spec["api_zero_mass"] == pytest.approx(spec[f"zero_{q3.API_ZERO_TOL}"], abs=2e-3)


def test_lanczos_extremes_min_steps_finds_lambda_min_behind_a_null_bulk():
    # Outliers up to 100, a dense bulk within ±0.2 and λmin = −3: at tol 1e-2 (bound 1)
    # a short run accepts a bulk Ritz value ≈ 0 as "converged" λmin for most start
    # vectors; with 16 products forced every start finds −3 (as on resnet18, whose null
    # space is most of its 11 M dimensions).
    bulk = np.linspace(-0.2, 0.2, 1990)
    spectrum = {100.0: 1, 60.0: 1, 40.0: 1, 30.0: 1, 20.0: 1, 10.0: 1, -3.0: 1, -2.0: 1,
                **{float(b): 1 for b in bulk}}
    x, y = _quadratic_data()
    for seed in range(4):
        r = common.lanczos_extremes(Quadratic(spectrum), x, y, tol=1e-2, max_steps=60,
                                    min_steps=16, block=1, seed=seed)
        assert r["lanczos_steps"] >= 16 and r["converged_min"] and r["converged_top"]
        assert r["lambda_min"] == pytest.approx(-3.0, abs=1e-3)
        assert r["lambda_max"] == pytest.approx(100.0, rel=1e-4)
        assert r["ratio_min_max"] == pytest.approx(0.03, rel=1e-3)
        assert r["lambda_min"] <= r["lambda_min_half"] <= 0.2  # Ritz values only move outwards


def test_q3_converged_ratio_leaves_out_unconverged_extremes():
    rows = [{"ratio_min_max": 0.1, "converged_top": True, "converged_min": True},
            {"ratio_min_max": 0.3, "converged_top": True, "converged_min": True},
            {"ratio_min_max": 0.01, "converged_top": True, "converged_min": False},
            {"ratio_min_max": 0.02, "converged_top": False, "converged_min": True}]
    r = q3.converged_ratio(rows)
    assert r["n"] == 2 and r["mean"] == pytest.approx(0.2)


def test_q3_density_masses_closed_form():
    # diag(-1, 0, 1, 1) broadened by σ = 0.01 and split at ±0.1: 1/4, 1/4, 1/2.
    lam = np.linspace(-1.5, 1.5, 6001)
    dens = landscape.hessian.spectral_density(np.array([-1.0, 0.0, 1.0, 1.0]), None, lam, 0.01)
    assert q3.density_masses(lam, dens, 0.1) == pytest.approx((0.25, 0.25, 0.5), abs=1e-4)


def test_q3_exact_masses_closed_form():
    eigs = np.array([-2.0, -0.5, 0.0, 0.5, 1.0])
    m = q3.exact_masses(eigs, eps=0.6, sigma=1e-6)
    assert m["frac_below_0"] == pytest.approx(0.4)
    assert m["frac_below_eps"] == pytest.approx(0.2)
    assert m["frac_within_eps"] == pytest.approx(0.6)
    assert m["broadened_negative"] == pytest.approx(0.2)
    assert m["broadened_zero"] == pytest.approx(0.6)


def test_q3_prediction_fit_of_a_known_line():
    rows = [{"seed": s, "loss": loss, "idx": 0.1 * loss} for s in (0, 1)
            for loss in (2.0, 1.0, 0.5, 0.1)]
    p = q3.prediction(rows, "idx")
    assert p["pearson_r"] == pytest.approx(1.0)
    assert p["slope"] == pytest.approx(0.1)
    assert p["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert p["spearman_per_seed"] == pytest.approx([1.0, 1.0])


def _quick(script, tmp_path_factory, name: str):
    """``(summary, folder)`` of the script's --quick run into a fresh folder."""
    tmp = tmp_path_factory.mktemp(name)
    summary = script.main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")])
    return summary, tmp


@pytest.fixture(scope="module")
def q3_quick(tmp_path_factory):
    return _quick(q3, tmp_path_factory, "q3")


def test_q3_quick_lanczos_matches_dense_hessian(q3_quick):
    summary, _ = q3_quick
    rows = [r for r in summary["points"] if r["model"] == "mlp"]
    assert rows
    for r in rows:
        scale = abs(r["exact_lambda_max"])
        # Ritz values lie inside the spectrum; converged ones within tol · max|θ| of it.
        assert r["lambda_max"] <= r["exact_lambda_max"] + 1e-4 * scale
        assert r["lambda_min"] >= r["exact_lambda_min"] - 1e-4 * scale
        if r["converged_top"]:
            assert r["lambda_max"] == pytest.approx(r["exact_lambda_max"], abs=2e-3 * scale)
        if r["converged_min"]:
            assert r["lambda_min"] == pytest.approx(r["exact_lambda_min"], abs=2e-3 * scale)
        assert r["ratio_min_max"] == pytest.approx(abs(r["lambda_min"] / r["lambda_max"]))
    assert np.mean([r["converged_top"] for r in rows]) == 1.0
    for state in ("random", "trained"):
        # The converged-only ratio summarises exactly the points whose both extremes converged.
        sel = [r for r in rows if r["state"] == state and r["converged_top"] and r["converged_min"]]
        conv = summary["models"]["mlp"][state]["ratio_min_max_converged"]
        assert conv["n"] == len(sel)
        if sel:
            assert conv["mean"] == pytest.approx(np.mean([r["ratio_min_max"] for r in sel]))


def test_q3_quick_slq_index_matches_dense_hessian(q3_quick):
    summary, tmp = q3_quick
    rows = [r for r in summary["points"] if r["model"] == "mlp"]
    for r in rows:
        for tol in q3.ZERO_TOLS:
            # 682 parameters, 3 SLQ runs of 30 steps: the estimate's spread is ≈ 0.01.
            assert r[f"negative_{tol}"] == pytest.approx(r[f"exact_broadened_negative_{tol}"], abs=0.04)
        assert r["exact_index"] == pytest.approx(r["exact_frac_below_0_0.01"])
    assert summary["models"]["mlp"]["random"]["exact_index"]["mean"] > 0.05  # saddles at init
    for name in ("q3_index_vs_loss.png", "q3_spectra.png"):
        assert (tmp / "figures" / name).stat().st_size > 1000
    assert (tmp / "results" / "summary.json").stat().st_size > 0


# ----------------------------------------------------------------------------- Q4

import q4_skip_connections as q4  # noqa: E402


class Linear(nn.Module):
    """Logits W x: the cross-entropy is convex in W, so every line in weight space is
    convex, hence quasi-convex."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


class Oscillating(nn.Module):
    """Logit z0 = 3 cos(20 |W|² / |W0|²): along a filter-normalised line W0 + αD (|D| = |W0|
    for the single filter) |W|²/|W0|² = 1 + α² + 2α cos∠(W0, D), so on α ∈ [-1, 1] the
    loss log(e^z0 + 9) oscillates through several periods: neither quasi-convex nor
    quasi-concave."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, 400, generator=torch.Generator().manual_seed(1)))
        self.register_buffer("norm0", (self.weight.detach() ** 2).sum())

    def forward(self, x):
        z0 = 3 * torch.cos(20 * (self.weight ** 2).sum() / self.norm0)
        onehot = torch.zeros(10)
        onehot[0] = 1
        return (z0 * onehot).expand(len(x), 10)


@pytest.mark.parametrize("model, expected", [
    (Linear(), dict(n_flat=0, frac_quasi_convex=1.0)),
    (Oscillating(), dict(n_flat=0, frac_quasi_convex=0.0, frac_quasi_concave=0.0)),
    # Only a 1-D parameter: filter-normalised directions leave it alone, every line is flat.
    (Quadratic(SPECTRUM), dict(n_flat=6, frac_flat=1.0)),
])
def test_q4_line_fractions_of_constructed_models(model, expected):
    x, y = (torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(2)),
            torch.arange(8) % 10) if isinstance(model, Linear) else _quadratic_data()
    dirs = landscape.parameter_directions(model, "filter", n=6, seed=3)
    fr = q4.line_fractions(q4.lines(model, x, y, dirs, "-1:1:41", "eval"))
    assert fr["n_lines"] == 6
    for key, value in expected.items():
        assert fr[key] == value, key
    if expected.get("frac_flat") == 1.0:
        assert np.isnan(fr["frac_quasi_convex"])  # flat lines are left out, not counted convex


def test_q4_wilson_interval_known_values():
    assert q4.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert q4.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_q4_ratio_off_centre_matches_dense_hessian():
    # A random toy ResNet without shortcuts, moved to (1, -1) on a filter-normalised plane
    # with the centre's BatchNorm statistics: Lanczos's |λmin/λmax| against the dense
    # float64 Hessian of the same loss.
    x, y = landscape.load_dataset("digits", n=16, in_shape=(1, 8, 8))
    net = q4.build(q4.SIZES["quick"]["archs"]["tiny-noskip"], 0, (1, 8, 8))
    plane = landscape.parameter_directions(net, "filter", n=2, seed=5)
    at = q4.moved(net, plane, (1.0, -1.0), q4.centre_statistics(net, x))
    eigs = q3.dense_eigenvalues(at, x, y)
    r = q4.ratio(at, x, y, "eval", max_steps=300, seed=0)
    assert r["converged_max"] and r["converged_min"]
    assert r["lambda_max"] == pytest.approx(eigs[-1], rel=2e-3)
    assert r["lambda_min"] == pytest.approx(eigs[0], abs=2e-3 * abs(eigs[-1]))
    assert r["ratio_min_max"] == pytest.approx(abs(eigs[0] / eigs[-1]), abs=5e-3)
    assert eigs[0] < 0  # a saddle, so the ratio is not trivially 0


@pytest.fixture(scope="module")
def q4_quick(tmp_path_factory):
    return _quick(q4, tmp_path_factory, "q4")


def test_q4_quick_grid_hessians_see_the_plotted_surface(q4_quick):
    summary, tmp = q4_quick
    for name, e in summary["conditions"].items():
        # The moved copies with the centre's statistics reproduce loss_slice's surface
        # (recomputed statistics held fixed over the plane) at every grid point.
        assert e["grid_loss_mismatch"] < 1e-5, name
        assert e["lines_pooled"]["n_lines"] == 6
    rec = next(r for r in summary["records"] if "hessian_grid" in r)
    centre = next(p for p in rec["hessian_grid"] if p["alpha"] == 0 and p["beta"] == 0)
    assert centre["ratio_min_max"] == rec["centre"]["ratio_min_max"]
    # The surface's centre is the slice batch's loss in training mode (batch statistics).
    net = q4.build(q4.SIZES["quick"]["archs"][rec["arch"]], rec["seed"], (1, 8, 8))
    x, y = landscape.load_dataset("digits", n=200, in_shape=(1, 8, 8))
    if rec["state"] == "random":
        assert rec["centre_loss"] == pytest.approx(q3.batch_loss(net, x[:16], y[:16]), rel=1e-5)
    for name in ("q4_surfaces.png", "q4_convexity.png"):
        assert (tmp / "figures" / name).stat().st_size > 1000
