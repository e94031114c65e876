"""The ``maxact`` and ``tsne`` commands: max-activation reliability and t-SNE
activation heatmaps of single units (see :mod:`landscape.maxact` and
:mod:`landscape.embedding`).

``--samples`` (default 256, shared with every analysis) is the dataset these
analyses search and map; the metrics grow more reliable with more data (e.g.
``--samples 2000``), at the cost of the kNN graph and the t-SNE fit.
"""

from __future__ import annotations

import click

from .cli import (
    Setup,
    _tqdm_progress,
    analysis,
    bn_option,
    cli,
    max_memory_option,
    model_options,
    run_command,
)
from .errors import LandscapeError


def _maxact_summary(ds) -> list[str]:
    def mean(name: str) -> str:
        return f"{float(ds[name].mean()):.3g}"

    line = (f"{ds.sizes['unit']} units of {ds.attrs['layer']}: mean rho {mean('rho')}, "
            f"p_hit {mean('p_hit')}, n_maxima {mean('n_maxima')}, dist_to_data "
            f"{mean('dist_to_data')}, Moran's I {mean('morans_i')}")
    lines = [line]
    if "rho_z" in ds:
        lines.append(f"against {ds.attrs.get('null_models', '')} null model(s): mean z of rho "
                     f"{mean('rho_z')}, of Moran's I {mean('morans_i_z')}")
    return lines


@analysis("maxact", summary=_maxact_summary)
def maxact_analysis(opts: dict):
    """Dataset top-k, gradient-ascent maxima and reliability metrics."""
    from .maxact import maxact

    for name in ("units", "top_k", "restarts", "steps"):
        if opts[name] < 1:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 1, got {opts[name]}")
    if opts["null"] < 0:
        raise LandscapeError(f"null: must be >= 0, got {opts['null']}")
    setup = Setup("maxact", opts)
    ds = maxact(setup.input_model, opts["layer"], opts["units"], setup.input_x, top_k=opts["top_k"],
                restarts=opts["restarts"], steps=opts["steps"], lr=opts["lr"],
                norm_ball=opts["norm_ball"], null_models=opts["null"], seed=opts["seed"],
                relation=opts["relate"], bn=opts["bn"], progress=_tqdm_progress,
                dataset=opts["dataset"], max_memory=opts["max_memory"])
    return ds, setup


@cli.command("maxact")
@model_options
@bn_option(per_sample=True)
@click.option("--layer", default=None, help="Module whose units to study (default: the one "
                                            "feeding the head).")
@click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer.")
@click.option("--top-k", type=int, default=9, show_default=True, help="Dataset top examples per unit.")
@click.option("--restarts", type=int, default=16, show_default=True,
              help="Random starts of gradient ascent per unit (the top-k start too).")
@click.option("--steps", type=int, default=200, show_default=True, help="Ascent steps.")
@click.option("--lr", type=float, default=0.05, show_default=True,
              help="Ascent step, as a fraction of each feature's data range.")
@click.option("--norm-ball", type=float, default=None,
              help="Also keep maxima within this L2 distance of the data mean.")
@click.option("--null", type=int, default=0, show_default=True,
              help="Re-initialised copies of the architecture for z-scores.")
@click.option("--relate/--no-relate", default=False, show_default=True,
              help="Add input-slice quasi-convexity and input-Hessian statistics per unit, "
                   "and their rank correlations with the metrics.")
@max_memory_option
def maxact_command(**opts) -> None:
    """Max-activating examples vs gradient-ascent maxima: how reliable is the
    dataset's top example as a portrait of each unit?"""
    run_command("maxact", opts)


def _tsne_summary(ds) -> list[str]:
    return [f"t-SNE map of {ds.sizes['sample']} samples ({ds.attrs['features']} features); "
            f"heatmaps of {ds.sizes['unit']} units of {ds.attrs['layer']}"]


@analysis("tsne", summary=_tsne_summary)
def tsne_analysis(opts: dict):
    """A t-SNE map of the data coloured by each unit's activation."""
    from .embedding import tsne_heatmaps
    from .results import load

    if opts["units"] < 1:
        raise LandscapeError(f"units: must be >= 1, got {opts['units']}")
    ma = load(opts["maxact"], kind="maxact") if opts.get("maxact") else None
    setup = Setup("tsne", opts)
    if ma is not None and int(ma["topk_index"].max()) >= len(setup.x):
        raise LandscapeError(f"maxact: {opts['maxact']!r} was made on more samples than "
                             f"--samples {opts['samples']}; use the same data options")
    ds = tsne_heatmaps(setup.input_model, opts["layer"], opts["units"], setup.input_x, setup.labels,
                       features=opts["features"], perplexity=opts["perplexity"],
                       pca_dims=opts["pca_dims"], n_iter=opts["n_iter"], seed=opts["seed"],
                       gradient=opts["gradient"], cache_dir=opts["cache_dir"],
                       maxact=ma, bn=opts["bn"], dataset=opts["dataset"],
                       max_memory=opts["max_memory"])
    return ds, setup


@cli.command("tsne")
@model_options
@bn_option(per_sample=True)
@click.option("--layer", default=None, help="Module whose units colour the map (default: the "
                                            "one feeding the head).")
@click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer.")
@click.option("--features", default="input", show_default=True,
              help="What the map is made of: 'input' or a layer name.")
@click.option("--perplexity", type=float, default=30.0, show_default=True)
@click.option("--n-iter", type=int, default=500, show_default=True,
              help="t-SNE iterations after the early exaggeration phase.")
@click.option("--pca-dims", type=int, default=50, show_default=True,
              help="PCA components fed to t-SNE.")
@click.option("--gradient", type=click.Choice(["auto", "bh", "fft"]), default="auto",
              show_default=True,
              help="t-SNE repulsive forces: Barnes-Hut, FFT interpolation, or 'auto' "
                   "(Barnes-Hut below 10 000 points).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Keep fitted maps here and reuse them.")
@click.option("--maxact", "maxact", type=click.Path(dir_okay=False), default=None,
              help="A maxact result on the same data: place its top-k and maxima on the map.")
@max_memory_option
def tsne_command(**opts) -> None:
    """t-SNE map of the whole dataset with each unit's activation as a heatmap."""
    run_command("tsne", opts)
