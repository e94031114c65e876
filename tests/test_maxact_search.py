"""The search regions of maxact against closed forms: a linear unit w·x peaks at the
box corner of sign(w), on the ball at x̄ + r·w/‖w‖, and in the data region at the best
vertex among a start's k nearest examples; the region is recorded; the model is
untouched whatever the region."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli
from landscape.errors import LandscapeError
from landscape.maxact import ascend, maxact, reliability_metrics, search_region
from landscape.maxact.search import project_simplex, simplex_tangent

W = torch.tensor([1.0, -2.0, 0.5, 3.0, -0.7], dtype=torch.float64)


@pytest.fixture
def cloud():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(200, 5, generator=gen, dtype=torch.float64) * torch.tensor(
        [1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)


def linear(z):
    return (z @ W)[:, None]


def test_box_maximum_of_a_linear_unit_is_the_corner_of_sign_w(cloud):
    res = reliability_metrics(linear, cloud, region="box", top_k=4, restarts=6, seed=0)
    lo, hi = cloud.min(0).values, cloud.max(0).values
    corner = torch.where(W > 0, hi, lo).numpy()
    np.testing.assert_allclose(res["maximum"][0], corner, rtol=0, atol=1e-12)
    assert res["best_activation"][0] == pytest.approx(float(corner @ W.numpy()), abs=1e-12)
    assert res["p_hit"][0] == 1.0 and res["n_maxima"][0] == 1  # one corner, every restart


def test_ball_maximum_of_a_linear_unit_is_the_mean_plus_r_along_w(cloud):
    # max over ‖z − x̄‖ ≤ r of w·z is at x̄ + r·w/‖w‖ (Cauchy–Schwarz); r defaults to
    # the largest distance of a datum to the mean.  On the sphere the angle to w
    # shrinks by 1 / (1 + 2 lr_t) a step: lr 0.5 converges to rounding, the default
    # (0.05, 200 steps) to ~1e-4 relative.
    res = reliability_metrics(linear, cloud, region="ball", top_k=4, restarts=6, seed=0, lr=0.5)
    mean = cloud.mean(0)
    r = float((cloud - mean).norm(dim=1).max())
    assert res["region"].radius == pytest.approx(r, rel=1e-12)
    truth = (mean + r * W / W.norm()).numpy()
    np.testing.assert_allclose(res["maximum"][0], truth, rtol=0, atol=1e-9)
    default = reliability_metrics(linear, cloud, region="ball", top_k=4, restarts=6, seed=0)
    np.testing.assert_allclose(default["maximum"][0], truth, rtol=0, atol=1e-3 * r)
    # A radius given by hand, smaller than the data: every ascent ends at w·x̄ + 0.5‖w‖;
    # the data's top example, outside the ball and higher, stays the best known point.
    small = reliability_metrics(linear, cloud, region="ball", radius=0.5, top_k=4, restarts=6,
                                lr=0.5)
    np.testing.assert_allclose(small["endpoint_activation"][0],
                               float(mean @ W + 0.5 * W.norm()), rtol=0, atol=1e-9)
    assert small["rho"][0] == 1.0 and small["best_activation"][0] == float((cloud @ W).max())


def test_data_region_ends_at_the_best_of_each_starts_k_nearest(cloud):
    # A linear function on a simplex peaks at a vertex: from each start the ascent must
    # end exactly at the neighbour (of its k nearest, by brute force) with the largest w·x.
    k = 7
    gen = torch.Generator().manual_seed(3)
    starts = torch.cat([torch.randn(12, 5, generator=gen, dtype=torch.float64) * 2,
                        cloud[[5, 17, 80]]])  # random points, then data points
    owner = torch.zeros(len(starts), dtype=torch.long)
    ends = ascend(linear, starts, owner, search_region("data", cloud, k=k), steps=200)
    for start, end in zip(starts, ends):
        near = torch.cdist(start[None], cloud)[0].argsort()[:k]
        best = cloud[near[(cloud[near] @ W).argmax()]]
        np.testing.assert_allclose(end.numpy(), best.numpy(), rtol=0, atol=1e-12)
    # x* (the data's argmax of w·x) is its own neighbourhood's best: rho 1, no gain, no
    # move, the maximum a datum.
    res = reliability_metrics(linear, cloud, region="data", region_k=k, top_k=4, restarts=6)
    star = int((cloud @ W).argmax())
    assert res["rho"][0] == 1.0 and res["gain"][0] == 0.0
    assert res["displacement"][0] == 0.0 and res["dist_to_data"][0] == 0.0
    np.testing.assert_array_equal(res["maximum"][0], cloud[star].numpy())


def test_data_region_finds_a_maximum_between_examples():
    # The unit −‖z − c‖² peaks at c, the midpoint of the two data points (±1, 0) of a
    # cloud far from c otherwise: no datum reaches it, but a blend of neighbours does.
    gen = torch.Generator().manual_seed(1)
    far = torch.randn(60, 2, generator=gen, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 4.0])
    x = torch.cat([torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64), far])
    c = torch.tensor([0.0, 0.0], dtype=torch.float64)

    def f(z):
        return -((z - c) ** 2).sum(1, keepdim=True)

    res = reliability_metrics(f, x, region="data", region_k=3, top_k=2, restarts=4, steps=200)
    np.testing.assert_allclose(res["maximum"][0], [0.0, 0.0], atol=1e-4)
    assert res["best_activation"][0] == pytest.approx(0.0, abs=1e-8)
    assert res["rho"][0] < 1  # the top datum (±1, 0), at a = −1, misses it


def test_simplex_projection_against_a_solver():
    from scipy.optimize import minimize

    np.testing.assert_allclose(project_simplex(torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.0, 0.0],
                                                             [0.6, 0.6, -1.0]])).numpy(),
                               [[1 / 3, 1 / 3, 1 / 3], [1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.normal(size=6) * 2
        ref = minimize(lambda w, v=v: ((w - v) ** 2).sum(), np.full(6, 1 / 6), method="SLSQP",
                       bounds=[(0, None)] * 6, constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
                       options={"ftol": 1e-14}).x
        got = project_simplex(torch.as_tensor(v)[None])[0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_simplex_tangent_cone_projection_against_a_solver():
    # argmin ‖d − g‖² subject to Σ d = 0 and d_j ≥ 0 where w_j = 0: the direction the
    # data region's ascent follows (a zero weight may only grow).
    from scipy.optimize import minimize

    rng = np.random.default_rng(2)
    for zeros in ([1, 3], [0, 2, 4, 5], []):
        g = rng.normal(size=6) * 3
        w = rng.uniform(0.1, 1, size=6)
        w[zeros] = 0
        w /= w.sum()
        ref = minimize(lambda d, g=g: ((d - g) ** 2).sum(), np.zeros(6), method="SLSQP",
                       bounds=[(0, None) if j in zeros else (None, None) for j in range(6)],
                       constraints={"type": "eq", "fun": lambda d: d.sum()},
                       options={"ftol": 1e-14}).x
        got = simplex_tangent(torch.as_tensor(g)[None], torch.as_tensor(w)[None])[0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_bad_regions_are_one_line_errors(cloud):
    with pytest.raises(LandscapeError, match="region: must be one of box, ball, data; got 'hull'"):
        reliability_metrics(linear, cloud, region="hull")
    with pytest.raises(LandscapeError, match="region_k: must be an integer >= 1"):
        reliability_metrics(linear, cloud, region="data", region_k=0)
    with pytest.raises(LandscapeError, match="radius: the ball's radius"):
        reliability_metrics(linear, cloud, region="ball", radius=-1.0)
    with pytest.raises(LandscapeError, match="only the ball region has a radius"):
        reliability_metrics(linear, cloud, region="box", radius=2.0)


def _bn_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.BatchNorm1d(12),
                                torch.nn.ReLU(), torch.nn.Linear(12, 6), torch.nn.ReLU(),
                                torch.nn.Linear(6, 3))
    with torch.no_grad():  # a BatchNorm that has seen data: stored statistics of its own
        model(torch.randn(64, 1, 4, 4))
    model[1].weight.requires_grad_(False)
    return model.train()


@pytest.mark.parametrize("region", ["box", "ball", "data"])
def test_every_region_records_itself_and_leaves_a_train_mode_batchnorm_model_alone(region):
    x, _ = landscape.load_dataset("digits", n=60, in_shape=(1, 4, 4), seed=2)
    model = _bn_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    ds = maxact(model, "5", 3, x, top_k=3, restarts=2, steps=5, null_models=1, region=region,
                region_k=5, seed=0)
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == grads
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    import json

    config = json.loads(ds.attrs["config"])
    assert ds.attrs["region"] == config["region"] == region
    assert ds.attrs["region_k"] == (5 if region == "data" else 0) and config["region_k"] == 5
    flat = x.flatten(1).double()
    if region == "ball":
        r = float((flat - flat.mean(0)).norm(dim=1).max())
        assert ds.attrs["region_radius"] == pytest.approx(r, rel=1e-5)
        assert config["region_radius"] == pytest.approx(r, rel=1e-5)
    else:
        assert np.isnan(ds.attrs["region_radius"])


def test_cli_region_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["maxact", "--model", "mlp", "--samples", "60", "--units", "2", "--top-k", "2",
              "--restarts", "2", "--steps", "3"]
    res = CliRunner().invoke(cli, [*common, "--region", "ball", "--radius", "5", "--out", "b.nc"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "maxima sought in the ball region" in res.output
    ds = landscape.load("b.nc")
    assert ds.attrs["region"] == "ball" and ds.attrs["region_radius"] == 5.0
    res = CliRunner().invoke(cli, [*common, "--out", "d.nc"], catch_exceptions=False)
    assert landscape.load("d.nc").attrs["region"] == "data"  # the default
    bad = CliRunner().invoke(cli, [*common, "--region", "data", "--radius", "5", "--out", "x.nc"])
    assert bad.exit_code != 0 and "only the ball region has a radius" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "x.nc").exists()
    bad = CliRunner().invoke(cli, [*common, "--region-k", "0", "--out", "x.nc"])
    assert bad.exit_code != 0 and "region-k: must be >= 1" in bad.output
