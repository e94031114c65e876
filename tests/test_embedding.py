"""t-SNE heatmaps: determinism, caching (a recolouring is not a refit), heatmap
values aligned with their samples, maxima placed on the map, and the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import landscape
from landscape import embedding
from landscape.cli import cli
from landscape.embedding import fit_map, tsne_heatmaps
from landscape.errors import LandscapeError
from landscape.maxact import maxact

PERP = 10.0


@pytest.fixture
def mlp(tiny):
    return tiny.mlp()


@pytest.fixture
def data(tiny):
    return tiny.digits(150)


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
    ds = tsne_heatmaps(mlp, None, 2, x, space="features", feature_layer="fc1", perplexity=PERP,
                       n_iter=100)
    assert ds.attrs["features"] == "fc1" and (ds.label.values == -1).all()
    with pytest.raises(LandscapeError, match="perplexity"):
        tsne_heatmaps(mlp, None, 2, x[:20], perplexity=30)
    with pytest.raises(LandscapeError, match="layer"):
        tsne_heatmaps(mlp, None, 2, x, space="features", feature_layer="nope")
    with pytest.raises(LandscapeError, match="space"):
        tsne_heatmaps(mlp, None, 2, x, space="layer")


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


# ----------------------------------------------------------------------------- feature space

class _Selector(nn.Module):
    """A model whose layer ``feat`` keeps 6 of the 16 pixels, permuted, and whose
    head ignores the rest: its feature space is known exactly."""

    def __init__(self, keep):
        super().__init__()
        weight = torch.zeros(len(keep), 16)
        weight[torch.arange(len(keep)), torch.as_tensor(keep)] = 1.0
        self.feat = nn.Linear(16, len(keep), bias=False)
        self.feat.weight.data.copy_(weight)
        self.head = nn.Linear(len(keep), 3)

    def forward(self, x):
        return self.head(torch.relu(self.feat(x.flatten(1))))


def test_feature_space_maps_the_layers_own_output(data):
    x, y = data
    keep = [9, 2, 14, 5, 0, 11]
    model = _Selector(keep)
    embedding.clear_cache()
    ds = tsne_heatmaps(model, "feat", 3, x, y, space="features", perplexity=PERP, n_iter=100,
                       pca_dims=0)
    # The map is exactly the t-SNE of the selected pixels (same settings, same seed) ...
    own = fit_map(x.flatten(1)[:, keep].double().numpy(), perplexity=PERP, n_iter=100, pca_dims=0)
    np.testing.assert_array_equal(ds.tsne_x.values, np.asarray(own.embedding)[:, 0])
    assert ds.attrs["space"] == "features" and ds.attrs["features"] == "feat"
    assert ds.attrs["pca_dims_used"] == len(keep)  # no PCA: the six features themselves
    # ... and not the map of the inputs.
    inputs = tsne_heatmaps(model, "feat", 3, x, y, perplexity=PERP, n_iter=100)
    assert inputs.attrs["space"] == "input" and inputs.attrs["pca_dims_used"] == 16
    assert not np.allclose(inputs.tsne_x.values, ds.tsne_x.values)
    with pytest.raises(LandscapeError, match="feature_layer"):
        tsne_heatmaps(model, "feat", 3, x, feature_layer="feat")


def test_feature_space_of_a_conv_layer_is_every_channel_and_position(data):
    x, _ = data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(48, 2))
    ds = tsne_heatmaps(model, "1", 2, x, space="features", perplexity=PERP, n_iter=100,
                       pca_dims=10)
    with torch.no_grad():
        flat = torch.relu(model[0](x)).flatten(1).double().numpy()  # (N, 3 * 4 * 4)
    assert flat.shape[1] == 48
    own = fit_map(flat, perplexity=PERP, n_iter=100, pca_dims=10)
    np.testing.assert_array_equal(ds.tsne_y.values, np.asarray(own.embedding)[:, 1])
    assert ds.attrs["pca_dims_used"] == 10


def test_feature_space_leaves_a_train_mode_batchnorm_model_untouched(data):
    x, y = data
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(64, 3)).train()
    model[1].running_mean.fill_(0.3)  # statistics a forward pass in train mode would move
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds = tsne_heatmaps(model, "2", 2, x, y, space="features", perplexity=PERP, n_iter=50,
                       pca_dims=5, bn="eval")
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert ds.attrs["bn"] == "eval"


def test_cli_tsne_records_its_feature_space(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--model", "mlp", "--init", "xavier", "--samples", "120", "--units", "3",
              "--perplexity", "10", "--n-iter", "50"]
    res = CliRunner().invoke(cli, ["tsne", *common, "--space", "features", "--pca-dims", "0",
                                   "--region-level", "0.3", "--out", "f.nc"])
    assert res.exit_code == 0, res.output
    ds = landscape.load("f.nc", kind="tsne")
    assert ds.attrs["space"] == "features" and ds.attrs["features"] == ds.attrs["layer"]
    assert ds.attrs["region_level"] == 0.3 and ds.attrs["pca_dims_used"] > 2
    res = CliRunner().invoke(cli, ["tsne", *common, "--feature-layer", "act1", "--out", "g.nc"])
    assert res.exit_code != 0 and "feature_layer" in res.output and not Path("g.nc").exists()


# ----------------------------------------------------------------------------- regions

def _clusters(heights, size=30, seed=0):
    """Map points in far-apart tight 2-D clusters of ``size`` points, cluster j
    carrying the constant activation ``heights[j]``."""
    rng = np.random.default_rng(seed)
    coords = np.vstack([rng.normal(0, 0.1, (size, 2)) + (100.0 * j, 0.0)
                        for j in range(len(heights))])
    return coords, np.repeat(np.asarray(heights, dtype=float), size)


def test_regions_of_constant_clusters_have_closed_form_heights():
    # Heights 1, 0.5 and zeros: median 0, climb 1; two regions, the second at 0.5.
    coords, a = _clusters([1.0, 0.5, 0, 0, 0])
    cols = np.stack([a, np.where(a == 0.5, 0.0, a), np.where(a == 0.5, 0.15, a), -a], axis=1)
    n, second = embedding.response_regions(coords, cols, level=0.2, min_size=10, k=10)
    np.testing.assert_array_equal(n, [2, 1, 1, 1])  # 0.15 lies below the level of 0.2
    np.testing.assert_allclose(second, [0.5, 0, 0, 0], atol=1e-12)
    # -a: median 0, max 0; constant on most points: one region of everything.
    n, second = embedding.response_regions(coords, cols[:, :1], level=0.2, min_size=31)
    assert n[0] == 1 and second[0] == 0  # regions of 30 points do not count
    # Smoothing: with clusters of k + 1 points every point's neighbours are its own
    # cluster, so the smoothed value is the cluster mean; cluster B alternates 1 and 0
    # (6 ones of 11), so its region stands at 6/11, not at its raw maximum 1.
    coords, a = _clusters([1.0, 0.0, 0, 0, 0], size=11)
    a[11:22] = np.arange(11) % 2 == 0
    n, second = embedding.response_regions(coords, a[:, None], level=0.2, min_size=5, k=10)
    assert n[0] == 2 and second[0] == pytest.approx(6 / 11, abs=1e-12)


def test_planted_two_cluster_units_are_found_where_their_top_k_show_one(mlp):
    # Five far-apart blobs in 6-D; a unit is max(RBF on blob A, r * RBF on blob B)
    # with r < 1, so its top-k examples all come from A; a control is one RBF.
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (5, 6)) * 10
    x = torch.as_tensor(np.vstack([c + rng.normal(0, 0.05, (40, 6)) for c in centres]))
    blob = np.repeat(np.arange(5), 40)

    class Planted(nn.Module):
        def __init__(self, pairs):
            super().__init__()
            self.pairs = pairs
            self.units = nn.Identity()

        def forward(self, inputs):
            c = torch.as_tensor(centres)
            rbf = torch.exp(-torch.cdist(inputs.flatten(1), c) ** 2 / 2)  # (N, 5)
            out = [torch.maximum(rbf[:, a], r * rbf[:, b]) for a, b, r in self.pairs]
            return self.units(torch.stack(out, dim=1))

    pairs = [(0, 3, 0.7), (1, 1, 1.0), (2, 4, 0.45), (3, 3, 1.0), (4, 1, 0.1)]
    ds = tsne_heatmaps(Planted(pairs), "units", None, x, torch.as_tensor(blob), perplexity=PERP,
                       n_iter=200, pca_dims=0)
    np.testing.assert_array_equal(ds.n_regions.values, [2, 1, 2, 1, 1])  # 0.1 < the level 0.2
    np.testing.assert_allclose(ds.second_region.values, [0.7, 0, 0.45, 0, 0], atol=0.01)
    top = np.argsort(-ds.activation.values, axis=0)[:9]
    assert (blob[top[:, 0]] == 0).all() and (blob[top[:, 2]] == 2).all()  # one blob each
