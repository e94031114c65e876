import numpy as np
import pytest
import torch

import landscape
from landscape.directions import parameter_directions
from landscape.errors import LandscapeError
from landscape.losses import Objective
from landscape.models import unit_activations
from landscape.slicing import parse_grid


def _loop_reference(model, x, y, directions, alphas, betas):
    """The reference method: copy the model, write each point's weights, evaluate."""
    import copy

    net = copy.deepcopy(model).eval()
    base = {k: p.detach().clone() for k, p in model.named_parameters()}
    out = np.zeros((len(alphas), len(betas)))
    with torch.no_grad():
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                for k, p in net.named_parameters():
                    p.copy_(base[k] + a * directions[0][k] + b * directions[1][k])
                out[i, j] = Objective(net)(net(x), x, y).item()
    return out


@pytest.mark.parametrize("name,shape,engine", [("mlp", (1, 4, 4), "vmap"), ("cnn", (1, 8, 8), "vmap"),
                                                ("cnn", (1, 8, 8), "loop"),
                                                ("resnet18", (3, 8, 8), "vmap"),
                                                ("resnet18", (3, 8, 8), "loop")])
def test_batched_loss_slice_equals_per_point_loop(name, shape, engine):
    model = landscape.build_model(name, init="kaiming", bias_scale=0.1, seed=1, in_shape=shape)
    x, y = landscape.load_dataset("digits", n=40, in_shape=shape)
    dirs = parameter_directions(model, "filter", 2, seed=2, include_bias=True)
    grid = "-0.5:0.5:3" if name == "resnet18" else "-0.5:0.5:4"
    ds = landscape.loss_slice(model, x, y, directions=dirs, dims=2, grid=grid, engine=engine,
                              batch_size=16, chunk_size=5, bn="eval")
    ref = _loop_reference(model, x, y, dirs, parse_grid(grid), parse_grid(grid))
    np.testing.assert_allclose(ds.loss.values, ref, rtol=1e-5, atol=1e-5)
    assert ds.attrs["engine"] == engine


def test_loss_slice_schema_and_centre(tiny_mlp, digits_small):
    x, y = digits_small
    ds = landscape.loss_slice(tiny_mlp, x, y, dims=1, grid="-1:1:9")
    assert ds.attrs["kind"] == "slice" and ds.loss.dims == ("alpha",)
    centre = Objective(tiny_mlp)(tiny_mlp(x), x, y).item()
    assert ds.loss.sel(alpha=0).item() == pytest.approx(centre, rel=1e-6)
    acc = (tiny_mlp(x).argmax(1) == y).float().mean().item()
    assert ds.accuracy.sel(alpha=0).item() == pytest.approx(acc)
    for score in ("qcvx_barrier", "qccv_barrier", "quasi_convex", "quasi_concave", "n_minima"):
        assert f"loss_{score}" in ds
    for attr in ("landscape_version", "created", "model", "init", "bias_scale", "dataset", "seed",
                 "device", "config"):
        assert attr in ds.attrs


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_loss_slice_is_deterministic_and_leaves_model_alone(tiny_mlp, digits_small, engine):
    x, y = digits_small
    tiny_mlp.train()
    before = {k: v.clone() for k, v in tiny_mlp.state_dict().items()}
    a = landscape.loss_slice(tiny_mlp, x, y, grid="-1:1:5", seed=3, engine=engine)
    b = landscape.loss_slice(tiny_mlp, x, y, grid="-1:1:5", seed=3, engine=engine)
    np.testing.assert_array_equal(a.loss.values, b.loss.values)
    assert tiny_mlp.training
    assert all(torch.equal(before[k], v) for k, v in tiny_mlp.state_dict().items())


