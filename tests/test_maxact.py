"""Max-activation reliability: known answers on synthetic units, then the model API,
the CLI and the relation to slice / Hessian geometry."""

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from click.testing import CliRunner

import landscape
from landscape.cli import cli
from landscape.errors import LandscapeError
from landscape.maxact import (
    METRICS,
    ascend,
    compare_states,
    geometry_of,
    gradient_ascent,
    maxact,
    morans_i,
    relate,
    reliability_metrics,
    search_region,
)

H = 0.05  # grid spacing of the synthetic data


def grid(n: int = 21) -> torch.Tensor:
    """The n x n grid on [0, 1]^2 (spacing 1 / (n - 1)), float64."""
    g = torch.linspace(0, 1, n, dtype=torch.float64)
    return torch.cartesian_prod(g, g)


def bump(centre, sigma):
    c = torch.as_tensor(centre, dtype=torch.float64)
    return lambda z: torch.exp(-((z - c) ** 2).sum(-1) / (2 * sigma ** 2))


@pytest.mark.parametrize("region", ["box", "data"])
def test_single_gaussian_bump_known_answers(region):
    # a(z) = exp(-|z - c|^2 / (2 sigma^2)), c = (0.33, 0.61), sigma = 0.15, data on the
    # 0.05-grid.  The true maximum is c (a = 1).  The nearest grid point to c is
    # (0.35, 0.60): d^2 = 0.02^2 + 0.01^2 = 5e-4, d = 0.02236, so with m = the median
    # of a over the grid, rho = (exp(-5e-4 / 0.045) - m) / (1 - m) and
    # dist_to_data = d / h = 0.02236 / 0.05 = 0.4472.  c lies inside the hull of the
    # 16 grid points nearest to x*, so the data region must find it as the box does.
    x = grid()
    f = bump([0.33, 0.61], 0.15)
    res = reliability_metrics(lambda z: f(z)[:, None], x, restarts=8, seed=1, region=region)
    m = float(np.median(f(x).numpy()))
    a_star = np.exp(-5e-4 / (2 * 0.15 ** 2))
    assert res["nn_distance"] == pytest.approx(H)
    assert res["best_activation"][0] == pytest.approx(1.0, abs=1e-6)
    assert res["rho"][0] == pytest.approx((a_star - m) / (1 - m), abs=1e-5)
    assert res["dist_to_data"][0] == pytest.approx(np.sqrt(5e-4) / H, abs=1e-3)
    assert res["displacement"][0] == pytest.approx(np.sqrt(5e-4) / H, abs=1e-3)
    np.testing.assert_allclose(res["maximum"][0], [0.33, 0.61], atol=1e-4)
    if region == "box":  # one maximum, found by every restart (the data region's are local)
        assert res["n_maxima"][0] == 1
        assert res["p_hit"][0] == 1.0
    # gain = (1 - a(x*)) / std of a over the data
    assert res["gain"][0] == pytest.approx((1 - a_star) / f(x).numpy().std(), rel=1e-4)


def test_two_equal_bumps_have_two_maxima():
    # Two bumps of equal height 1 at (0.2, 0.2) and (0.8, 0.8), far apart (0.85 >> h):
    # restarts end at one or the other, both at the best height, so n_maxima = 2
    # and p_hit < 1 (neither bump catches every restart).
    x = grid()
    f1, f2 = bump([0.2, 0.2], 0.1), bump([0.8, 0.8], 0.1)
    res = reliability_metrics(lambda z: (f1(z) + f2(z))[:, None], x, restarts=16, seed=0,
                              region="box")
    assert res["n_maxima"][0] == 2
    assert 0 < res["p_hit"][0] < 1
    assert res["rho"][0] == pytest.approx(1.0, abs=1e-6)  # both centres are grid points


def test_linear_unit_lipschitz_and_morans_i():
    # a(z) = 2.5 z_0: every kNN edge has |a_i - a_j| / |x_i - x_j| = 2.5 |cos angle| <= 2.5,
    # with equality on the edges along axis 0 (well over 1 % of edges), so the 99th
    # percentile is exactly the slope.  A linear trend on a fine grid is as smooth as
    # anything can be on the kNN graph: Moran's I close to 1.
    x = grid(30)
    res = reliability_metrics(lambda z: 2.5 * z[:, :1], x, restarts=4, steps=20)
    assert res["lipschitz"][0] == pytest.approx(2.5, rel=1e-9)
    assert res["morans_i"][0] > 0.95


def test_morans_i_of_noise_is_near_zero_and_alternating_is_negative():
    rng = np.random.default_rng(0)
    n = 400
    ring = np.array([[(i - 1) % n, (i + 1) % n] for i in range(n)])  # a cycle graph
    noise = rng.normal(size=(n, 1))
    alternating = np.array([(-1.0) ** i for i in range(n)])[:, None]
    assert abs(morans_i(noise, ring)[0]) < 0.15
    assert morans_i(alternating, ring)[0] == pytest.approx(-1.0)


