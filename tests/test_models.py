import pytest
import torch

import landscape
from landscape.errors import LandscapeError
from landscape.init import bias_tensors
from landscape.models import MODELS, load_checkpoint, unit_activations


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_and_runs(name):
    if MODELS[name][2] == "embed":  # minilm: WordPiece ids in, a sentence embedding out
        m = landscape.build_model(name, context=8)
        x = torch.randint(0, 30522, (2, 8))
        assert m.in_shape == (8,) and m(x).shape == (2, 384)
        assert torch.allclose(m(x).norm(dim=1), torch.ones(2))
        assert unit_activations(m, None, x).shape == (2, 384)
        return
    if len(MODELS[name][1]) == 1:  # a token model: windows of byte ids in, logits per position out
        m = landscape.build_model(name, init="xavier", context=8, width=16, heads=2)
        x = torch.randint(0, 256, (2, 8))
        assert m.in_shape == (8,) and m(x).shape == (2, 8, 256)
        assert unit_activations(m, None, x).shape == (2, 16)
        return
    shape = (3, 8, 8) if name != "mlp" else (1, 8, 8)
    m = landscape.build_model(name, init="xavier", in_shape=shape)
    assert m.in_shape == shape and m.name == name
    x = torch.randn(2, *shape)
    out = m(x)
    if m.task == "classify":
        assert out.shape == (2, 10)
    else:
        assert out.shape == x.shape
    acts = unit_activations(m, None, x)
    assert acts.shape[0] == 2 and acts.shape[1] >= 8


def test_noskip_resnet_has_no_shortcuts():
    skip = landscape.build_model("resnet18", in_shape=(3, 16, 16))
    plain = landscape.build_model("resnet18-noskip", in_shape=(3, 16, 16))
    assert any("downsample" in n for n, _ in skip.named_parameters())
    assert not any("downsample" in n for n, _ in plain.named_parameters())
    # The block output no longer depends on the shortcut: zeroing conv2 of a block zeroes its output.
    block = plain.layer1[0]
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.bn2.bias.zero_()
    assert torch.all(block(torch.randn(1, 64, 4, 4)) == 0)


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


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "vgg"}, "model: unknown value 'vgg'"),
    ({"name": "mlp", "init": "he"}, "init: unknown value 'he'"),
    ({"name": "mlp", "bias_scale": -1}, "bias_scale"),
    ({"name": "resnet18", "width": 3}, "takes no option width"),
])
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(LandscapeError, match=match):
        landscape.build_model(**kwargs)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    a = landscape.build_model("mlp", init="xavier", seed=1)
    path = tmp_path / "a.pt"
    torch.save({"state_dict": a.state_dict(), "meta": {"model": "mlp"}}, path)
    b = landscape.build_model("mlp", init="xavier", seed=2)
    meta = load_checkpoint(b, path)
    assert meta == {"model": "mlp"}
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = landscape.build_model("cnn")
    with pytest.raises(LandscapeError, match="does not fit model 'cnn'.*saved from 'mlp'"):
        load_checkpoint(c, path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(LandscapeError, match="cannot be read"):
        load_checkpoint(c, bad)


def test_conv_unit_is_channel_mean():
    m = landscape.build_model("cnn", in_shape=(1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    feats = {}
    m.act2.register_forward_hook(lambda mod, i, o: feats.setdefault("o", o))
    m(x)
    got = unit_activations(m, "act2", x, [0, 5])
    assert torch.allclose(got, feats["o"][:, [0, 5]].mean(dim=(2, 3)))
    with pytest.raises(LandscapeError, match="no module named 'nope'"):
        unit_activations(m, "nope", x)
