"""Q2 (quasi-convexity of random networks and the bias): the --quick run and the script's
pieces, checked against answers known in closed form or by construction."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from experiment_scripts import load_script
from torch import nn

import landscape


def _q2():
    return load_script("q2_quasiconvexity_bias")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q2")
    summary = _q2().main(["--quick", "--out", str(tmp / "results"), "--figures", str(tmp / "figures")])
    return summary, tmp


def test_counts_leave_flat_curves_out():
    q2 = _q2()
    counts = q2.curve_counts(quasi_convex=[True, True, False, True, False],
                             quasi_concave=[False, True, False, True, True],
                             constant=[False, False, False, True, False],
                             convex=[True, False, False, True, False],
                             qcvx_barrier=[0.0, 0.0, 0.005, 0.0, 0.02],
                             qccv_barrier=[0.1, 0.0, 0.05, 0.0, 0.0])
    assert counts == {"curves": 5, "flat": 1, "valid": 4, "quasi_convex": 2, "quasi_concave": 2,
                      "either": 3, "both": 1, "convex": 1, "either_tol1e-2": 4}
    f = q2.fractions(counts)
    assert f["either"] == 0.75 and f["neither"] == 0.25 and f["flat"] == 0.2
    assert f["quasi_convex"] == 0.5 and f["convex"] == 0.25 and f["either_tol1e-2"] == 1.0
    # The earlier run's counting: a flat curve is every shape at once.
    assert f["either_flat_counted"] == 0.8 and f["convex_flat_counted"] == 0.4


def test_geometries_are_the_lines_they_claim():
    q2 = _q2()
    pool, _ = q2.pool_data((1, 8, 8), 64)
    n, seed = 6, 3
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pool), 2 * n, replace=False)
    a, b = pool[idx[:n]], pool[idx[n:]]
    anchors, d = q2.slice_inputs("segment", pool, n, seed)
    torch.testing.assert_close(anchors - d[:, 0], a)  # alpha = -1: the first data point
    torch.testing.assert_close(anchors + d[:, 0], b)  # alpha = +1: the second
    anchors, d = q2.slice_inputs("origin", pool, n, seed)
    assert anchors.abs().max() == 0
    torch.testing.assert_close(d.flatten(1).norm(dim=1), a.flatten(1).norm(dim=1))
    anchors, d = q2.slice_inputs("data-random", pool, n, seed)
    assert torch.equal(anchors, a)
    anchors, d = q2.slice_inputs("data-pca", pool, n, seed)
    assert torch.equal(anchors, a)
    flat = pool.flatten(1).double()
    _, _, vh = np.linalg.svd((flat - flat.mean(0)).numpy(), full_matrices=False)
    top = vh[:q2.PCA_COMPONENTS]
    unit = (d[:, 0].flatten(1).double() / d[:, 0].flatten(1).double().norm(dim=1, keepdim=True)).numpy()
    # each direction is one of the top principal components (up to sign)
    assert np.allclose(np.abs(unit @ top.T).max(axis=1), 1, atol=1e-5)


def test_linear_network_curves_are_all_both():
    """A linear map is linear along every line: every curve is quasi-convex and
    quasi-concave, in every input geometry."""
    q2 = _q2()
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([("flatten", nn.Flatten()), ("fc", nn.Linear(64, 5))]))
    net.default_layer = "fc"
    pool, _ = q2.pool_data((1, 8, 8), 64)
    cfg = dict(units=5, anchors=4, samples=21)
    for geometry in q2.INPUT_GEOMETRIES:
        c = q2.input_curves(net, geometry, pool, cfg, seed=1)
        assert c["curves"] == 20 and c["flat"] == 0
        assert c["both"] == c["either"] == c["valid"] == 20


def _kink_net():
    """fc1 kinks at x = -0.52 and 0.33 (and -2, outside the window); unit 0 is active
    everywhere and sees both, unit 1 is dead, unit 2 switches on at x = 0.5, past both."""
    model = landscape.build_model("mlp", init="xavier", width=3, depth=2, in_shape=(1, 1, 1))
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0], [1.0], [1.0]]))
        model.fc1.bias.copy_(torch.tensor([0.52, -0.33, 2.0]))
        model.fc2.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        model.fc2.bias.copy_(torch.tensor([1.0, -1.0, -2.5]))
    return model


def test_kink_counts_of_a_constructed_network():
    q2 = _q2()
    model = _kink_net()
    anchors = torch.zeros(1, 1, 1, 1)
    directions = torch.ones(1, 1, 1, 1, 1)
    kinks, verdicts = q2.kink_counts(model, anchors, directions, samples=41, units=3)
    assert kinks[:, 0].tolist() == [2, 0, 1]
    assert verdicts["constant"][:, 0].tolist() == [False, True, False]
    # unit 0 = 1 + relu(x + .52) - relu(x - .33): rises then flat: monotone.
    assert verdicts["quasi_convex"][0, 0] and verdicts["quasi_concave"][0, 0]


def test_quick_zero_bias_relu_origin_lines_are_quasi_convex(quick):
    """With zero biases a ReLU net is positively homogeneous: along x = α d a unit is
    α f(d) for α > 0 and |α| f(−d) for α < 0, two non-negative rays from 0, so every
    non-flat curve is quasi-convex (a V or monotone)."""
    summary, _ = quick
    for model in ("mlp-relu", "cnn"):
        for init, by_geometry in summary["aggregate"][model].items():
            cell = by_geometry["origin"]["0.0"]
            assert cell["pooled"]["valid"] > 0
            assert cell["pooled"]["quasi_convex"] == cell["pooled"]["valid"], (model, init)
            # ... and not trivially: V shapes are not quasi-concave.
            assert cell["pooled"]["quasi_concave"] < cell["pooled"]["valid"], (model, init)
    # A bias breaks it: some origin curve with bias 0.1 is neither.
    cell = summary["aggregate"]["mlp-relu"]["xavier"]["origin"]["0.1"]
    assert cell["pooled"]["either"] < cell["pooled"]["valid"]


def test_quick_two_linear_pieces_are_never_neither(quick):
    """A piecewise-linear curve of at most two pieces (at most one kink interval) is
    monotone, a V or a Λ: never neither quasi-convex nor quasi-concave."""
    summary, tmp = quick
    mech = summary["mechanism"]
    assert mech["two_pieces_curves"] > 100
    assert mech["two_pieces_neither"] == 0
    assert mech["p_neither_given_kinks_all"][:2] == [0.0, 0.0]
    # zero bias on origin lines: all kinks at alpha = 0, at most two pieces, none neither
    origin = mech["by"]["xavier"]["origin"]
    assert origin["bias_scale"][0] == 0.0
    assert origin["at_most_two_pieces"][0] == 1.0 and origin["measured"][0] == 0.0
    for name in ("q2_fractions.png", "q2_mechanism.png"):
        assert (tmp / "figures" / name).stat().st_size > 1000


def test_quick_grid_and_seeds(quick):
    summary, _ = quick
    cfg = summary["config"]
    cells = summary["cells"]
    # every planned (model, init, geometry) cell has every bias scale and seed
    plan = _q2().cell_plan(_q2().SIZES["quick"])
    assert len(cells) == len(plan) * len(summary["bias_scales"]) * cfg["seeds"]
    loss = [c for c in cells if c["geometry"] == "loss"]
    assert loss and all(c["counts"]["curves"] == cfg["loss_directions"] for c in loss)
    inputs = [c for c in cells if c["geometry"] != "loss"]
    assert all(c["counts"]["curves"] == cfg["units"] * cfg["anchors"] for c in inputs)


@torch.no_grad()
def test_resnet_size_sets_the_maps_of_layer3_and_layer4():
    # resnet18 halves the side five times (stem stride 2, max pool, layer2-4 stride 2,
    # each ceil(n / 2) with its padding): 16 -> 1 x 1 maps in layer3 and layer4, 48 -> 3 x 3
    # and 2 x 2, 64 -> 4 x 4 and 2 x 2.
    q2 = _q2()
    for size, expected in ((None, (1, 1)), (48, (3, 2)), (64, (4, 2))):
        shape = q2.model_shape("resnet18", {"resnet_size": size})
        assert shape == ((1, 16, 16) if size is None else (1, size, size))
        assert q2.model_shape("cnn", {"resnet_size": size}) == (1, 16, 16)
        model = q2.build("resnet18-noskip", "xavier", 0.0, 0, shape)
        sides = {}
        for name in ("layer3", "layer4"):
            getattr(model, name).register_forward_hook(
                lambda m, i, o, name=name, sides=sides: sides.__setitem__(name, o.shape[-1]))
        model.eval()(torch.zeros(1, *shape))
        assert (sides["layer3"], sides["layer4"]) == expected


def test_extra_options_are_parsed_and_checked():
    q2 = _q2()
    assert q2.extra_args(["--quick", "--resnet-size", "48", "--models", "resnet18,cnn"]) == (
        48, ("resnet18", "cnn"), ["--quick"])
    assert q2.extra_args(["--quick"]) == (None, None, ["--quick"])
    with pytest.raises(SystemExit, match="unknown value 'vgg'"):
        q2.extra_args(["--models", "resnet18,vgg"])
    with pytest.raises(SystemExit, match="must be >= 16"):
        q2.extra_args(["--resnet-size", "8"])
