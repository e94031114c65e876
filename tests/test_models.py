import pytest
import torch

import landscape
from landscape.errors import LandscapeError
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
