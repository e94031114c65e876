"""Q9 (can a random network rank architectures?): the --quick run and the script's
pieces, checked against closed forms and independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from experiment_scripts import load_script
from scipy import stats


def _q9():
    return load_script("q9_architecture_ranking")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q9")
    summary = _q9().main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")])
    return summary, tmp


def test_parameter_counts_match_closed_form():
    q9 = _q9()
    # 3 stages of 16, 32, 64 channels of 3x3 convs with biases, a 64 -> 10 head.
    conv = [3 * 16 * 9 + 16, 16 * 32 * 9 + 32, 32 * 64 * 9 + 64]
    base = sum(conv) + 64 * 10 + 10
    assert q9.n_params(q9.build(q9.ARCHITECTURES["cnn3-w16"], 0)) == base == 24234
    # one residual block (two c -> c convs) per stage; the shortcut adds no parameter
    blocks = sum(2 * (c * c * 9 + c) for c in (16, 32, 64))
    for name in ("cnn9-w16-skip", "cnn9-w16-noskip"):
        assert q9.n_params(q9.build(q9.ARCHITECTURES[name], 0)) == base + blocks
    mlp = q9.build(q9.ARCHITECTURES["mlp2-w256"], 0)
    assert q9.n_params(mlp) == 3072 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert mlp.n_features == 256


@torch.no_grad()
def test_features_are_the_global_average_of_the_last_stage():
    q9 = _q9()
    x = torch.randn(5, 3, 32, 32)
    for pool, down in (("max", lambda h: F.max_pool2d(h, 2)), ("avg", lambda h: F.avg_pool2d(h, 2))):
        net = q9.build(dict(stages=2, width=4, pool=pool), seed=3)
        convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
        h = x
        for conv in convs:
            h = down(torch.relu(F.conv2d(h, conv.weight, conv.bias, padding=1)))
        assert h.shape[-1] == 8
        expected = h.mean((2, 3)).double().numpy()
        assert np.allclose(net.features(x), expected, atol=1e-6)
        assert torch.allclose(net(x), net.head(h.mean((2, 3))), atol=1e-5)
    # strided: no pooling layer, each stage's conv has stride 2
    net = q9.build(dict(stages=2, width=4, pool="stride"), seed=3)
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    h = x
    for conv in convs:
        h = torch.relu(F.conv2d(h, conv.weight, conv.bias, stride=2, padding=1))
    assert np.allclose(net.features(x), h.mean((2, 3)).double().numpy(), atol=1e-6)


def test_residual_block_adds_its_input_only_with_skip():
    q9 = _q9()
    x = torch.randn(2, 4, 6, 6)
    for skip in (True, False):
        block = q9.Residual(4, "relu", skip)
        with torch.no_grad():
            block.conv2.weight.zero_()
            block.conv2.bias.fill_(-0.25)
        # conv2 outputs the constant -0.25: relu(x - 0.25) with the shortcut, relu(-0.25) = 0 without
        expected = torch.relu(x - 0.25) if skip else torch.zeros_like(x)
        assert torch.equal(block(x), expected)


def test_same_seed_same_initialisation():
    q9 = _q9()
    a, b = q9.build(q9.ARCHITECTURES["cnn3-w16"], 4), q9.build(q9.ARCHITECTURES["cnn3-w16"], 4)
    c = q9.build(q9.ARCHITECTURES["cnn3-w16"], 5)
    assert all(torch.equal(p, r) for p, r in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_spearman_matches_scipy_with_ties_and_batches():
    q9 = _q9()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (7, 9)).astype(float)  # many ties
    b = rng.standard_normal((7, 9))
    got = q9.spearman(a, b)
    for i in range(7):
        assert got[i] == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_ridge_probe_matches_closed_form():
    q9 = _q9()
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    y, yt = rng.integers(0, 4, 120), rng.integers(0, 4, 60)
    centres = rng.standard_normal((4, 6))
    f = centres[y] + 1.5 * rng.standard_normal((120, 6))
    ft = centres[yt] + 1.5 * rng.standard_normal((60, 6))
    r = q9.probe(f, y, ft, yt)
    # one-vs-rest ridge on ±1 targets at the chosen penalty, intercept by centring
    sc = StandardScaler().fit(f)
    a, b = sc.transform(f), sc.transform(ft)
    targets = np.where(y[:, None] == np.arange(4), 1.0, -1.0)
    tm = targets.mean(0)
    w = np.linalg.solve(a.T @ a + r["alpha"] * np.eye(6), a.T @ (targets - tm))
    pred = (b @ w + tm).argmax(1)
    assert r["accuracy"] == pytest.approx((pred == yt).mean())
    assert r["accuracy"] > 0.5  # well above chance (0.25) on separated centres


def test_project_is_a_fixed_map_of_the_standardised_features():
    q9 = _q9()
    rng = np.random.default_rng(2)
    f, ft = rng.standard_normal((50, 12)) * 3 + 1, rng.standard_normal((20, 12))
    f[:, 5] = 7.0  # a dead unit: stays 0 after standardising
    a, b = q9.project(f, ft, 4)
    a2, _ = q9.project(f + 10.0, ft, 4)  # same native count: same matrix, shift removed
    assert a.shape == (50, 4) and b.shape == (20, 4)
    assert np.allclose(a, a2)
    mean, std = f.mean(0), f.std(0)
    std[5] = 1.0
    z = (f - mean) / std
    w = np.linalg.lstsq(z, a, rcond=None)[0]  # a is exactly linear in z
    assert np.allclose(z @ w, a)
    assert q9.dead_fraction(f) == pytest.approx(1 / 12)
    assert q9.dead_fraction(np.maximum(f, 1e9)) == 1.0


def test_bootstrap_of_a_perfect_and_a_reversed_ranking():
    q9 = _q9()
    means = np.arange(6, dtype=float)
    random = np.repeat(means[:, None], 5, 1)  # no spread within an architecture
    trained = np.repeat(2 * means[:, None], 3, 1)
    params = np.array([6, 5, 4, 3, 2, 1])
    r = q9.bootstrap_rho(random, trained, params, b=200)
    assert r["rho"] == 1.0 and r["ci_seeds"] == [1.0, 1.0]
    assert r["rho_params"] == -1.0 and r["diff_params"] == 2.0 and r["ci_diff_params"] == [2.0, 2.0]
    # resampled architectures keep a perfect order (ties have one rank on both sides)
    assert r["ci_designs"][0] == pytest.approx(1.0)
    assert all(v["pass"] for v in q9.verdicts(r).values())
    back = q9.bootstrap_rho(random, trained[::-1], params, b=200)
    assert back["rho"] == -1.0 and back["ci_seeds"] == [-1.0, -1.0]
    assert not any(v["pass"] for k, v in q9.verdicts(back).items() if k != "beats_parameter_count")


def test_seed_bootstrap_interval_covers_noisy_means():
    q9 = _q9()
    rng = np.random.default_rng(3)
    # trained accuracy independent of the random one: the interval must straddle 0
    random = rng.normal(0.5, 0.05, (10, 5))
    trained = rng.normal(0.8, 0.05, (10, 3))
    r = q9.bootstrap_rho(random, trained, np.arange(10), b=500)
    assert r["ci_seeds"][0] < r["rho"] < r["ci_seeds"][1]
    assert r["ci_designs"][0] < 0 < r["ci_designs"][1]
    assert not q9.verdicts(r)["predicts_across_designs"]["pass"]


def test_mean_ci_is_the_t_interval():
    q9 = _q9()
    v = [0.2, 0.5, 0.4, 0.9]
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(v), scale=stats.sem(v))
    assert q9.mean_ci(v)["ci"] == pytest.approx([lo, hi])


def test_quick_end_to_end(quick):
    summary, tmp = quick
    table = summary["table"]
    assert [e["arch"] for e in table] == list(_q9().QUICK_ARCHITECTURES)
    rows = (tmp / "results" / "runs.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(table) * (2 + 2)
    # rho recomputed from the table's means with scipy
    mr = [e["random"]["mean"] for e in table]
    mt = [e["trained"]["mean"] for e in table]
    assert summary["ranking"]["rho"] == pytest.approx(stats.spearmanr(mr, mt).statistic)
    assert summary["ranking"]["rho_params"] == pytest.approx(
        stats.spearmanr([e["params"] for e in table], mt).statistic)
    lo, hi = summary["ranking"]["ci_seeds"]
    assert lo <= summary["ranking"]["rho"] <= hi
    pick = summary["pick"]
    assert pick["by_random"] == table[int(np.argmax(mr))]["arch"]
    assert pick["its_trained"] == pytest.approx(mt[int(np.argmax(mr))])
    assert pick["trained_rank_of_pick"] == 1 + sum(m > pick["its_trained"] for m in mt)
    for e in table:
        assert e["random"]["n"] == 2 and e["trained"]["n"] == 2
        assert 0.0 <= e["random"]["mean"] <= 1.0 and e["native_dim"] > 0
    assert set(summary["verdicts"]) == set(summary["criteria"])
    assert (tmp / "figures" / "q9_ranking.png").stat().st_size > 1000


def test_design_bootstrap_resamples_architectures():
    q9 = _q9()
    # no spread within an architecture: the seed interval is the point itself, while
    # resampling eight imperfectly ordered architectures must move rho
    random = np.repeat(np.arange(8.0)[:, None], 5, 1)
    trained = np.repeat(np.array([1.0, 0, 3, 2, 5, 4, 7, 6])[:, None], 3, 1)
    r = q9.bootstrap_rho(random, trained, np.arange(8), b=500)
    assert r["rho"] == pytest.approx(stats.spearmanr(np.arange(8), trained[:, 0]).statistic)
    assert r["ci_seeds"] == pytest.approx([r["rho"], r["rho"]])
    assert r["ci_designs"][0] < r["rho"] - 0.05 and r["ci_designs"][1] > r["rho"]