def test_batchnorm_batch_mode_uses_batch_statistics_and_writes_nothing():
    model = landscape.build_model("resnet18", init="xavier", in_shape=(3, 8, 8))
    x, y = landscape.load_dataset("digits", n=32, in_shape=(3, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds = landscape.loss_slice(model, x, y, dims=1, grid="-0.5:0.5:3", bn="batch", batch_size=32)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ref = model.train()(x)  # train mode: batch statistics
    model.load_state_dict(before)
    centre = Objective(model)(ref, x, y).item()
    assert ds.loss.sel(alpha=0).item() == pytest.approx(centre, rel=1e-5)
    ev = landscape.loss_slice(model.eval(), x, y, dims=1, grid="-0.5:0.5:3", bn="eval")
    assert ev.loss.sel(alpha=0).item() != pytest.approx(centre, rel=1e-3)


def test_autoencoder_loss_is_reconstruction_error():
    model = landscape.build_model("autoencoder", in_shape=(1, 8, 8))
    x, y = landscape.load_dataset("digits", n=16, in_shape=(1, 8, 8))
    ds = landscape.loss_slice(model, x, y, dims=1, grid="-1:1:3")
    expected = ((model(x) - x) ** 2).mean().item()
    assert ds.loss.sel(alpha=0).item() == pytest.approx(expected, rel=1e-5)
    assert np.isnan(ds.accuracy.values).all()


def test_input_slice_at_zero_equals_activation_at_anchor(digits_small):
    model = landscape.build_model("cnn", init="xavier", bias_scale=0.1, in_shape=(1, 4, 4))
    x, y = digits_small
    anchors = x[:5]
    ds = landscape.input_slice(model, "act2", [0, 3, 7], anchors, grid="-1:1:7", anchor_labels=y[:5],
                               batch_size=4)
    assert ds.activation.dims == ("unit", "anchor", "alpha")
    expected = unit_activations(model.eval(), "act2", anchors, [0, 3, 7]).detach().double().numpy()
    np.testing.assert_allclose(ds.activation.sel(alpha=0).values, expected.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ds.anchor_label.values, y[:5].numpy())
    assert "activation_qcvx_barrier" in ds and ds.activation_qcvx_barrier.dims == ("unit", "anchor")


def test_input_slice_points_lie_on_the_line(digits_small):
    """activation(α) equals the unit evaluated at anchor + α d for the directions used."""
    from landscape.directions import input_directions

    model = landscape.build_model("mlp", init="xavier", in_shape=(1, 4, 4))
    x, _ = digits_small
    anchors = x[:3]
    d = input_directions(anchors, "random", n=2, seed=0)
    ds = landscape.input_slice(model, None, 4, anchors, directions=d, dims=2, grid="-1:1:5")
    point = anchors[1] + 0.5 * d[1, 0] - 1.0 * d[1, 1]
    expected = unit_activations(model, None, point[None], range(4))[0].detach().double().numpy()
    np.testing.assert_allclose(ds.activation.sel(anchor=1, alpha=0.5, beta=-1.0).values, expected,
                               rtol=1e-5, atol=1e-6)
    assert ds.activation_qcvx_barrier.dims == ("unit", "anchor", "line")


@pytest.mark.parametrize("grid", ["-1:1", "1:-1:5", "a:b:c", "-1:1:1", "-1:1:2.5", ""])
def test_malformed_grid(grid):
    with pytest.raises(LandscapeError, match="grid"):
        parse_grid(grid)


def test_grid_forms():
    np.testing.assert_allclose(parse_grid("-1:1:5"), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(parse_grid([0.0, 0.1, 0.3]), [0, 0.1, 0.3])


def test_hessian_directions_curvature_is_top_eigenvalue():
    """Along the top Hessian eigenvector the loss curves with the top eigenvalue:
    L(h) − 2L(0) + L(−h) ≈ λ₁ h² (float64, dense ground truth)."""
    model = landscape.build_model("mlp", init="xavier", bias_scale=0.1, width=10, depth=1,
                                  in_shape=(1, 3, 3), activation="tanh").double()
    x, y = landscape.load_dataset("digits", n=48, in_shape=(1, 3, 3))
    x = x.double()
    params = {k: p.detach() for k, p in model.named_parameters()}

    def loss_of(flat):
        parts, i = {}, 0
        for k, p in params.items():
            parts[k] = flat[i:i + p.numel()].view_as(p)
            i += p.numel()
        out = torch.func.functional_call(model, parts, (x,))
        return Objective(model)(out, x, y)

    theta = torch.cat([p.flatten() for p in params.values()])
    top = torch.linalg.eigvalsh(torch.func.hessian(loss_of)(theta))[-1].item()
    h = 1e-3
    ds = landscape.loss_slice(model, x, y, directions="hessian", dims=1, grid=[-h, 0.0, h],
                              hessian_options={"tol": 1e-10})
    assert ds.direction_norm.values == pytest.approx([1.0], rel=1e-8)
    second = (ds.loss.values[0] - 2 * ds.loss.values[1] + ds.loss.values[2]) / h**2
    assert second == pytest.approx(top, rel=1e-4)


def test_loop_engine_handles_non_contiguous_parameters(digits_small):
    x, y = digits_small
    model = landscape.build_model("mlp", init="xavier", seed=0, in_shape=tuple(x.shape[1:]))
    w = model.fc1.weight.detach()
    model.fc1.weight = torch.nn.Parameter(w.t().contiguous().t())  # same values, transposed strides
    assert not model.fc1.weight.is_contiguous()
    loop = landscape.loss_slice(model, x, y, grid="-1:1:4", engine="loop")
    vmapped = landscape.loss_slice(model, x, y, grid="-1:1:4", engine="vmap")
    np.testing.assert_allclose(loop.loss.values, vmapped.loss.values, rtol=1e-5, atol=1e-6)
    assert not model.fc1.weight.is_contiguous() and torch.equal(model.fc1.weight, w)


# ----------------------------------------------------------------------------- BatchNorm modes

class _TinyBN(torch.nn.Module):
    """x -> fc2(relu(bn(fc1 x))), float64, with weights and BatchNorm affine drawn from seed 0."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc1 = torch.nn.Linear(3, 4, bias=False)
        self.bn = torch.nn.BatchNorm1d(4)
        self.fc2 = torch.nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.double()

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def _bn_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(10, 3, generator=g, dtype=torch.float64), torch.arange(10) % 3


def _bn_reference(model, x, y, direction, alpha, stats):
    """Cross-entropy by hand (numpy) at θ + α d, normalising fc1's outputs with
    ``stats``: ``"batch"`` (the batch's own mean and biased variance at that point),
    ``"centre"`` (the same at α = 0) or a (mean, var) pair."""
    p = {k: v.detach().numpy() for k, v in model.named_parameters()}
    w1 = p["fc1.weight"] + alpha * direction["fc1.weight"].numpy()
    w2 = p["fc2.weight"] + alpha * direction["fc2.weight"].numpy()
    xs = x.numpy()
    z = xs @ w1.T
    if stats == "batch":
        mean, var = z.mean(0), z.var(0)
    elif stats == "centre":
        z0 = xs @ p["fc1.weight"].T
        mean, var = z0.mean(0), z0.var(0)
    else:
        mean, var = stats
    h = np.maximum((z - mean) / np.sqrt(var + model.bn.eps) * p["bn.weight"] + p["bn.bias"], 0)
    logits = h @ w2.T + p["fc2.bias"]
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y.numpy()].mean())


def _bn_direction(model):
    g = torch.Generator().manual_seed(2)
    return {k: (torch.randn(p.shape, generator=g, dtype=p.dtype) if k.endswith("weight")
                and not k.startswith("bn") else torch.zeros_like(p))
            for k, p in model.named_parameters()}


@pytest.mark.parametrize("trained", [False, True])
def test_loss_slice_bn_modes_side_by_side_match_hand_computed_losses(trained):
    model = _TinyBN()
    stored = (np.array([0.3, -0.2, 0.5, 0.1]), np.array([1.5, 0.7, 2.0, 0.9]))
    if trained:  # statistics ever updated: auto means the stored ones (eval)
        with torch.no_grad():
            model.bn.running_mean.copy_(torch.from_numpy(stored[0]))
            model.bn.running_var.copy_(torch.from_numpy(stored[1]))
            model.bn.num_batches_tracked.fill_(3)
    x, y = _bn_data()
    d = _bn_direction(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    grid = [-1.0, 0.0, 1.0]
    ds = landscape.loss_slice(model, x, y, directions=[d], dims=1, grid=grid, bn=("auto", "batch"))
    frozen = "eval" if trained else "recompute"
    assert list(ds.bn.values) == [frozen, "batch"] and ds.loss.dims == ("bn", "alpha")
    assert ds.attrs["bn"] == f"{frozen},batch"
    assert landscape.results.config_of(ds)["bn"] == [frozen, "batch"]
    for alpha in grid:
        want_frozen = _bn_reference(model, x, y, d, alpha, stored if trained else "centre")
        want_batch = _bn_reference(model, x, y, d, alpha, "batch")
        assert float(ds.loss.sel(bn=frozen, alpha=alpha)) == pytest.approx(want_frozen, rel=1e-10)
        assert float(ds.loss.sel(bn="batch", alpha=alpha)) == pytest.approx(want_batch, rel=1e-10)
    # At the centre recomputed statistics are the batch's own; stored ones are not.
    centre = ds.loss.sel(alpha=0.0)
    assert (float(centre.sel(bn=frozen)) == pytest.approx(float(centre.sel(bn="batch")), rel=1e-10)) \
        != trained
    # Each mode's scores and fractions are its own.
    for mode in (frozen, "batch"):
        single = landscape.loss_slice(model, x, y, directions=[d], dims=1, grid=grid, bn=mode)
        assert "bn" not in single.dims and single.attrs["bn"] == mode
        np.testing.assert_allclose(ds.loss.sel(bn=mode).values, single.loss.values, rtol=1e-12)
        assert ds.attrs[f"loss_{mode}_frac_quasi_convex"] == single.attrs["loss_frac_quasi_convex"]
        assert bool(ds.loss_quasi_convex.sel(bn=mode)) == bool(single.loss_quasi_convex)
    assert "loss_frac_quasi_convex" not in ds.attrs  # no pooled fraction over modes
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert {n: m.training for n, m in model.named_modules()} == flags


def test_slice_command_gives_both_modes_unless_bn_is_chosen(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from landscape.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(
        "import torch\n\n\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 6),\n"
        "                               torch.nn.BatchNorm1d(6), torch.nn.ReLU(),\n"
        "                               torch.nn.Linear(6, 10))\n")
    common = ["slice", "--model", "net.py:build", "--in-shape", "1x4x4", "--samples", "32",
              "--space", "loss", "--dims", "1", "--grid", "-1:1:5"]
    res = CliRunner().invoke(cli, [*common, "--out", "both.nc"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("loss (BatchNorm recompute: the data's statistics at the centre")
    assert lines[1].startswith("loss (BatchNorm batch: each point's own batch statistics")
    both = landscape.load(tmp_path / "both.nc")
    assert list(both.bn.values) == ["recompute", "batch"]
    # The figure draws each mode and names it.
    from landscape.plot.slices import _bn_label

    assert _bn_label(both, "batch") == "BatchNorm batch: each point's own batch statistics, as in training"
    res = CliRunner().invoke(cli, ["plot", "both.nc", "--out", "."], catch_exceptions=False)
    assert res.exit_code == 0 and (tmp_path / "both_loss.png").stat().st_size > 1000
    for mode in ("batch", "eval"):
        res = CliRunner().invoke(cli, [*common, "--bn", mode, "--out", f"{mode}.nc"],
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert res.stdout.startswith(f"loss (BatchNorm {mode}:")
        one = landscape.load(tmp_path / f"{mode}.nc")
        assert "bn" not in one.dims and one.attrs["bn"] == mode
        if mode == "batch":
            np.testing.assert_allclose(one.loss.values, both.loss.sel(bn="batch").values, rtol=1e-6)
    # Without BatchNorm the modes coincide: one surface, said so.
    res = CliRunner().invoke(cli, ["slice", "--model", "mlp", "--in-shape", "1x4x4", "--samples",
                                   "16", "--space", "loss", "--dims", "1", "--grid", "-1:1:3",
                                   "--out", "mlp.nc"], catch_exceptions=False)
    assert res.stdout.startswith("loss (no BatchNorm)")
    assert "bn" not in landscape.load(tmp_path / "mlp.nc").dims
