"""Variants of a trained network (Heap et al. 2025's controls and our inits): each
construction does what it says and the input model is never modified."""

import math

import pytest
import torch

import landscape
from landscape.models.variants import make_variant, parse_variants

RECIPE = {"model": "transformer", "init": "default", "bias_scale": None, "seed": 7}


def trained_like():
    """A transformer whose tensors have distinct, non-trivial means and scales, with
    one frozen tensor and eval mode, standing in for a trained checkpoint."""
    model = landscape.build_model("transformer", width=32, depth=1, heads=2, context=16, seed=7)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, (_, p) in enumerate(model.named_parameters()):
            p.mul_(1 + 0.3 * i).add_(0.01 * i - 0.05).add_(0.05 * torch.rand(p.shape, generator=gen))
    model.blocks[0].ln1.weight.requires_grad_(False)
    model.eval()
    return model


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def unique(model):
    return dict(model.named_parameters())  # tied tensors once


def moments_kept(new, old):
    """Mean and std of ``new`` equal those of ``old`` within sampling error (5 sigma)."""
    n = old.numel()
    m, s = old.double().mean(), old.double().std()
    assert abs(float(new.double().mean() - m)) < 5 * float(s) / math.sqrt(n) + 1e-12
    assert abs(float(new.double().std() / s) - 1) < 5 / math.sqrt(2 * (n - 1))


def kurtosis(t):
    z = (t.double() - t.double().mean()) / t.double().std()
    return float((z ** 4).mean())


def test_rerandomised_redraws_every_tensor_from_its_own_gaussian():
    model = trained_like()
    before = state(model)
    out = make_variant(model, "rerandomised", seed=1)
    for name, p in unique(out).items():
        old = before[name]
        assert not torch.isclose(p, old).any(), name
        moments_kept(p.detach(), old)
    # Gaussian, not a shuffle of the (uniform, kurtosis 1.8) xavier-like table.
    embed = out.embed.weight.detach()
    assert abs(kurtosis(embed) - 3) < 0.3
    assert out.head.weight is out.embed.weight  # still tied: one tensor, drawn once
    again = make_variant(model, "rerandomised", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), out.parameters()))
    other = make_variant(model, "rerandomised", seed=2)
    assert not torch.equal(other.embed.weight, out.embed.weight)
    assert out.variant == "rerandomised"


def test_rerandomised_except_embeddings_keeps_both_tables():
    model = trained_like()
    before = state(model)
    out = make_variant(model, "rerandomised-except-embeddings", seed=0)
    for name, p in unique(out).items():
        if name in ("embed.weight", "pos.weight"):
            assert torch.equal(p, before[name]), name
        else:
            assert not torch.isclose(p, before[name]).any(), name
            moments_kept(p.detach(), before[name])
    assert torch.equal(out.head.weight, before["embed.weight"])


def test_control_replaces_the_token_embedding_only():
    model = trained_like()
    before = state(model)
    out = make_variant(model, "control", seed=0)
    new = out.state_dict()
    assert not torch.isclose(new["embed.weight"], before["embed.weight"]).any()
    moments_kept(new["embed.weight"], before["embed.weight"])
    assert abs(kurtosis(new["embed.weight"]) - 3) < 0.3
    for name in before:
        if name != "embed.weight":
            assert torch.equal(new[name], before[name]), name  # head, positions, blocks: trained
    assert out.head.weight is not out.embed.weight and not out.tied
    with pytest.raises(landscape.LandscapeError, match="has none"):
        make_variant(landscape.build_model("mlp", in_shape=(1, 4, 4)), "control")


