import torch

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
    assert torch.allclose(layer_normalize(d, w), d * (w.norm() / d.norm()))


def test_filter_directions_match_weight_filter_norms_and_skip_biases():
    m = landscape.build_model("cnn", init="kaiming", bias_scale=0.2, in_shape=(1, 8, 8))
    (d,) = parameter_directions(m, "filter", n=1, seed=0)
    for name, w in m.named_parameters():
        if w.dim() > 1:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
        else:
            assert torch.all(d[name] == 0), name
    (db,) = parameter_directions(m, "filter", n=1, seed=0, include_bias=True)
    assert torch.allclose(db["conv1.bias"].norm(), m.conv1.bias.norm(), rtol=1e-5)


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


def test_orthogonalize_keeps_norms():
    m = landscape.build_model("mlp")
    d1, d2 = orthogonalize(parameter_directions(m, "layer", 2, seed=0))
    dot = sum((d1[k] * d2[k]).sum() for k in d1)
    n1 = sum((d1[k] ** 2).sum() for k in d1).sqrt()
    assert abs(dot.item()) < 1e-4 * n1.item() ** 2


def test_input_directions_scaled_to_anchor_norm():
    anchors = torch.randn(3, 1, 4, 4)
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
