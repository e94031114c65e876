"""``landscape tsne``: a t-SNE map of the inputs or of a layer's features,
coloured by each unit's activation (:func:`landscape.tsne_heatmaps`)."""

from __future__ import annotations

import click

from ..errors import LandscapeError
from .analysis import Analysis
from .options import MAX_MEMORY_OPTION, MODEL_OPTIONS, bn_option, option_list
from .setup import Setup, progress_bar

TSNE_OPTIONS = option_list(
    bn_option(per_sample=True),
    click.option("--layer", default=None, help="Module whose units colour the map (default: the "
                                                "one feeding the head)."),
    click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer."),
    click.option("--space", type=click.Choice(["input", "features"]), default="input",
                  show_default=True,
                  help="What the map is fitted to: the inputs (one map for every network), or "
                       "the layer's own output, flattened."),
    click.option("--feature-layer", default=None,
                  help="With --space features: the module whose output is mapped (default: "
                       "--layer)."),
    click.option("--perplexity", type=float, default=30.0, show_default=True),
    click.option("--n-iter", type=int, default=500, show_default=True,
                  help="t-SNE iterations after the early exaggeration phase."),
    click.option("--pca-dims", type=int, default=50, show_default=True,
                  help="PCA components fed to t-SNE (0: no PCA)."),
    click.option("--gradient", type=click.Choice(["auto", "bh", "fft"]), default="auto",
                  show_default=True,
                  help="t-SNE repulsive forces: Barnes-Hut, FFT interpolation, or 'auto' "
                       "(Barnes-Hut below 10 000 points)."),
    click.option("--region-level", type=float, default=0.2, show_default=True,
                  help="High set of a heatmap: at this share of the climb from its median to "
                       "its maximum (n_regions, second_region)."),
    click.option("--region-min-size", type=int, default=10, show_default=True,
                  help="Points a high region needs to count."),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                  help="Keep fitted maps here and reuse them."),
    click.option("--maxact", "maxact", type=click.Path(dir_okay=False), default=None,
                  help="A maxact result on the same data: place its top-k and maxima on the map."),
    MAX_MEMORY_OPTION,
)


def _tsne_summary(ds) -> list[str]:
    regions = ds["n_regions"].values
    return [f"t-SNE map of {ds.sizes['sample']} samples ({ds.attrs['features']} features); "
            f"heatmaps of {ds.sizes['unit']} units of {ds.attrs['layer']}",
            f"{int((regions >= 2).sum())} of {len(regions)} units respond in two or more separate "
            f"regions of the map (n_regions, at level {ds.attrs['region_level']})"]


def tsne_analysis(opts: dict):
    """A t-SNE map of the data coloured by each unit's activation."""
    from ..embedding import tsne_heatmaps
    from ..results import load

    if opts["units"] < 1:
        raise LandscapeError(f"units: must be >= 1, got {opts['units']}")
    ma = load(opts["maxact"], kind="maxact") if opts.get("maxact") else None
    setup = Setup("tsne", opts)
    if ma is not None and int(ma["topk_index"].max()) >= len(setup.x):
        raise LandscapeError(f"maxact: {opts['maxact']!r} was made on more samples than "
                             f"--samples {opts['samples']}; use the same data options")
    ds = tsne_heatmaps(setup.input_model, opts["layer"], opts["units"], setup.input_x, setup.labels,
                       space=opts["space"], feature_layer=opts["feature_layer"],
                       region_level=opts["region_level"],
                       region_min_size=opts["region_min_size"], perplexity=opts["perplexity"],
                       pca_dims=opts["pca_dims"], n_iter=opts["n_iter"], seed=opts["seed"],
                       gradient=opts["gradient"], cache_dir=opts["cache_dir"],
                       maxact=ma, bn=opts["bn"], dataset=opts["dataset"],
                       progress=progress_bar("it"), max_memory=opts["max_memory"])
    return ds, setup


ANALYSIS = Analysis("tsne", tsne_analysis, tuple(MODEL_OPTIONS + TSNE_OPTIONS), _tsne_summary,
                    figure="tsne",
                    help=(
                    "t-SNE map of the whole dataset with each unit's activation as a "
                    'heatmap.'))
