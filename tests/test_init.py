"""Init schemes and the bias scale (:mod:`landscape.init`): seeded, reproducible,
with the bounds and spreads their definitions give."""

import pytest
import torch

import landscape
from landscape.errors import LandscapeError
from landscape.init import bias_tensors


@pytest.mark.parametrize("init", ["default", "xavier", "xavier-normal", "kaiming", "kaiming-uniform",
                                  "orthogonal", "normal"])
def test_same_seed_same_weights(init):
    a = landscape.build_model("cnn", init=init, seed=5, in_shape=(1, 8, 8))
    b = landscape.build_model("cnn", init=init, seed=5, in_shape=(1, 8, 8))
    c = landscape.build_model("cnn", init=init, seed=6, in_shape=(1, 8, 8))
    for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), k
    assert not all(torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters()) if p.dim() > 1)


def test_building_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    landscape.build_model("mlp", init="xavier", seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_bias_scale_zero_and_spread():
    m0 = landscape.build_model("resnet18", init="kaiming", bias_scale=0.0, in_shape=(3, 8, 8))
    assert all(torch.all(b == 0) for b in bias_tensors(m0))
    m = landscape.build_model("resnet18", init="kaiming", bias_scale=0.5, in_shape=(3, 8, 8))
    values = torch.cat([b.detach().flatten() for b in bias_tensors(m)])
    assert values.numel() > 4000  # batch-norm shifts and the head's bias
    assert abs(values.std().item() - 0.5) < 0.03
    assert abs(values.mean().item()) < 0.03


def test_named_inits_zero_biases_default_keeps_pytorch():
    xav = landscape.build_model("mlp", init="xavier")
    assert all(torch.all(b == 0) for b in bias_tensors(xav))
    default = landscape.build_model("mlp", init="default")
    assert any(torch.any(b != 0) for b in bias_tensors(default))


def test_xavier_uniform_bound():
    m = landscape.build_model("mlp", init="xavier", width=50, depth=1)
    w = m.fc1.weight
    bound = (6 / (w.shape[0] + w.shape[1])) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


def test_normal_weight_std():
    m = landscape.build_model("mlp", init="normal", weight_std=0.3, width=200, depth=1)
    assert abs(m.fc1.weight.std().item() - 0.3) < 0.01
    with pytest.raises(LandscapeError, match="weight_std"):
        landscape.build_model("mlp", init="xavier", weight_std=0.3)
