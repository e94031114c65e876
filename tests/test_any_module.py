"""Every unit-level analysis on a plain nn.Sequential (no in_shape, no task, no
default layer): shapes come from the data, values from hand computations."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape import LandscapeError, input_hessian_spectrum, input_slice, tsne_heatmaps
from landscape.maxact import maxact
from landscape.models import select_units


@pytest.fixture
def plain():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).double()
    x = torch.randn(24, 1, 6, 6, dtype=torch.float64)
    y = torch.arange(24) % 3
    return model, x, y


def channel_means(model, x):
    """Units of layer "1" by hand: each channel's spatial mean after the tanh."""
    with torch.no_grad():
        return model[1](model[0](x)).mean(dim=(2, 3))


def test_plain_module_has_no_in_shape(plain):
    model, x, _ = plain
    assert not hasattr(model, "in_shape")
    assert select_units(model, "1", None, x) == [0, 1, 2, 3]
    with pytest.raises(LandscapeError, match="no in_shape attribute; give example inputs"):
        select_units(model, "1", 2)


def test_input_slice_on_a_plain_module(plain):
    model, x, _ = plain
    ds = input_slice(model, "1", 2, x[:3], grid="-1:1:3", data=x)
    centre = ds.activation.sel(alpha=0).transpose("anchor", "unit").values
    np.testing.assert_allclose(centre, channel_means(model, x[:3])[:, :2].numpy(), rtol=1e-12)


def test_input_hessian_on_a_plain_module(plain):
    model, x, _ = plain
    ds = input_hessian_spectrum(model, "4", [1], x[:2], top_k=1, bottom_k=1, tol=1e-10)
    for a in range(2):
        def unit(flat):
            return model(flat.view(1, 1, 6, 6))[0, 1]

        truth = torch.linalg.eigvalsh(torch.func.hessian(unit)(x[a].reshape(-1)))
        got = ds.eigenvalue.sel(unit=1, anchor=a).values
        np.testing.assert_allclose(got, [truth[-1].item(), truth[0].item()], rtol=1e-6, atol=1e-9)


def test_maxact_and_relation_on_a_plain_module(plain):
    model, x, _ = plain
    ds = maxact(model, "1", 2, x, top_k=3, restarts=2, steps=5, relation=True, anchors=2)
    acts = channel_means(model, x)[:, :2].numpy()
    for u in range(2):
        expected = np.argsort(-acts[:, u])[:3]
        np.testing.assert_array_equal(ds.topk_index.sel(unit=u).values, expected)
    assert "spearman" in ds and ds.sizes["geometry"] > 0


def test_tsne_heatmaps_on_a_plain_module(plain):
    model, x, y = plain
    ds = tsne_heatmaps(model, "1", 2, x, y, perplexity=4.0, n_iter=50, pca_dims=5)
    np.testing.assert_allclose(ds.activation.transpose("sample", "unit").values,
                               channel_means(model, x)[:, :2].numpy(), rtol=1e-6)
