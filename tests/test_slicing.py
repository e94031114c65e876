import numpy as np
import pytest
import torch

import landscape
from landscape.directions import parameter_directions
from landscape.errors import LandscapeError
from landscape.models import per_sample_loss, unit_activations
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
                out[i, j] = per_sample_loss(net, net(x), x, y).mean().item()
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
    centre = per_sample_loss(tiny_mlp, tiny_mlp(x), x, y).mean().item()
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
    centre = per_sample_loss(model, ref, x, y).mean().item()
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
        return per_sample_loss(model, out, x, y).mean()

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
