"""``landscape maxact``: each unit's top dataset examples against the maxima found
by gradient ascent in a named region, with reliability metrics
(:func:`landscape.maxact`)."""

from __future__ import annotations

import click

from ..errors import LandscapeError
from .analysis import Analysis
from .options import MAX_MEMORY_OPTION, MODEL_OPTIONS, bn_option, option_list
from .setup import Setup, progress_bar

MAXACT_OPTIONS = option_list(
    bn_option(per_sample=True),
    click.option("--layer", default=None, help="Module whose units to study (default: the one "
                                                "feeding the head)."),
    click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer."),
    click.option("--top-k", type=int, default=9, show_default=True, help="Dataset top examples per unit."),
    click.option("--restarts", type=int, default=16, show_default=True,
                  help="Random starts of gradient ascent per unit (the top-k start too)."),
    click.option("--steps", type=int, default=200, show_default=True, help="Ascent steps."),
    click.option("--lr", type=float, default=0.05, show_default=True,
                  help="Ascent step: a fraction of each feature's data range (box), of the "
                       "region's diameter (ball, data)."),
    click.option("--region", type=click.Choice(["data", "ball", "box"]), default="data",
                  show_default=True,
                  help="Where maxima are sought: data = convex combinations of a start's "
                       "--region-k nearest examples; ball = within --radius of the data mean; "
                       "box = each feature within its data range."),
    click.option("--region-k", type=int, default=16, show_default=True,
                  help="Nearest examples whose blends form the data region."),
    click.option("--radius", type=float, default=None,
                  help="Radius of the ball region (default: the largest distance of an "
                       "example to the data mean)."),
    click.option("--null", type=int, default=0, show_default=True,
                  help="Re-initialised copies of the architecture for z-scores."),
    click.option("--relate/--no-relate", default=False, show_default=True,
                  help="Add input-slice quasi-convexity and input-Hessian statistics per unit, "
                       "and their rank correlations with the metrics."),
    MAX_MEMORY_OPTION,
)


def _maxact_summary(ds) -> list[str]:
    def mean(name: str) -> str:
        return f"{float(ds[name].mean()):.3g}"

    line = (f"{ds.sizes['unit']} units of {ds.attrs['layer']}, maxima sought in the "
            f"{ds.attrs.get('region', 'box')} region: mean rho {mean('rho')}, "
            f"p_hit {mean('p_hit')}, n_maxima {mean('n_maxima')}, dist_to_data "
            f"{mean('dist_to_data')}, Moran's I {mean('morans_i')}")
    lines = [line]
    if "rho_z" in ds:
        lines.append(f"against {ds.attrs.get('null_models', '')} null model(s): mean z of rho "
                     f"{mean('rho_z')}, of Moran's I {mean('morans_i_z')}")
    return lines


def maxact_analysis(opts: dict):
    """Dataset top-k, gradient-ascent maxima and reliability metrics."""
    from ..maxact import maxact

    for name in ("units", "top_k", "restarts", "steps", "region_k"):
        if opts[name] < 1:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 1, got {opts[name]}")
    if opts["null"] < 0:
        raise LandscapeError(f"null: must be >= 0, got {opts['null']}")
    setup = Setup("maxact", opts)
    ds = maxact(setup.input_model, opts["layer"], opts["units"], setup.input_x, top_k=opts["top_k"],
                restarts=opts["restarts"], steps=opts["steps"], lr=opts["lr"],
                region=opts["region"], region_k=opts["region_k"], radius=opts["radius"],
                null_models=opts["null"], seed=opts["seed"],
                relation=opts["relate"], bn=opts["bn"], progress=progress_bar(),
                dataset=opts["dataset"], max_memory=opts["max_memory"])
    return ds, setup


ANALYSIS = Analysis("maxact", maxact_analysis, tuple(MODEL_OPTIONS + MAXACT_OPTIONS),
                    _maxact_summary, headlines=("rho", "p_hit", "n_maxima"), figure="maxact",
                    help=(
                    'Max-activating examples vs gradient-ascent maxima: how reliable is the '
                    "dataset's top example as a portrait of each unit?"))