def test_ascent_never_leaves_the_box_or_the_ball():
    # A linear objective pushes every point towards a corner far outside the box.
    torch.manual_seed(0)
    lo, hi = torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([1.0, 0.5, 3.0])
    starts = lo + (hi - lo) * torch.rand(20, 3)
    owner = torch.zeros(20, dtype=torch.long)

    def f(z):
        return (z * torch.tensor([5.0, -3.0, 100.0])).sum(1, keepdim=True)

    ends = gradient_ascent(f, starts, owner, lo, hi, steps=30, lr=0.5)
    assert (ends >= lo).all() and (ends <= hi).all()
    np.testing.assert_allclose(ends[0].numpy(), [1.0, 0.0, 3.0], atol=1e-6)
    data = lo + (hi - lo) * torch.rand(50, 3)
    ball = search_region("ball", data, radius=0.3)
    ends = ascend(f, starts, owner, ball, steps=30, lr=0.5)
    assert ((ends - data.mean(0)).norm(dim=1) <= 0.3 + 1e-6).all()


def test_topk_metrics_see_a_compact_stable_top_set():
    # A narrow bump inside the data: its top-9 are the 9 grid points around it, far more
    # compact than random points, and both halves' tops lie in the same neighbourhood.
    x = grid()
    f = bump([0.5, 0.5], 0.08)
    res = reliability_metrics(lambda z: f(z)[:, None], x, restarts=4, steps=30)
    assert res["topk_compactness"][0] < 0.3
    assert res["topk_jaccard"][0] > 0.3
    assert set(res["topk_index"][0][:1].tolist()) == {10 * 21 + 10}


def test_bad_arguments_are_one_line_errors():
    x = grid(5)
    with pytest.raises(LandscapeError, match="top_k"):
        reliability_metrics(lambda z: z[:, :1], x, top_k=0)
    with pytest.raises(LandscapeError, match="samples"):
        reliability_metrics(lambda z: z[:, :1], x[:6])


@pytest.fixture
def mlp(tiny):
    return tiny.mlp()


@pytest.fixture
def data(tiny):
    return tiny.digits(96)


def test_maxact_on_a_model_round_trips_and_leaves_the_model_alone(mlp, data, tmp_path):
    x, _ = data
    mlp.train()
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    ds = maxact(mlp, None, 5, x, top_k=4, restarts=4, steps=20, null_models=2, seed=0)
    assert mlp.training and all(m.training for m in mlp.modules())
    for k, v in mlp.state_dict().items():
        assert torch.equal(v, before[k])
    assert ds.attrs["kind"] == "maxact"
    assert ds.rho.dims == ("unit",) and ds.topk_index.dims == ("unit", "rank")
    assert ds.endpoint_activation.dims == ("unit", "restart") and ds.sizes["restart"] == 8
    assert ds.maximum.shape == (5, 1, 4, 4) and ds.topk_image.shape == (5, 4, 1, 4, 4)
    # The z-scores against the null, by hand: two fresh draws of the recipe (xavier, bias
    # scale 0.1, width 12, depth 2) from the recorded seeds, their metrics pooled over
    # units, finite values only, std with ddof=1.
    assert len(ds.attrs["null_seeds"]) == 2
    pooled = {name: [] for name in METRICS}
    for i, s in enumerate(ds.attrs["null_seeds"]):
        other = landscape.build_model("mlp", init="xavier", bias_scale=0.1, seed=s, width=12,
                                      depth=2, in_shape=(1, 4, 4)).eval()
        assert not torch.equal(other.fc1.weight, mlp.fc1.weight)
        res = reliability_metrics(lambda z, m=other: landscape.unit_activations(
            m, "act2", z.view(-1, 1, 4, 4), list(range(5))), x.flatten(1), top_k=4, restarts=4,
            steps=20, seed=1 + i)
        for name in METRICS:
            pooled[name].append(res[name])
    for name in METRICS:
        values = np.concatenate(pooled[name]).astype(float)
        values = values[np.isfinite(values)]
        mu, sd = values.mean(), values.std(ddof=1)
        assert float(ds[f"{name}_null_mean"]) == pytest.approx(mu, rel=1e-9, abs=1e-12)
        # a null without spread (in the data region every null's x* may be its own
        # neighbourhood's maximum: displacement 0 throughout) gives no z-score
        expected = (ds[name].values - mu) / sd if sd > 0 else np.full(5, np.nan)
        np.testing.assert_allclose(ds[f"{name}_z"].values, expected, rtol=1e-9, atol=1e-12)
    # The optimised maximum beats or equals the dataset's best and stays in the box.
    assert (ds.best_activation >= ds.data_max - 1e-6).all()
    flat = x.flatten(1)
    maxima = torch.as_tensor(ds.maximum.values).flatten(1)
    assert (maxima >= flat.min(0).values - 1e-6).all() and (maxima <= flat.max(0).values + 1e-6).all()
    # topk_activation is the activation of the examples topk_index names.
    acts = landscape.unit_activations(mlp.eval(), None, x[ds.topk_index.values[:, 0]])
    np.testing.assert_allclose(np.diag(acts.detach().numpy()), ds.topk_activation[:, 0], rtol=1e-5)
    path = landscape.save(ds, tmp_path / "m.nc")
    back = landscape.load(path, kind="maxact")
    np.testing.assert_allclose(back.rho.values, ds.rho.values)
    assert back.n_maxima.dtype.kind == "i"


