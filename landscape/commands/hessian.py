"""``landscape hessian``: the loss Hessian's extreme eigenvalues, spectral density
and trace, or a unit's input Hessian (:func:`landscape.hessian_spectrum`)."""

from __future__ import annotations

import click
import numpy as np

from ..errors import LandscapeError
from .analysis import Analysis
from .options import LOSS_OPTIONS, MAX_MEMORY_OPTION, MODEL_OPTIONS, bn_option, option_list
from .setup import Setup, check_anchors, progress_bar

HESSIAN_OPTIONS = option_list(
    click.option("--space", type=click.Choice(["loss", "input"]), default="loss", show_default=True,
                  help="Curvature of the loss over parameters, or of units over their input."),
    click.option("--top-k", type=int, default=5, show_default=True, help="Largest eigenvalues."),
    click.option("--bottom-k", type=int, default=0, show_default=True, help="Smallest eigenvalues."),
    click.option("--density", is_flag=True, help="Spectral density by stochastic Lanczos quadrature."),
    click.option("--trace", is_flag=True, help="Trace by Hutch++, with its standard error."),
    click.option("--tol", type=float, default=1e-4, show_default=True,
                  help="Relative residual at which an eigenpair has converged."),
    click.option("--method", type=click.Choice(["auto", "dense", "lanczos"]), default="auto",
                 show_default=True, help="dense: exact, from the whole Hessian and eigh; lanczos: "
                 "Lanczos, SLQ, Hutch++; auto: dense below the crossover in cost."),
    click.option("--max-steps", type=int, default=None, help="Cap on Lanczos steps (HVPs)."),
    click.option("--density-runs", type=int, default=8, show_default=True),
    click.option("--density-steps", type=int, default=80, show_default=True),
    click.option("--trace-probes", type=int, default=99, show_default=True),
    click.option("--zero-tol", type=float, default=0.03, show_default=True,
                 help="Half-width of the zero mass, as a fraction of the spectral range."),
    click.option("--block-size", type=int, default=None,
                 help="Lanczos block, fixed [2, widened where a converged cluster may hide "
                 "copies of a wanted eigenvalue]."),
    MAX_MEMORY_OPTION,
    click.option("--engine", type=click.Choice(["auto", "double-backward", "forward-over-reverse"]),
                  default="auto", show_default=True, help="How Hessian-vector products are taken."),
    bn_option(),
    click.option("--batch-size", type=int, default=None,
                  help="Data batch size of the loss (loss space) and of --bn recompute."),
    click.option("--layer", default=None, help="Module whose units to take (input space)."),
    click.option("--units", type=int, default=8, show_default=True, help="First N units (input space)."),
    click.option("--anchors", type=int, default=4, show_default=True,
                  help="Data points at which each unit's input Hessian is taken (input space)."),
)


def _hessian_summary(ds) -> list[str]:
    eig = ds["eigenvalue"]
    if ds.attrs["kind"] == "input_hessian":
        top = eig.where(eig.which == "top").max("eig").mean("anchor")
        return [f"{ds.sizes['unit']} units x {ds.sizes['anchor']} anchors: mean top eigenvalue "
                f"{float(top.mean()):.4g}; {int(ds.attrs.get('n_hvp', 0))} Hessian-vector products"]
    lines = []
    if eig.size:
        values = ", ".join(f"{v:.4g}" for v in eig.values)
        lines.append(f"eigenvalues ({', '.join(str(w) for w in eig.which.values)}): {values}")
        unconverged = ~ds["converged"].values.astype(bool)
        if unconverged.any():
            worst = float(np.max(ds["residual"].values[unconverged]
                                 / np.abs(eig.values[unconverged]).clip(1e-300)))
            lines.append(f"not converged: {int(unconverged.sum())} of {eig.size} eigenvalues "
                         f"(relative residual up to {worst:.2g}); raise --max-steps, or "
                         f"--max-memory for a larger basis")
    if np.isfinite(float(ds["trace"])):
        lines.append(f"trace {float(ds['trace']):.4g} ± {float(ds['trace_stderr']):.2g}")
    if np.isfinite(float(ds["negative_mass"])):
        lines.append(f"mass below/within/above ±{ds.attrs['zero_eps']:.3g}: "
                     + " / ".join(f"{float(ds[n]):.4f}"
                                  for n in ("negative_mass", "zero_mass", "positive_mass")))
    exact = " (dense Hessian: exact values)" if ds.attrs.get("method") == "dense" else ""
    lines.append(f"{int(ds.attrs.get('n_hvp', 0))} Hessian-vector products{exact}")
    return lines


def hessian_analysis(opts: dict):
    """Loss or input Hessian spectrum as the `hessian` command's options say."""
    from ..hessian import hessian_spectrum, input_hessian_spectrum

    for key in ("top_k", "bottom_k"):
        if opts[key] < 0:
            raise LandscapeError(f"{key.replace('_', '-')}: must be >= 0, got {opts[key]}")
    if opts["top_k"] + opts["bottom_k"] == 0 and not opts["density"] and not opts["trace"]:
        raise LandscapeError("nothing to compute: give --top-k/--bottom-k > 0, --density or --trace")
    check_anchors(opts, opts["space"] == "input")
    if opts["space"] == "input":
        from ..view import check_per_sample

        check_per_sample(opts["bn"], "the input space (use --space loss)")
    if opts["batch_size"] is not None and opts["batch_size"] < 1:
        raise LandscapeError(f"batch-size: must be >= 1, got {opts['batch_size']}")
    setup = Setup("hessian", opts)
    if opts["space"] == "loss" and getattr(setup.model, "no_loss", None):  # minilm
        raise LandscapeError(f"hessian --space loss: {setup.model.no_loss}")
    common = dict(top_k=opts["top_k"], bottom_k=opts["bottom_k"], density=opts["density"],
                  trace=opts["trace"], tol=opts["tol"], max_steps=opts["max_steps"],
                  engine=opts["engine"], density_runs=opts["density_runs"],
                  density_steps=opts["density_steps"], trace_probes=opts["trace_probes"],
                  zero_tol=opts["zero_tol"], block_size=opts["block_size"],
                  max_memory=opts["max_memory"], seed=opts["seed"], dataset=opts["dataset"],
                  method=opts["method"])
    if opts["space"] == "loss":
        ds = hessian_spectrum(setup.model, setup.x, setup.y, batch_size=opts["batch_size"],
                              bn=opts["bn"], loss_fn=opts["loss"], progress=progress_bar("hvp"),
                              **common)
    else:
        ds = input_hessian_spectrum(setup.input_model, opts["layer"], opts["units"],
                                    setup.input_x[:opts["anchors"]], progress=progress_bar("op"),
                                    bn=opts["bn"], data=setup.input_x, batch_size=opts["batch_size"],
                                    **common)
    return ds, setup


ANALYSIS = Analysis("hessian", hessian_analysis,
                    tuple(MODEL_OPTIONS + LOSS_OPTIONS + HESSIAN_OPTIONS), _hessian_summary,
                    headlines=("negative_mass", "top_eigenvalue"), figure="hessian",
                    kinds=("hessian", "input_hessian"),
                    help=(
                    'Hessian spectrum: top/bottom eigenvalues, density, trace and negative '
                    'mass.'))
