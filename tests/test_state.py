"""Analyses never touch their model, and BatchNorm statistics are one documented choice."""

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import landscape
from landscape.errors import LandscapeError
from landscape.hessian import hessian_spectrum, input_hessian_spectrum, top_eigenvectors
from landscape.maxact import maxact
from landscape.view import model_view, resolve_bn, untouched


def bn_cnn(seed: int = 0) -> nn.Module:
    """A small convolutional network with two BatchNorm layers and the attributes
    the toolkit reads; running statistics never updated (a random network)."""
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("bn1", nn.BatchNorm2d(4)), ("act1", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 5, 3, padding=1)), ("bn2", nn.BatchNorm2d(5)), ("act2", nn.Tanh()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("head", nn.Linear(5, 3)),
    ]))
    model.name, model.in_shape, model.task, model.default_layer = "bn_cnn", (1, 4, 4), "classify", "act2"
    return model


def data(n: int = 40):
    x, y = landscape.load_dataset("digits", n=n, in_shape=(1, 4, 4), seed=2)
    return x, y % 3


def state(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
    }


def assert_same_state(model: nn.Module, before: dict) -> None:
    after = state(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert set(after["tensors"]) == set(before["tensors"])
    changed = [k for k, v in before["tensors"].items() if not torch.equal(after["tensors"][k], v)]
    assert changed == [], f"changed: {changed}"
    for k, g in before["grad"].items():
        now = after["grad"][k]
        assert (g is None and now is None) or torch.equal(g, now), k


def _analyses(x, y):
    """Every analysis that takes a model, with small settings."""
    return {
        "loss_slice": lambda m: landscape.loss_slice(m, x, y, dims=1, grid="-1:1:3"),
        "loss_slice batch": lambda m: landscape.loss_slice(m, x, y, dims=1, grid="-1:1:3",
                                                           bn="batch"),
        "loss_slice eval loop": lambda m: landscape.loss_slice(m, x, y, dims=1, grid="-1:1:3",
                                                               bn="eval", engine="loop"),
        "loss_slice hessian": lambda m: landscape.loss_slice(m, x, y, "hessian", dims=1,
                                                             grid="-1:1:3"),
        "input_slice one anchor": lambda m: landscape.input_slice(m, None, 2, x[:1], grid="-1:1:3",
                                                                    data=x),
        "input_slice": lambda m: landscape.input_slice(m, "act1", 2, x[:3], grid="-1:1:3", data=x),
        "hessian": lambda m: hessian_spectrum(m, x, y, top_k=1, density=True, density_runs=1,
                                              density_steps=4, max_steps=6),
        "hessian batch": lambda m: hessian_spectrum(m, x, y, top_k=1, bn="batch", max_steps=6,
                                                    batch_size=20),
        "input_hessian": lambda m: input_hessian_spectrum(m, None, 1, x[:1], top_k=1,
                                                          max_steps=4, data=x),
        "top_eigenvectors": lambda m: top_eigenvectors(m, x, y, k=1, max_steps=6),
        "maxact null relate": lambda m: maxact(m, None, 3, x, top_k=2, restarts=2,
                                                         steps=3, null_models=1, relation=True,
                                                         anchors=1),
        "tsne": lambda m: landscape.tsne_heatmaps(m, None, 2, x, y, perplexity=5, n_iter=10,
                                                  pca_dims=4),
    }


ANALYSES = list(_analyses(None, None))


@pytest.mark.parametrize("name", ANALYSES)
def test_every_analysis_leaves_a_train_mode_batchnorm_model_untouched(name):
    model = bn_cnn()
    model.train()
    model.conv2.eval()  # a mixed state must come back exactly as it was
    model.head.bias.requires_grad_(False)
    model.conv1.weight.grad = torch.ones_like(model.conv1.weight)
    x, y = data()
    before = state(model)
    _analyses(x, y)[name](model)
    assert_same_state(model, before)


def test_guard_restores_and_reports(monkeypatch):
    model = bn_cnn()
    x, _ = data(8)

    @untouched
    def careless(model):
        model.train()(x)  # updates the running statistics and stays in train mode
        model.conv1.weight.requires_grad_(False)

    model.eval()
    before = state(model)
    monkeypatch.setenv("LANDSCAPE_STRICT_STATE", "0")
    with pytest.warns(RuntimeWarning, match="buffer bn1.running_mean.*restored"):
        careless(model)
    assert_same_state(model, before)
    monkeypatch.setenv("LANDSCAPE_STRICT_STATE", "1")
    with pytest.raises(AssertionError, match="careless changed the model.*requires_grad of conv1"):
        careless(model)
    assert_same_state(model, before)

    @untouched
    def writes_weights(model):
        with torch.no_grad():
            model.head.weight.mul_(2)

    with pytest.raises(RuntimeError, match="parameter head.weight"):
        writes_weights(model)


def test_a_nested_guard_of_the_same_model_hashes_once_and_the_outer_one_catches(monkeypatch):
    import landscape.view as view

    model, x = bn_cnn(), data(8)[0]
    calls = []
    digest = view._digest
    monkeypatch.setattr(view, "_digest", lambda t: calls.append(1) or digest(t))
    n_params = len(list(model.parameters()))

    @untouched
    def inner(model):
        with torch.no_grad():
            model.head.bias.add_(1)  # a change made two calls deep

    @untouched
    def outer(model):
        model.eval()(x)
        inner(model)

    with pytest.raises(RuntimeError, match="outer changed the model.*parameter head.bias"):
        outer(model)
    assert len(calls) == 2 * n_params  # one snapshot and one check, not two of each
    calls.clear()
    with pytest.raises(RuntimeError, match="inner changed the model"):
        inner(bn_cnn(1))  # alone, it guards itself
    assert len(calls) == 2 * n_params


# ----------------------------------------------------------------------------- BatchNorm modes

def test_recompute_is_each_layers_population_statistics_in_closed_form():
    model = bn_cnn().double()
    x, _ = data(30)
    x = x.double()
    view = model_view(model, "recompute", x, batch_size=7)  # batches of unequal size
    with torch.no_grad():
        h1 = model.conv1(x)
        mean1, var1 = h1.mean((0, 2, 3)), h1.var((0, 2, 3), unbiased=False)
        a1 = torch.relu((h1 - mean1[None, :, None, None])
                        / torch.sqrt(var1[None, :, None, None] + model.bn1.eps)
                        * model.bn1.weight[None, :, None, None] + model.bn1.bias[None, :, None, None])
        h2 = model.conv2(a1)
        mean2, var2 = h2.mean((0, 2, 3)), h2.var((0, 2, 3), unbiased=False)
    torch.testing.assert_close(view.bn1.running_mean, mean1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(view.bn1.running_var, var1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(view.bn2.running_mean, mean2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(view.bn2.running_var, var2, rtol=1e-12, atol=1e-12)
    # The view in eval mode computes what the model in train mode computes on all the data.
    with torch.no_grad():
        train = copy.deepcopy(model).train()(x)
        torch.testing.assert_close(view(x), train, rtol=1e-10, atol=1e-12)
    # All the data in one batch (one pass in training mode) gives the same statistics.
    whole = model_view(model, "recompute", x)
    for name in ("bn1", "bn2"):
        for stat in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(getattr(whole, name), stat),
                                       getattr(getattr(view, name), stat), rtol=1e-12, atol=1e-12)
    # The model's own statistics are still the fresh 0/1.
    assert torch.equal(model.bn1.running_mean, torch.zeros(4, dtype=torch.float64))
    assert view.bn_mode == "recompute" and not view.training


def test_recompute_matches_torch_cumulative_average_on_one_batch():
    # PyTorch's own cumulative average (momentum=None) over one batch of all the data
    # gives the same means; its variance is the unbiased one, ours the population's.
    model = bn_cnn().double()
    x, _ = data(30)
    x = x.double()
    view = model_view(model, "recompute", x)
    ref = copy.deepcopy(model)
    for m in (ref.bn1, ref.bn2):
        m.momentum = None
    with torch.no_grad():
        ref.train()(x)
    n1 = 30 * 4 * 4
    torch.testing.assert_close(view.bn1.running_mean, ref.bn1.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(view.bn1.running_var * n1 / (n1 - 1), ref.bn1.running_var,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(view.bn2.running_mean, ref.bn2.running_mean, rtol=1e-12, atol=1e-12)


def test_auto_resolves_by_whether_statistics_were_ever_updated():
    model = bn_cnn()
    assert resolve_bn(model, "auto") == "recompute"
    x, _ = data(16)
    with torch.no_grad():
        model.train()(x)
    assert resolve_bn(model, "auto") == "eval"
    mlp = landscape.build_model("mlp", in_shape=(1, 4, 4))
    assert resolve_bn(mlp, "auto") == "eval"
    with pytest.raises(LandscapeError, match="bn: unknown value 'train'"):
        resolve_bn(model, "train")


def test_batch_mode_normalises_each_batch_and_eval_uses_stored_statistics():
    model = bn_cnn().double()
    x, _ = data(16)
    x = x.double()
    with torch.no_grad():
        model.bn1.running_mean.normal_()
        model.bn1.running_var.uniform_(0.5, 2)
        stored = model.eval()(x)
        batch_ref = copy.deepcopy(model).train()(x)
        torch.testing.assert_close(model_view(model, "eval")(x), stored, rtol=0, atol=0)
        torch.testing.assert_close(model_view(model, "batch")(x), batch_ref, rtol=1e-12, atol=1e-12)
        halves = model_view(model, "batch")
        assert not torch.allclose(halves(x[:8]), batch_ref[:8])


def test_result_records_one_bn_for_every_part():
    model = bn_cnn()
    x, y = data()
    ds = landscape.loss_slice(model, x, y, dims=1, grid="-1:1:3")
    assert ds.attrs["bn"] == "recompute"
    ma = maxact(model, None, 3, x, top_k=2, restarts=2, steps=2, relation=True,
                          anchors=2, bn="eval")
    assert ma.attrs["bn"] == "eval"
    h = hessian_spectrum(model, x, y, top_k=1, max_steps=4, bn="batch")
    assert h.attrs["bn"] == "batch"


@pytest.mark.parametrize("call", [
    lambda m, x, y: landscape.input_slice(m, None, 2, x[:2], bn="batch"),
    lambda m, x, y: input_hessian_spectrum(m, None, 1, x[:1], bn="batch"),
    lambda m, x, y: maxact(m, None, 2, x, bn="batch"),
    lambda m, x, y: landscape.tsne_heatmaps(m, None, 2, x, bn="batch"),
])
def test_batch_statistics_are_refused_for_a_units_response_to_its_input(call):
    x, y = data()
    with pytest.raises(LandscapeError, match="bn: 'batch' does not apply"):
        call(bn_cnn(), x, y)


def test_input_slice_applies_bn_and_batch_size():
    model = bn_cnn().double()
    x, _ = data()
    x = x.double()
    rec = landscape.input_slice(model, "bn2", 3, x[:2], grid="-1:1:5", data=x, bn="recompute",
                                batch_size=3)
    ev = landscape.input_slice(model, "bn2", 3, x[:2], grid="-1:1:5", data=x, bn="eval",
                               batch_size=1000)
    view = model_view(model, "recompute", x)
    at_anchor = landscape.unit_activations(view, "bn2", x[:2], [0, 1, 2]).detach().numpy()
    np.testing.assert_allclose(rec.activation.sel(alpha=0).values, at_anchor.T, rtol=1e-10)
    plain = landscape.unit_activations(model.eval(), "bn2", x[:2], [0, 1, 2]).detach().numpy()
    np.testing.assert_allclose(ev.activation.sel(alpha=0).values, plain.T, rtol=1e-10)
    assert rec.attrs["bn"] == "recompute" and ev.attrs["bn"] == "eval"
    assert landscape.results.config_of(rec)["batch_size"] == 3
    with pytest.raises(LandscapeError, match="batch_size"):
        landscape.input_slice(model, "bn2", 3, x[:2], batch_size=0)
