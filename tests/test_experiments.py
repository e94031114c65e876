"""The experiments' --quick paths, checked against answers known in closed form."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import landscape

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _script(name: str):
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))  # the scripts import their shared _common
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- Q1

@pytest.fixture(scope="module")
def q1_quick(tmp_path_factory):
    q1 = _script("q1_nonconvex_constructions")
    tmp = tmp_path_factory.mktemp("q1")
    return q1.main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")]), tmp


def test_q1_clip_net_computes_clip():
    q1 = _script("q1_nonconvex_constructions")
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)[:, None, None, None]
    with torch.no_grad():
        out = q1.clip_net()(x).squeeze()
    assert torch.equal(out, x.squeeze().clamp(0, 1))


def test_q1_clip_verdicts_exact(q1_quick):
    summary, tmp = q1_quick
    clip = summary["clip"]
    # On [-1, 2]: both kinks inside, monotone, one plateau at each end.
    assert (clip["convex"], clip["concave"], clip["quasi_convex"], clip["quasi_concave"]) == (
        False, False, True, True)
    assert (clip["n_minima"], clip["n_maxima"], clip["flat"]) == (1, 1, False)
    assert clip["qcvx_barrier"] == 0 and clip["qccv_barrier"] == 0
    # Every window of the grid gets the closed-form verdict (linear inside [0, 1], flat
    # outside, convex-only / concave-only with one kink).
    assert summary["clip_windows"]["agreement"] == {
        "convex": 1.0, "concave": 1.0, "quasi_convex": 1.0, "quasi_concave": 1.0, "flat": 1.0}
    counts = summary["clip_windows"]["windows_per_class"]
    assert all(counts[k] > 0 for k in ("flat", "linear", "convex_only", "concave_only", "neither"))
    for name in ("q1_curves.png", "q1_windows.png", "q1_resolution.png"):
        assert (tmp / "figures" / name).stat().st_size > 1000


def test_q1_clip_kink_excess_holds_as_the_grid_refines(q1_quick):
    summary, _ = q1_quick
    res = summary["clip_resolution"]
    for n, h, cvx, ccv, local in zip(res["samples"], res["spacing"], res["cvx_excess"],
                                     res["ccv_excess"], res["neighbour_chord"]):
        assert h == pytest.approx(3 / (n - 1))
        # Kinks of slope change 1 on a range-1 curve: the hull misses f(1) = 1 (and f(0) = 0)
        # by the envelope's 1/2 less at most 2h; the chord of two neighbours by h/4 .. h/2.
        assert 0.5 - 2 * h <= cvx <= 0.5 and 0.5 - 2 * h <= ccv <= 0.5
        assert h / 4 - 1e-12 <= local <= h / 2 + 1e-12
    assert res["convex"] == [False] * 3 and res["concave"] == [False] * 3
    assert res["prediction_holds"] and res["non_convex_at_every_count"]


def test_q1_smooth_concavity_does_not_fade(q1_quick):
    summary, _ = q1_quick
    smooth = summary["quartic_resolution"]
    assert smooth["samples"] == [41, 101, 2001]
    for n, h, excess, local in zip(smooth["samples"], smooth["spacing"], smooth["cvx_excess"],
                                   smooth["neighbour_chord"]):
        x = np.linspace(-2, 2, n)
        # The hull is flat at the lowest sample m between ±1, f(0) = 0.5 is 0.5 - m above
        # it, over the samples' range 8.5 - m.
        lowest = (x**4 - 2 * x**2 + 0.5).min()
        assert excess == pytest.approx((0.5 - lowest) / (8.5 - lowest), rel=1e-9)
        assert excess == pytest.approx(1 / 9, abs=2 * 24 * h / 9)  # within 2ω(h) of the limit
        # f(0) - (f(h) + f(-h)) / 2 = 2h² - h⁴: the neighbour chord, fading as h².
        assert local == pytest.approx((2 * h ** 2 - h ** 4) / 9, rel=1e-9)
    assert smooth["convex"] == [False] * 3
    assert smooth["neighbour_chord_convex_from_samples"] == 61


def test_q1_quartic(q1_quick):
    summary, _ = q1_quick
    q = summary["quartic"]
    # The exact polynomial on [-2, 2] (range -0.5 .. 8.5): the hill at 0 rises 0.5 - (-0.5)
    # above the lower side, a barrier of 1/9; the valleys at ±1 lie 9 below both edges
    # (8.5), a quasi-concavity barrier of 1.
    assert q["reference_main"]["n_minima"] == 2
    assert q["reference_main"]["qcvx_barrier"] == pytest.approx(1 / 9)
    assert q["reference_main"]["qccv_barrier"] == pytest.approx(1.0)
    # The fitted nets (toy size): two minima near ±1, neither quasi-convex nor quasi-concave.
    for seed in q["per_seed"]:
        assert seed["n_minima"] == 2
        assert not seed["quasi_convex"] and not seed["quasi_concave"]
        assert seed["argmin_left"] == pytest.approx(-1, abs=0.2)
        assert seed["argmin_right"] == pytest.approx(1, abs=0.2)


# ----------------------------------------------------------------------------- Q8

@pytest.fixture(scope="module")
def q8():
    return _script("q8_architecture_prior")


def test_q8_pixels_probe_matches_known_digits_accuracy(q8):
    # Logistic regression on the 64 raw pixels of scikit-learn's digits is known to reach
    # about 0.96 held-out accuracy; a broken probe (unstandardised, wrong labels, wrong C
    # search) falls well below.
    x, y = landscape.load_dataset("digits")
    xt, yt = landscape.load_dataset("digits", split="test")
    r = q8.probe(x.flatten(1).numpy(), y.numpy(), {"test": xt.flatten(1).numpy()}, yt.numpy())
    assert r["test"] > 0.94


def test_q8_random_relu_features_match_arccos_kernel(q8):
    # A random one-layer mlp with kaiming weights N(0, 2/d) and zero biases: the mean
    # product of its features is the order-1 arc-cosine kernel (Cho & Saul 2009).
    x, _ = landscape.load_dataset("digits", n=12, seed=4)
    width = 8192
    model = landscape.build_model("mlp", init="kaiming", seed=0, width=width, depth=1)
    f = q8.features(model, x)
    flat = x.flatten(1).double().numpy()
    expected = q8.arccos_kernel(flat, flat, weight_var=2 / flat.shape[1])
    gram = f @ f.T / width
    assert np.abs(gram - expected).max() < 0.05 * np.diag(expected).mean()
    # Default init (PyTorch's biases): no longer that kernel.
    biased = q8.features(landscape.build_model("mlp", init="default", seed=0, width=width, depth=1), x)
    assert np.abs(biased @ biased.T / width - expected).max() > 0.1 * np.diag(expected).mean()


def test_q8_random_fourier_features_approximate_rbf_kernel(q8):
    x, _ = landscape.load_dataset("digits", n=40, seed=2)
    flat = x.flatten(1).double().numpy()
    dim = 8192
    a, _, sigma = q8.random_fourier(flat, flat[:2], dim, seed=0)
    d2 = ((flat[:, None] - flat[None]) ** 2).sum(-1)
    rbf = np.exp(-d2 / (2 * sigma ** 2))
    assert np.abs(a @ a.T - rbf).max() < 5 / np.sqrt(dim)


def test_q8_shift_right(q8):
    x = torch.arange(8.0).view(1, 1, 2, 4)
    assert q8.shift_right(x, 1).tolist() == [[[[0.0, 0.0, 1.0, 2.0], [0.0, 4.0, 5.0, 6.0]]]]


def test_q8_quick_end_to_end(q8, tmp_path):
    summary = q8.main(["--quick", "--out", str(tmp_path / "results"), "--figures", str(tmp_path / "figures")])
    # The pixel probe of the run against an independent fit at the C it chose.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = landscape.load_dataset("digits", n=200, split="train")
    xt, yt = landscape.load_dataset("digits", split="test")
    scaler = StandardScaler().fit(x.flatten(1).numpy().astype(float))
    ref = LogisticRegression(C=summary["pixels"]["C"], max_iter=2000).fit(
        scaler.transform(x.flatten(1).numpy().astype(float)), y.numpy())
    accuracy = ref.score(scaler.transform(xt.flatten(1).numpy().astype(float)), yt.numpy())
    assert summary["pixels"]["test"] == pytest.approx(accuracy, abs=0.01)
    for entry in summary["models"]:
        for state in ("trained", "random-kaiming"):
            assert 0.3 < entry[state]["test"]["mean"] <= 1.0  # far above chance (0.1)
        share = entry["random-kaiming"]["share_of_mean_gain"]
        pixels = summary["pixels"]["test"]
        trained = entry["trained"]["test"]["mean"]
        assert share == pytest.approx((entry["random-kaiming"]["test"]["mean"] - pixels) / (trained - pixels))
    assert (tmp_path / "results" / "probes.csv").read_text().count("\n") == 1 + 1 + 2 * 2 * 2 + 2
    for name in ("q8_probe_accuracy.png", "q8_shift.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