def test_relate_and_compare_states(mlp, data):
    x, _ = data
    ds = maxact(mlp, None, 6, x, top_k=3, restarts=4, steps=15, relation=True, anchors=2)
    assert ds.spearman.dims == ("metric", "geometry")
    assert {"slice_quasi_convex", "hessian_negative_mass", "hessian_top_eigenvalue"} <= set(
        ds.geometry.values.tolist())
    assert ds.geom_hessian_top_eigenvalue.dims == ("unit",)
    # relate() on its own gives the same correlations; a metric against itself is 1.
    fake = ds[["rho"]].rename(rho="activation_qcvx_barrier")
    fake["activation_quasi_convex"] = ds.rho > 0
    fake["activation_quasi_concave"] = ds.rho > 0
    rel = relate(ds[list(METRICS)], slice_ds=fake)
    assert float(rel.spearman.sel(metric="rho", geometry="slice_qcvx_barrier")) == pytest.approx(1)


def test_compare_states_on_two_known_results():
    # Units 1-4 are common (unit 0 only random, unit 7 only trained).  rho reverses its
    # ranking (Spearman -1), gain keeps it (+1), p_hit is constant in one state (undefined).
    units_a, units_b = [0, 1, 2, 3, 4], [1, 2, 3, 4, 7]

    def result(units, values):
        data = {name: ("unit", np.full(len(units), 0.5)) for name in METRICS}
        data.update({name: ("unit", np.asarray(v, dtype=float)) for name, v in values.items()})
        return xr.Dataset(data, coords={"unit": units}, attrs={"kind": "maxact", "model": "m"})

    random_ds = result(units_a, {"rho": [9, 0.1, 0.2, 0.3, 0.4], "gain": [9, 1, 2, 3, 4],
                                 "p_hit": [9, 0.2, 0.3, 0.6, 0.7]})
    trained_ds = result(units_b, {"rho": [0.8, 0.6, 0.4, 0.2, 9], "gain": [10, 20, 30, 40, -9],
                                  "p_hit": [1, 1, 1, 1, 0]})
    cmp = compare_states(random_ds, trained_ds)
    assert int(cmp.n_units) == 4
    assert float(cmp.spearman.sel(metric="rho")) == pytest.approx(-1.0)
    assert float(cmp.spearman.sel(metric="gain")) == pytest.approx(1.0)
    assert np.isnan(float(cmp.spearman.sel(metric="p_hit")))
    np.testing.assert_allclose(cmp["mean"].sel(metric="rho").values, [0.25, 0.5])
    np.testing.assert_allclose(cmp["mean"].sel(metric="gain").values, [2.5, 25])
    with pytest.raises(LandscapeError, match="need >= 3 common units"):
        compare_states(random_ds.isel(unit=[0, 1, 2]), trained_ds)


NULL_RECIPES = [
    # (init, weight_std, the std of a fc1 weight for fan-in 16, zero biases)
    ("default", None, 1 / np.sqrt(3 * 16), False),  # PyTorch: U(±1/sqrt(fan_in)), biases too
    ("normal", 1.0, 1.0, True),
    ("kaiming", None, np.sqrt(2 / 16), True),
]


@pytest.mark.parametrize("init,weight_std,std,bias_zero", NULL_RECIPES)
def test_null_model_is_a_fresh_draw_of_the_recipe(init, weight_std, std, bias_zero):
    model = landscape.build_model("mlp", init=init, weight_std=weight_std, seed=3, width=400,
                                  depth=1, in_shape=(1, 4, 4))
    _check_null(model, std, bias_zero=bias_zero)


