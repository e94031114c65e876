import pytest
import torch
from torch import nn

import landscape
from landscape.directions import (
    filter_normalize,
    input_directions,
    layer_normalize,
    orthogonalize,
    parameter_directions,
)


def test_filter_normalisation_hand_computed():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # row norms 5 and 1
    direction = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # row norms 1 and 2
    expected = torch.tensor([[5.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(filter_normalize(direction, weight), expected)
    # A conv weight: each output filter (slice along dim 0) separately.
    w = torch.zeros(2, 1, 2, 2)
    w[0, 0, 0, 0], w[1, 0, 1, 1] = 2.0, 0.5
    d = torch.ones(2, 1, 2, 2)  # each filter has norm 2
    got = filter_normalize(d, w)
    assert torch.allclose(got[0], torch.full((1, 2, 2), 1.0))  # 2/2
    assert torch.allclose(got[1], torch.full((1, 2, 2), 0.25))  # 0.5/2
    assert torch.allclose(layer_normalize(d, w), torch.full_like(d, (4.25 / 8) ** 0.5))  # |w| / |d|


def test_transposed_convolution_normalises_each_output_channel():
    # ConvTranspose weight (in=2, out=3, 1, 1): output channel j is the column w[:, j].
    w = torch.tensor([[3.0, 0.0, 1.0],
                      [4.0, 2.0, 0.0]]).view(2, 3, 1, 1)  # column norms 5, 2, 1
    d = torch.ones(2, 3, 1, 1)  # every column has norm sqrt(2)
    got = filter_normalize(d, w, transposed=True)
    s = 2 ** -0.5
    expected = torch.tensor([[5 * s, 2 * s, 1 * s]] * 2).view(2, 3, 1, 1)
    assert torch.allclose(got, expected)
    # Two groups, weight (in=4, out/groups=1, 1, 1): output channel g is rows 2g, 2g+1.
    w = torch.tensor([3.0, 4.0, 0.0, 1.0]).view(4, 1, 1, 1)  # group norms 5 and 1
    d = torch.tensor([1.0, 0.0, 0.0, 2.0]).view(4, 1, 1, 1)  # group norms 1 and 2
    got = filter_normalize(d, w, transposed=True, groups=2)
    assert torch.allclose(got.flatten(), torch.tensor([5.0, 0.0, 0.0, 1.0]))


def test_autoencoder_decoder_directions_match_output_channel_norms():
    m = landscape.build_model("autoencoder", init="kaiming", in_shape=(1, 8, 8), width=4, code=6)
    (d,) = parameter_directions(m, "filter", n=1, seed=0)
    for name in ("decoder.deconv1.weight", "decoder.deconv2.weight"):
        w = dict(m.named_parameters())[name].detach()
        per_out = d[name].transpose(0, 1).flatten(1).norm(dim=1)
        assert torch.allclose(per_out, w.transpose(0, 1).flatten(1).norm(dim=1), rtol=1e-5), name
    # An ordinary convolution of the encoder keeps dim 0.
    w = m.encoder.conv2.weight.detach()
    assert torch.allclose(d["encoder.conv2.weight"].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1),
                          rtol=1e-5)


def test_filter_directions_match_weight_filter_norms_and_skip_biases():
    m = landscape.build_model("cnn", init="kaiming", bias_scale=0.2, in_shape=(1, 8, 8))
    (d,) = parameter_directions(m, "filter", n=1, seed=0)
    for name, w in m.named_parameters():
        if w.dim() > 1:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
        else:
            assert torch.all(d[name] == 0), name


@pytest.mark.parametrize("kind", ["filter", "layer"])
def test_included_biases_and_norm_layers_are_their_own_direction(kind):
    # Li et al.'s reference: a 1-D parameter's direction is the parameter itself.
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        m[0].bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
        m[1].weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
    (d,) = parameter_directions(m, kind, n=1, seed=0, include_bias=True)
    assert torch.equal(d["0.bias"], torch.tensor([0.5, -1.0, 0.0]))
    assert torch.equal(d["1.weight"], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(d["1.bias"], torch.zeros(3))  # a zero shift does not move
    assert torch.equal(d["3.bias"], m[3].bias.detach())
    # The weights' directions are the ones drawn without the biases.
    (plain,) = parameter_directions(m, kind, n=1, seed=0)
    assert torch.equal(d["0.weight"], plain["0.weight"]) and torch.equal(d["3.weight"], plain["3.weight"])


def test_random_directions_gaussian_and_scaled_to_weight_norm():
    m = landscape.build_model("mlp", init="xavier", width=256, depth=2)
    (d,) = parameter_directions(m, "random", n=1, seed=1)
    flat = torch.cat([t.flatten() for n, t in d.items() if "weight" in n])
    w = torch.cat([p.detach().flatten() for n, p in m.named_parameters() if "weight" in n])
    assert torch.allclose(flat.norm(), w.norm(), rtol=1e-5)
    z = (flat - flat.mean()) / flat.std()  # Gaussian, not uniform: kurtosis near 3
    assert abs((z ** 4).mean().item() - 3.0) < 0.2
    assert abs(flat.mean().item()) < 3 * flat.std().item() / flat.numel() ** 0.5


def test_directions_are_seeded():
    m = landscape.build_model("mlp")
    a = parameter_directions(m, "filter", 2, seed=4)
    b = parameter_directions(m, "filter", 2, seed=4)
    c = parameter_directions(m, "filter", 2, seed=5)
    assert all(torch.equal(a[i][k], b[i][k]) for i in range(2) for k in a[0])
    assert not torch.equal(a[0]["fc1.weight"], c[0]["fc1.weight"])
    assert not torch.equal(a[0]["fc1.weight"], a[1]["fc1.weight"])


@pytest.mark.parametrize("kind,include_bias,orthogonal", [
    ("filter", False, False), ("layer", True, True), ("random", True, False)])
def test_same_seed_same_directions_in_float32_and_float64(kind, include_bias, orthogonal):
    m32 = landscape.build_model("cnn", init="kaiming", bias_scale=0.5, in_shape=(1, 8, 8), width=4)
    m64 = landscape.build_model("cnn", init="kaiming", bias_scale=0.5, in_shape=(1, 8, 8),
                                width=4).double()
    d32 = parameter_directions(m32, kind, 2, seed=7, include_bias=include_bias, orthogonal=orthogonal)
    d64 = parameter_directions(m64, kind, 2, seed=7, include_bias=include_bias, orthogonal=orthogonal)
    for a, b in zip(d32, d64):
        for k in a:
            assert a[k].dtype == torch.float32 and b[k].dtype == torch.float64
            assert torch.equal(a[k], b[k].float()), k  # the float64 direction, rounded


@pytest.mark.parametrize("kind", ["random", "pca"])
def test_same_seed_same_input_directions_in_float32_and_float64(kind):
    data = landscape.load_dataset("digits", n=64, in_shape=(1, 4, 4), seed=1)[0]
    d32 = input_directions(data[:3], kind, n=2, seed=3, data=data)
    d64 = input_directions(data[:3].double(), kind, n=2, seed=3, data=data.double())
    assert d32.dtype == torch.float32 and d64.dtype == torch.float64
    assert torch.equal(d32, d64.float())


def test_orthogonalize_hand_computed_and_keeps_norms():
    d1 = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0])}
    d2 = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    # d2 - (d2·d1 / |d1|²) d1 = (1, 0) - 3/25 (3, 4) = (16, -12) / 25, of norm 0.8;
    # rescaled to d2's norm 1: (0.8, -0.6).
    o1, o2 = orthogonalize([d1, d2])
    assert torch.equal(o1["a"], d1["a"])
    assert torch.allclose(o2["a"], torch.tensor([0.8, -0.6]), atol=1e-7)
    assert torch.equal(o2["b"], torch.zeros(1))
    m = landscape.build_model("mlp")
    before = parameter_directions(m, "layer", 2, seed=0)
    after = orthogonalize(before)

    def norm(d):
        return sum((t.double() ** 2).sum() for t in d.values()).sqrt()

    for b, a in zip(before, after):
        assert norm(a).item() == pytest.approx(norm(b).item(), rel=1e-6)
    assert abs(sum((after[0][k].double() * after[1][k].double()).sum() for k in after[0]).item()) \
        < 1e-6 * norm(after[0]).item() ** 2
    assert torch.equal(after[0]["fc1.weight"], before[0]["fc1.weight"])


def test_input_directions_scaled_to_anchor_norm():
    anchors = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    d = input_directions(anchors, "random", n=2, seed=0)
    assert d.shape == (3, 2, 1, 4, 4)
    assert torch.allclose(d.flatten(2).norm(dim=2), anchors.flatten(1).norm(dim=1)[:, None].expand(3, 2))
    dots = (d[:, 0].flatten(1) * d[:, 1].flatten(1)).sum(1)
    assert torch.allclose(dots, torch.zeros(3), atol=1e-4)


def test_pca_directions_are_principal_components():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(500, 1, 2, 2, generator=g) * torch.tensor([5.0, 1.0, 0.5, 0.1]).view(1, 1, 2, 2)
    anchors = data[:2]
    d = input_directions(anchors, "pca", n=2, data=data)
    first = d[0, 0].flatten() / d[0, 0].norm()
    second = d[0, 1].flatten() / d[0, 1].norm()
    assert abs(first[0].item()) > 0.99 and first[0] > 0  # largest-variance axis, sign fixed
    assert abs(second[1].item()) > 0.99
    assert torch.allclose(d[1, 0].norm(), anchors[1].norm())