def test_trained_and_init_variants():
    model = trained_like()
    before = state(model)
    trained = make_variant(model, "trained")
    assert all(torch.equal(a, before[k]) for k, a in trained.state_dict().items())
    with torch.no_grad():
        trained.embed.weight.add_(1.0)  # a copy, not the model
    # init: the recipe's own init and seed, untrained, bit for bit.
    fresh = landscape.build_model("transformer", width=32, depth=1, heads=2, context=16, seed=7)
    init = make_variant(model, "init", RECIPE)
    assert all(torch.equal(a, fresh.state_dict()[k]) for k, a in init.state_dict().items())
    assert not torch.equal(init.blocks[0].mlp.fc.weight, model.blocks[0].mlp.fc.weight)
    # Without a recipe, the model's own record (build_model keeps init, bias scale and seed).
    bare = make_variant(fresh, "init")
    assert all(torch.equal(a, fresh.state_dict()[k]) for k, a in bare.state_dict().items())
    # init:SCHEME:S: our own initialisations on the same architecture and seed.
    xav = make_variant(model, "init:xavier:0.1", RECIPE)
    ref = landscape.build_model("transformer", init="xavier", bias_scale=0.1, width=32, depth=1,
                                heads=2, context=16, seed=7)
    assert all(torch.equal(a, ref.state_dict()[k]) for k, a in xav.state_dict().items())
    mlp = landscape.build_model("mlp", init="kaiming", bias_scale=0.5, seed=3, width=8, in_shape=(1, 4, 4))
    recipe = {"model": "mlp", "init": "kaiming", "bias_scale": 0.5, "seed": 3, "width": 8,
              "in_shape": [1, 4, 4]}
    with torch.no_grad():
        mlp.fc1.weight.add_(1.0)  # "trained"
    again = make_variant(mlp, "init", recipe)
    ref = landscape.build_model("mlp", init="kaiming", bias_scale=0.5, seed=3, width=8, in_shape=(1, 4, 4))
    assert all(torch.equal(a, ref.state_dict()[k]) for k, a in again.state_dict().items())
    assert all(torch.equal(a, before[k]) for k, a in model.state_dict().items())


def test_init_takes_the_checkpoints_own_recipe(tmp_path):
    from landscape.train import save_checkpoint

    trained = trained_like()  # seed 7, default init
    meta = {"model": "transformer", "init": "xavier", "bias_scale": 0.2, "weight_std": None, "seed": 5}
    save_checkpoint(tmp_path / "t.pt", trained, meta)
    loaded = landscape.build_model("transformer", width=32, depth=1, heads=2, context=16, seed=0)
    landscape.load_checkpoint(loaded, tmp_path / "t.pt")
    step0 = make_variant(loaded, "init")
    ref = landscape.build_model("transformer", init="xavier", bias_scale=0.2, width=32, depth=1,
                                heads=2, context=16, seed=5)
    assert all(torch.equal(a, ref.state_dict()[k]) for k, a in step0.state_dict().items())
    # The meta passed along overrides the recipe the same way.
    again = make_variant(trained, "init", meta)
    assert all(torch.equal(a, ref.state_dict()[k]) for k, a in again.state_dict().items())


def test_the_input_model_is_never_modified():
    model = trained_like()
    before = state(model)
    def flags_of(m):
        return {k: p.requires_grad for k, p in m.named_parameters(remove_duplicate=False)}

    flags = flags_of(model)
    modes = [m.training for m in model.modules()]
    for variant in ("trained", "init", "rerandomised", "rerandomised-except-embeddings", "control",
                    "init:kaiming", "init:normal:0.2"):
        out = make_variant(model, variant, RECIPE, seed=3)
        assert flags_of(out) == flags and not flags["blocks.0.ln1.weight"]
        assert not any(m.training for m in out.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert flags_of(model) == flags
    assert [m.training for m in model.modules()] == modes
    assert model.head.weight is model.embed.weight


def test_variant_lists_parse_and_bad_ones_fail_with_one_line():
    assert parse_variants("trained, init,control,init:xavier:0.1") == [
        "trained", "init", "control", "init:xavier:0.1"]
    for bad, match in (("foo", "unknown value"), ("init:bogus", "SCHEME"),
                       ("init:xavier:-1", ">= 0"), ("trained,trained", "once"), ("", "at least")):
        with pytest.raises(landscape.LandscapeError, match=match):
            parse_variants(bad)