def test_null_model_of_a_checkpoint_follows_its_meta(tmp_path):
    from landscape.train import save_checkpoint

    trained = landscape.build_model("mlp", init="kaiming", bias_scale=0.0, seed=5, width=400,
                                    depth=1, in_shape=(1, 4, 4))
    with torch.no_grad():  # "training" moved every weight far from its init
        for p in trained.parameters():
            p.add_(3.0)
    save_checkpoint(tmp_path / "k.pt", trained, {"model": "mlp", "init": "kaiming",
                                                 "bias_scale": 0.0, "seed": 5})
    model = landscape.build_model("mlp", width=400, depth=1, in_shape=(1, 4, 4))  # default init
    landscape.load_checkpoint(model, tmp_path / "k.pt")
    assert model.init == "kaiming" and model.recipe["bias_scale"] == 0.0
    _check_null(model, np.sqrt(2 / 16), bias_zero=True)


def _check_null(model, std, bias_zero):
    from landscape.maxact import null_model

    before = {k: v.clone() for k, v in model.state_dict().items()}
    null = null_model(model, seed=11)
    again = null_model(model, seed=11)
    other = null_model(model, seed=12)
    w = null.fc1.weight.detach().double()
    assert not torch.equal(w, model.fc1.weight.double())
    assert torch.equal(null.fc1.weight, again.fc1.weight)  # seeded
    assert not torch.equal(null.fc1.weight, other.fc1.weight)
    # 6400 weights: the sample std is within 4 standard errors (std / sqrt(2n)) of the recipe's.
    n = w.numel()
    assert abs(float(w.std()) - std) < 4 * std / np.sqrt(2 * n)
    assert abs(float(w.mean())) < 4 * std / np.sqrt(n)
    assert bool((null.fc1.bias == 0).all()) == bias_zero
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_cli_maxact_writes_a_loadable_file_and_plots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["maxact", "--model", "mlp", "--init", "xavier", "--samples", "80", "--units", "3",
            "--top-k", "3", "--restarts", "3", "--steps", "10", "--null", "1", "--out", "m.nc"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == "m.nc"
    ds = landscape.load("m.nc")
    assert ds.attrs["kind"] == "maxact" and ds.sizes["unit"] == 3 and "rho_z" in ds
    res = CliRunner().invoke(cli, ["plot", "m.nc", "--out", "figs"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    names = [Path(p).name for p in res.stdout.split()]
    assert names == ["m_examples.png", "m_metrics.png"]
    res = CliRunner().invoke(cli, ["maxact", "--model", "mlp", "--top-k", "0", "--out", "x.nc"])
    assert res.exit_code != 0 and not Path("x.nc").exists()


def test_null_model_without_a_recipe_redraws_pytorchs_own_init():
    from landscape.maxact import null_model

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(16, 300))
    null = null_model(plain, seed=4)
    w = null[0].weight.detach().double()
    assert not torch.equal(null[0].weight, plain[0].weight)
    assert torch.equal(w, null_model(plain, seed=4)[0].weight.double())
    std = 1 / np.sqrt(3 * 16)  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert abs(float(w.std()) - std) < 4 * std / np.sqrt(2 * w.numel())
    with pytest.raises(LandscapeError, match="no recipe"):
        null_model(torch.nn.Sequential(torch.nn.ReLU()), seed=1)


def test_relate_leaves_constant_curves_out_of_the_geometry():
    # Three units x four anchors.  Constant curves pass every test (quasi-convex True,
    # barrier 0); the geometry must be computed over the curves that are not constant.
    qcvx = np.array([[1, 1, 0, 0],      # unit 0: anchors 0, 1 flat -> 0 of 2 non-flat
                     [1, 0, 1, 1],      # unit 1: anchor 0 flat -> 2 of 3
                     [1, 1, 1, 1]], bool)  # unit 2: all flat -> undefined
    barrier = np.array([[0, 0, 0.4, 0.2], [0, 0.3, 0, 0], [0, 0, 0, 0]])
    flat = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    slices = xr.Dataset({"activation_quasi_convex": (("unit", "anchor"), qcvx),
                         "activation_quasi_concave": (("unit", "anchor"), qcvx),
                         "activation_qcvx_barrier": (("unit", "anchor"), barrier),
                         "activation_constant": (("unit", "anchor"), flat)},
                        coords={"unit": [0, 1, 2]})
    geo = geometry_of(slices)
    np.testing.assert_allclose(geo.slice_quasi_convex.values, [0, 2 / 3, np.nan])
    np.testing.assert_allclose(geo.slice_qcvx_barrier.values, [0.3, 0.1, np.nan])
    np.testing.assert_allclose(geo.slice_frac_constant.values, [0.5, 0.25, 1])
    metrics = xr.Dataset({m: ("unit", np.arange(3.0)) for m in METRICS}, coords={"unit": [0, 1, 2]})
    rel = relate(metrics, slice_ds=slices)
    assert "slice_frac_constant" in rel.geometry.values.tolist()
    np.testing.assert_allclose(rel.geom_slice_quasi_convex.values, [0, 2 / 3, np.nan])
