"""Q5 (max-activation reliability) and Q6 (t-SNE heatmaps against max-activating
examples): their helpers against closed forms and constructed units, and their
--quick runs against answers known by construction or from the toolkit itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_experiments import _script  # the experiments' loader (tests/ is on the path)

import landscape
from landscape.maxact import METRICS, maxact
from landscape.view import resolve_bn


@pytest.fixture(scope="module")
def units():
    return _script("_units")


@pytest.fixture(scope="module")
def q5():
    return _script("q5_maxact_reliability")


@pytest.fixture(scope="module")
def q6():
    return _script("q6_tsne_vs_maxact")


# ----------------------------------------------------------------------------- shared helpers

def test_purity_of_a_pure_label_detector_is_one(units):
    x, y = landscape.load_dataset("digits", n=300)
    labels = y.numpy()
    # a unit that fires on class 3 only (a tiny index ramp breaks ties): top-9 all 3s
    act = (labels == 3) + 1e-6 * np.arange(len(labels))
    top = np.argsort(-act)[:9][None]
    assert units.purity(labels, top)[0] == 1.0
    # a unit that ramps with the index: its top-9 are the last 9 samples
    last = np.arange(len(labels) - 9, len(labels))[::-1][None]
    expected = np.bincount(labels[last[0]]).max() / 9
    assert units.purity(labels, last)[0] == pytest.approx(expected)
    small = units.purity(np.array([0, 1, 2, 1, 1, 2]), np.array([[0, 1, 2], [1, 3, 4]]))
    assert small.tolist() == [1 / 3, 1.0]


def test_auroc_closed_forms(units):
    # pairs (1,0)(1,2)(1,4)(2,0)(2,2)(2,4)(3,0)(3,2)(3,4): wins 1+0+0+1+½+0+1+1+0 = 4.5 of 9
    assert units.auroc([1, 2, 3], [0, 2, 4]) == pytest.approx(0.5)
    assert units.auroc([5, 6], [1, 2, 3]) == 1.0
    assert units.auroc([1, 2], [5, 6, np.nan]) == 0.0
    # two normals a distance d apart: AUROC = Φ(d / √2)
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    p, q = rng.normal(1.0, 1.0, 4000), rng.normal(0.0, 1.0, 4000)
    a = units.auroc(p, q)
    assert a == pytest.approx(norm.cdf(1 / np.sqrt(2)), abs=0.01)
    assert a == pytest.approx(roc_auc_score(np.r_[np.ones(4000), np.zeros(4000)], np.r_[p, q]), abs=1e-12)


def test_dead_units_are_found_and_skipped(units):
    model = landscape.build_model("mlp", seed=2, width=8)
    x, _ = landscape.load_dataset("digits", n=100)
    assert not units.dead(units.activations(model, x)).any()  # this draw has no dead unit
    with torch.no_grad():  # unit 2 of the last hidden layer: relu(0·x − 1) = 0 everywhere
        model.fc2.weight[2] = 0
        model.fc2.bias[2] = -1
        model.fc2.weight[5] = 0  # unit 5: relu(0·x + 0.5) = 0.5, constant too
        model.fc2.bias[5] = 0.5
    act = units.activations(model, x)
    assert units.dead(act).tolist() == [i in (2, 5) for i in range(8)]
    assert units.live_units(act, 4) == [0, 1, 3, 4]


def test_recomputed_batchnorm_matches_maxact(units):
    # A random resnet18: analyses recompute its BatchNorm statistics on the data; the
    # helper's activations must rank the data as maxact does (same top-k sets).
    x, _ = landscape.load_dataset("digits", n=64, in_shape=(1, 8, 8))
    model = landscape.build_model("resnet18", seed=1, in_shape=(1, 8, 8))
    assert resolve_bn(model, "auto") == "recompute"
    act = units.activations(model, x, [0, 1, 2])
    ds = maxact(model, None, [0, 1, 2], x, top_k=5, restarts=1, steps=1, batch_size=64)
    top = np.argsort(-act, axis=0, kind="stable")[:5].T
    for mine, theirs in zip(top, ds["topk_index"].values):
        assert set(mine) == set(theirs)
    np.testing.assert_allclose(np.median(act, axis=0), ds["data_median"].values, rtol=1e-4)


# ----------------------------------------------------------------------------- Q5 pieces

def test_q5_thinned_data_closed_form(q5):
    # a(x) = −(x − c)² on the grid x = 0, 0.1, ..., 1 with its maximum c = 0.42 known
    # (a = 0): the top datum is 0.4, rho = (a(0.4) − median) / (0 − median), the maximum's
    # nearest datum 0.02 away, h = 0.1.
    x = np.round(np.linspace(0, 1, 11), 10)[:, None]
    act = -((x - 0.42) ** 2)
    res = q5.thinned(act, x, np.array([[0.42]]), np.array([0.0]))
    median = np.median(act)
    assert res["rho"][0] == pytest.approx((-(0.02 ** 2) - median) / (0 - median))
    assert res["dist"][0] == pytest.approx(0.02)
    assert res["h"] == pytest.approx(0.1)
    assert res["dist_h"][0] == pytest.approx(0.2)
    assert res["top_dist"][0] == pytest.approx(0.02)
    assert res["hill"][0] == pytest.approx(1.0)  # a decreases with the distance to c
    # thinned to every other point (0, 0.2, ..., 1): the top datum is 0.4 still, h = 0.2
    thin = q5.thinned(act[::2], x[::2], np.array([[0.42]]), np.array([0.0]))
    assert thin["h"] == pytest.approx(0.2) and thin["dist_h"][0] == pytest.approx(0.1)
    # a unit constant on the data (a sparse unit thinned to its floor) has no top datum
    flat = q5.thinned(np.hstack([act, np.zeros_like(act)]), x, np.array([[0.42], [0.5]]),
                      np.array([0.0, 1.0]))
    assert flat["constant"].tolist() == [False, True]
    assert np.isnan([flat[k][1] for k in ("rho", "dist", "dist_h", "top_dist", "hill")]).all()
    assert flat["rho"][0] == res["rho"][0]


def test_q5_direction_along_a_unit_axis_is_that_unit(q5):
    # v = e_j: the direction's activation is unit j's, so every metric is unit j's.
    x, _ = landscape.load_dataset("digits", n=80)
    model = landscape.build_model("mlp", seed=3, width=16)
    v = torch.zeros(16, 2)
    v[4, 0] = v[9, 1] = 1.0
    opts = dict(top_k=5, restarts=2, steps=10, seed=0)
    a = maxact(q5.Directions(model, v), "proj", [0, 1], x, **opts)
    b = maxact(model, None, [4, 9], x, **opts)
    for m in ("rho", "gain", "dist_to_data", "morans_i", "topk_jaccard", "lipschitz"):
        np.testing.assert_allclose(a[m].values, b[m].values, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(a["topk_index"].values, b["topk_index"].values)
    cols = q5.random_directions(16, 5, seed=0)
    np.testing.assert_allclose(cols.norm(dim=0).numpy(), 1.0, rtol=1e-6)


def test_q5_rerandomised_replaces_exactly_the_named_groups(q5):
    trained = landscape.build_model("cnn", seed=0, in_shape=(1, 8, 8))
    fresh = landscape.build_model("cnn", seed=7, in_shape=(1, 8, 8))
    mixed = q5.rerandomised(trained, fresh, [["head"], ["conv3"]])
    for key, value in mixed.state_dict().items():
        source = fresh if key.startswith(("head.", "conv3.")) else trained
        assert torch.equal(value, source.state_dict()[key])
    assert not torch.equal(trained.conv3.weight, fresh.conv3.weight)


@pytest.fixture(scope="module")
def q5_quick(q5, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q5")
    return q5.main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")]), tmp


def test_q5_quick_agrees_with_maxact(q5_quick):
    summary, _ = q5_quick
    checks = summary["checks"]
    # The units' top-k from the script's own activations are maxact's top-k (BatchNorm
    # recomputed for the random resnet18, stored for the trained one).
    assert checks["topk_units"] > 0 and checks["topk_mismatch_units"] == 0
    # The density statistics on all the data reproduce maxact's rho and dist_to_data.
    assert checks["rho_max_abs_diff"] < 1e-4
    assert checks["dist_max_rel_diff"] < 1e-4
    # The last cascade stage holds every parameter of the fresh draw: its activations.
    assert checks["cascade_end_max_abs_diff"] == 0.0


def test_q5_quick_cascade_by_construction(q5_quick):
    summary, tmp = q5_quick
    for name, e in summary["models"].items():
        stages = e["cascade"]
        # stage 0 is the trained network itself; stage 1 re-randomises only the head,
        # which does not feed the layer: identical top-k and activations.
        assert stages[0]["overlap"]["mean"] == 1.0 and stages[1]["overlap"]["mean"] == 1.0
        assert stages[1]["spearman"]["mean"] == pytest.approx(1.0)
        assert stages[1]["label"] in ("head", "fc")
        assert len(stages) == {"mlp": 4, "cnn": 5, "resnet18": 7}[name]
    assert summary["chance_overlap"] == pytest.approx(3 / 200)
    for fig in ("q5_metrics.png", "q5_density.png", "q5_cascade.png", "q5_directions.png"):
        assert (tmp / "figures" / fig).stat().st_size > 1000
    # the mlp cascade runs maxact at every stage; the head stage leaves its metrics alone
    mlp = summary["models"]["mlp"]["cascade"]
    assert mlp[1]["rho"]["mean"] == pytest.approx(mlp[0]["rho"]["mean"], rel=1e-9)
    # Dead units: counted for every network, and none of the analysed units is dead.
    for e in summary["models"].values():
        for st in e["states"].values():
            assert st["units_total"] in (64, 512)
            assert st["metrics"]["rho"]["units"]["n"] > 0


# ----------------------------------------------------------------------------- Q6

def test_q6_map_morans_i_closed_form(q6):
    # Points on a line, k = 2: the graph is the chain plus the edges (0, 2) and
    # (n−3, n−1).  An alternating ±1 (n even, mean 0) gives
    # I = (n / S0) Σ w z z / Σ z² = (n / 2(n+1)) · 2(3 − n) / n = (3 − n) / (n + 1).
    n = 100
    coords = np.stack([np.arange(n, dtype=float), np.zeros(n)], axis=1)
    alternating = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    ramp = np.arange(n, dtype=float)
    got = q6.map_morans_i(coords, np.stack([alternating, ramp], axis=1), k=2)
    assert got[0] == pytest.approx((3 - n) / (n + 1))
    assert got[1] > 0.99  # a ramp along the map is as smooth as it gets


def test_q6_map_spread(q6):
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # all pairs: 4 sides of 1 and 2 diagonals of √2 -> mean (4 + 2√2) / 6
    ref = (4 + 2 * np.sqrt(2)) / 6
    spread = q6.map_spread(coords, np.array([[0, 1], [0, 3]]))
    np.testing.assert_allclose(spread, [1 / ref, np.sqrt(2) / ref])


def test_q6_separation_of_disjoint_and_identical_groups(q6):
    rng = np.random.default_rng(0)
    s = q6.separation(np.arange(10.0) + 100, np.arange(10.0), 50, 200, rng)
    assert s["auroc"] == 1.0 and s["ci"] == [1.0, 1.0]
    # a permutation floor for 10 vs 10: |AUROC − 0.5| beyond it has p < 0.05 (≈ 0.3)
    assert 0.2 < s["noise_floor"] < 0.4
    same = q6.separation(np.arange(10.0), np.arange(10.0), 50, 50, rng)
    assert same["auroc"] == 0.5


def test_q6_purity_baselines(q6):
    # Two labels in two far-apart clusters of 1000 points each: every nearest-neighbour
    # ball is pure; a random 3-subset is pure with probability ≈ 2 · (1/2)³ = 1/4 and
    # 2/3 pure otherwise, so its mean purity is ≈ 1/4 + 3/4 · 2/3 = 3/4.
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (1000, 2)), rng.normal(100, 1, (1000, 2))])
    labels = np.repeat([0, 1], 1000)
    b = q6.purity_baselines(x, labels, k=3, draws=4000)
    assert b["ball"]["mean"] == 1.0
    assert b["chance"]["mean"] == pytest.approx(0.75, abs=0.015)


@pytest.fixture(scope="module")
def q6_quick(q6, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q6")
    return q6.main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")]), tmp


def test_q6_quick_aurocs_match_a_reference(q6, q6_quick):
    import csv

    from sklearn.metrics import roc_auc_score

    summary, tmp = q6_quick
    with open(tmp / "results" / "units.csv") as fh:
        rows = list(csv.DictReader(fh))
    for name, e in summary["models"].items():
        mine = [r for r in rows if r["model"] == name]
        for key in ("purity", "tsne_morans_i", "rho", "morans_i"):
            vals = np.array([float(r[key]) for r in mine])
            truth = np.array([r["state"] == "trained" for r in mine])
            ok = np.isfinite(vals)
            if len(set(truth[ok])) < 2:
                continue
            assert e["stats"][key]["auroc"] == pytest.approx(roc_auc_score(truth[ok], vals[ok]), abs=1e-12)
        p = e["prediction"]
        assert p["diff"] == pytest.approx(p["candidate_sep"] - p["best_sep"])
        assert p["best_sep"] == max(abs(e["stats"][k]["auroc"] - 0.5) for k in q6.OTHERS)
        assert set(q6.OTHERS) >= {*METRICS, "purity"}
    for fig in ("q6_auroc.png", "q6_heatmaps.png"):
        assert (tmp / "figures" / fig).stat().st_size > 1000


def test_q6_quick_map_statistics_are_those_of_the_map(q6_quick):
    # Moran's I on the t-SNE map of the inputs is a smoothness of the activation over
    # the data: for real units it must be clearly positive (neighbours on the map are
    # neighbouring digits), never the ≈ −1/(N−1) of noise.
    import csv

    summary, tmp = q6_quick
    with open(tmp / "results" / "units.csv") as fh:
        rows = list(csv.DictReader(fh))
    values = np.array([float(r["tsne_morans_i"]) for r in rows])
    assert np.isfinite(values).all() and np.median(values) > 0.2
    assert all(0 < float(r["purity"]) <= 1 for r in rows)


# ----------------------------------------------------------------------------- Q6 planted units

def test_q6_planted_detectors_peak_where_built():
    # Every detector is normalised to peak at 1 on the data: a unit with only its first
    # (or only its second) detector switched on reaches 1 on the data, up to the small
    # linear background, and a two-cluster unit's top datum carries its first class.
    planted = _script("_planted")
    x, y = landscape.load_dataset("digits", n=400, in_shape=(1, 8, 8))
    flat, labels = x.flatten(1).double().numpy(), y.numpy()
    module, info = planted.planted_units(flat, labels, 6, seed=3)
    bg = (x.flatten(1) @ module.background.T).detach().numpy()
    with torch.no_grad():
        module.height.data[:, 1] = 0.0
        first = module(x).numpy() - bg
        module.height.data[:, 0], module.height.data[:, 1] = 0.0, 1.0
        second = module(x).numpy() - bg
    np.testing.assert_allclose(first.max(0), 1.0, rtol=1e-5)
    two = [j for j, i in enumerate(info) if i["group"] == "two"]
    np.testing.assert_allclose(second.max(0)[two], 1.0, rtol=1e-5)
    assert len(two) == 6 and all(0.5 <= info[j]["r"] < 0.9 for j in two)
    assert all(i["class_b"] == -1 and i["r"] == 0 for i in info if i["group"] == "one")


def test_q6_quick_planted_study_reports_its_own_numbers(q6, q6_quick):
    import csv

    from sklearn.metrics import roc_auc_score

    summary, tmp = q6_quick
    with open(tmp / "results" / "planted.csv") as fh:
        rows = list(csv.DictReader(fh))
    pl = summary["planted"]
    truth = np.array([r["group"] == "two" for r in rows])
    assert truth.sum() == pl["n_two"] == len(truth) - pl["n_one"]
    for key, st in pl["stats"].items():
        vals = np.array([float(r[key]) for r in rows])
        assert st["auroc"] == pytest.approx(roc_auc_score(truth, vals), abs=1e-12), key
    # The verdict is the criterion stated in the script, applied to these numbers.
    topk = ["purity", "topk_compactness", "topk_jaccard", "tsne_topk_spread_s0"]
    best = max(pl["stats"][k]["separation"] for k in topk)
    heat = min(pl["stats"][f"second_region_s{s}"]["auroc"] for s in q6.MAP_SEEDS)
    assert pl["found"] == (heat >= 0.9 and best < 0.9)
    assert pl["options"]["region_level"] == 0.2 and pl["options"]["region_min_size"] == 10
    # the feature-space map is the network's own, PCA-reduced as recorded
    for e in summary["models"].values():
        assert 2 <= e["feat_pca_dims"] <= 50
    assert (tmp / "figures" / "q6_planted.png").stat().st_size > 1000
