"""t-SNE heatmaps: determinism, caching (a recolouring is not a refit), heatmap
values aligned with their samples, maxima placed on the map, and the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape import embedding
from landscape.cli import cli
from landscape.embedding import fit_map, tsne_heatmaps
from landscape.errors import LandscapeError
from landscape.maxact import maxact

PERP = 10.0


@pytest.fixture
def mlp():
    return landscape.build_model("mlp", init="xavier", bias_scale=0.1, seed=3, width=12, depth=2,
                                 in_shape=(1, 4, 4))


@pytest.fixture
def data():
    return landscape.load_dataset("digits", n=150, in_shape=(1, 4, 4), seed=1)


def test_tsne_is_deterministic_for_a_seed(data):
    x, _ = data
    feats = x.flatten(1).double().numpy()
    embedding.clear_cache()
    a = np.asarray(fit_map(feats, perplexity=PERP, seed=4, n_iter=100).embedding)
    embedding.clear_cache()  # a real refit, not the cached map
    b = np.asarray(fit_map(feats, perplexity=PERP, seed=4, n_iter=100).embedding)
    np.testing.assert_array_equal(a, b)


def test_heatmaps_line_up_with_samples_and_reuse_the_map(mlp, data, monkeypatch, tmp_path):
    x, y = data
    embedding.clear_cache()
    ds = tsne_heatmaps(mlp, None, 4, x, y, perplexity=PERP, n_iter=100, cache_dir=tmp_path)
    assert ds.attrs["kind"] == "tsne"
    assert ds.activation.dims == ("sample", "unit") and ds.tsne_x.dims == ("sample",)
    # Sample i's colour is unit u's activation on x[i]: check a permuted subset.
    idx = torch.tensor([7, 0, 149, 42])
    acts = landscape.unit_activations(mlp.eval(), None, x[idx], [0, 1, 2, 3]).detach().numpy()
    np.testing.assert_allclose(ds.activation.isel(sample=idx.numpy()).values, acts, rtol=1e-6)
    np.testing.assert_array_equal(ds.label.values, y.numpy())
    assert list(tmp_path.glob("tsne-*.npz")), "the on-disk cache was not written"

    # Another unit's heatmap recolours the cached map: no t-SNE fit happens.
    def no_fit(*_a, **_k):
        raise AssertionError("t-SNE was refitted")

    monkeypatch.setattr("openTSNE.TSNE.fit", no_fit)
    more = tsne_heatmaps(mlp, None, [5, 6], x, y, perplexity=PERP, n_iter=100)
    np.testing.assert_array_equal(more.tsne_x.values, ds.tsne_x.values)
    # ... and the on-disk cache serves a fresh process (memory cleared) too.
    embedding.clear_cache()
    again = tsne_heatmaps(mlp, None, 2, x, y, perplexity=PERP, n_iter=100, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.tsne_y.values, ds.tsne_y.values)


def test_maxima_are_placed_on_the_map(mlp, data, tmp_path):
    x, y = data
    ma = maxact(mlp, None, 3, x, top_k=3, restarts=2, steps=10)
    ds = tsne_heatmaps(mlp, None, 4, x, y, perplexity=PERP, n_iter=100, maxact=ma)
    idx = ds.topk_index.sel(unit=1).values
    np.testing.assert_array_equal(ds.topk_x.sel(unit=1).values, ds.tsne_x.values[idx])
    assert np.isfinite(ds.maximum_x.sel(unit=[0, 1, 2])).all()
    assert np.isnan(float(ds.maximum_x.sel(unit=3)))  # unit 3 was not in the maxact result
    # Placing the maxima (openTSNE transform) leaves the cached map where it was.
    cached = fit_map(x.flatten(1).double().numpy(), perplexity=PERP, n_iter=100)
    np.testing.assert_array_equal(np.asarray(cached.embedding)[:, 0], ds.tsne_x.values)
    back = landscape.load(landscape.save(ds, tmp_path / "t.nc"), kind="tsne")
    np.testing.assert_allclose(back.activation.values, ds.activation.values)


def test_layer_features_and_bad_perplexity(mlp, data):
    x, y = data
    ds = tsne_heatmaps(mlp, None, 2, x, features="fc1", perplexity=PERP, n_iter=100)
    assert ds.attrs["features"] == "fc1" and (ds.label.values == -1).all()
    with pytest.raises(LandscapeError, match="perplexity"):
        tsne_heatmaps(mlp, None, 2, x[:20], perplexity=30)
    with pytest.raises(LandscapeError, match="layer"):
        tsne_heatmaps(mlp, None, 2, x, features="nope")


def test_cli_tsne_writes_a_loadable_file_and_plots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--model", "mlp", "--init", "xavier", "--samples", "120", "--units", "3"]
    res = CliRunner().invoke(cli, ["maxact", *common, "--top-k", "3", "--restarts", "2",
                                   "--steps", "5", "--out", "m.nc"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["tsne", *common, "--perplexity", "10", "--n-iter", "100",
                                   "--maxact", "m.nc", "--out", "t.nc"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == "t.nc"
    ds = landscape.load("t.nc", kind="tsne")
    assert ds.sizes["sample"] == 120 and "maximum_x" in ds
    res = CliRunner().invoke(cli, ["plot", "t.nc", "--out", "figs"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [Path(p).name for p in res.stdout.split()] == ["t_heatmaps.png", "t_labels.png"]


def test_gradient_methods_both_keep_neighbourhoods_and_are_cached_apart(data):
    from sklearn.manifold import trustworthiness

    x, _ = data
    feats = x.flatten(1).double().numpy()
    assert embedding.gradient_method("auto", embedding.FFT_FROM - 1) == "bh"
    assert embedding.gradient_method("auto", embedding.FFT_FROM) == "fft"
    embedding.clear_cache()
    maps = {g: fit_map(feats, perplexity=PERP, seed=0, n_iter=100, gradient=g)
            for g in ("bh", "fft")}
    assert maps["bh"].key != maps["fft"].key and maps["bh"].method == "bh"
    assert fit_map(feats, perplexity=PERP, seed=0, n_iter=100) is maps["bh"]  # auto, cached
    for tmap in maps.values():
        assert trustworthiness(feats, np.asarray(tmap.embedding), n_neighbors=5) > 0.9
    with pytest.raises(LandscapeError, match="gradient"):
        fit_map(feats, perplexity=PERP, gradient="exact")
