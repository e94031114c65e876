"""``landscape slice``: loss surfaces over parameters and units' responses over
their input, along random, filter-normalised, Hessian or PCA directions
(:func:`landscape.loss_slice`, :func:`landscape.input_slice`)."""

from __future__ import annotations

import click

from ..errors import LandscapeError
from .analysis import Analysis
from .options import LOSS_OPTIONS, MAX_MEMORY_OPTION, MODEL_OPTIONS, bn_option, option_list
from .setup import Setup, check_anchors, json_or_text, progress_bar

SLICE_OPTIONS = option_list(
    click.option("--space", type=click.Choice(["loss", "input", "both"]), default="both",
                  show_default=True, help="Slice the loss over parameters, units over their input, or both."),
    click.option("--directions", default=None,
                  help="random, filter, layer, hessian (loss space); random, pca (input space). "
                       "Applies to each space that has it. Default: filter / random."),
    click.option("--dims", type=click.IntRange(1, 2), default=None,
                  help="1 (curves) or 2 (surfaces). Default: 2 for the loss, 1 for the input."),
    click.option("--grid", default="-1:1:21", show_default=True, help="start:stop:num of alpha (and beta)."),
    click.option("--layer", default=None, help="Module whose units to slice (default: the one feeding "
                                                "the head)."),
    click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer."),
    click.option("--anchors", type=int, default=8, show_default=True,
                  help="Data points the input slices pass through."),
    click.option("--include-bias", is_flag=True, help="Give biases and norm layers a direction too."),
    click.option("--orthogonal", is_flag=True, help="Orthogonalise the loss-space directions."),
    bn_option(both_by_default=True),
    click.option("--engine", type=click.Choice(["auto", "vmap", "loop"]), default="auto",
                  show_default=True, help="How grid points of the loss slice are batched."),
    click.option("--batch-size", type=int, default=None,
                  help="Data batch size of the loss (default: up to 512) and of --bn recompute; grid "
                       "points per forward pass of the input slices (default: what memory allows)."),
    click.option("--tol", type=float, default=1e-3, show_default=True,
                  help="Relative tolerance of the convexity verdicts."),
    MAX_MEMORY_OPTION,
    click.option("--trajectory", type=click.Path(file_okay=False), default=None,
                  help="Folder of step_NNN.pt checkpoints (`landscape train --save-trajectory`): "
                       "--directions pca then slices the loss along its principal directions, centred "
                       "at its last checkpoint unless --checkpoint is given."),
    click.option("--scheduler", default=None,
                 help="Shard the grid points over Dask workers: local:N (N worker processes here) "
                      "or a scheduler's address (tcp://host:8786). Same result as one process."),
)


def _slice_summary(ds) -> list[str]:
    from ..results import BN_MEANINGS

    lines = []
    if "loss" in ds:
        modes = [str(m) for m in ds.bn.values] if "bn" in ds.loss.dims else [None]
        for mode in modes:
            loss = ds.loss if mode is None else ds.loss.sel(bn=mode)
            prefix = "loss_" if mode is None else f"loss_{mode}_"
            centre = loss.sel(alpha=0, method="nearest")
            if "beta" in loss.dims:
                centre = centre.sel(beta=0, method="nearest")
            used = mode or json_or_text(ds.attrs.get("bn", ""), "loss")
            named = ("no BatchNorm" if not int(ds.attrs.get("batch_norm_layers", 1))
                     else f"BatchNorm {used}: {BN_MEANINGS.get(used, used)}")
            lines.append(f"loss ({named}) at the centre {float(centre):.4g}, range "
                         f"[{float(loss.min()):.4g}, {float(loss.max()):.4g}]; quasi-convex "
                         f"{100 * ds.attrs[prefix + 'frac_quasi_convex']:.0f}% of lines, constant "
                         f"{100 * ds.attrs[prefix + 'frac_constant']:.0f}%")
    if "activation" in ds:
        lines.append(f"{ds.sizes['unit']} units x {ds.sizes['anchor']} anchors: quasi-convex "
                     f"{100 * ds.attrs['activation_frac_quasi_convex']:.0f}%, quasi-concave "
                     f"{100 * ds.attrs['activation_frac_quasi_concave']:.0f}%, either "
                     f"{100 * ds.attrs['activation_frac_either']:.0f}% of the curves that are not "
                     f"constant; constant {100 * ds.attrs['activation_frac_constant']:.0f}%")
    return lines


def slice_analysis(opts: dict):
    """Loss and/or input slices as the `slice` command's options say."""
    from ..directions import INPUT_DIRECTIONS, PARAMETER_DIRECTIONS
    from ..slicing import parse_grid, sharding

    parse_grid(opts["grid"])  # fail on a malformed grid before any work
    space, chosen = opts["space"], opts["directions"]
    spaces = ("loss", "input") if space == "both" else (space,)
    if chosen is not None:
        valid = [s for s in spaces if chosen in (PARAMETER_DIRECTIONS if s == "loss" else INPUT_DIRECTIONS)]
        if not valid:
            allowed = sorted(set(PARAMETER_DIRECTIONS if "loss" in spaces else ()) |
                             set(INPUT_DIRECTIONS if "input" in spaces else ()))
            raise LandscapeError(f"directions: unknown value {chosen!r} for --space {space}; "
                                 f"choose one of {', '.join(allowed)}")
    check_anchors(opts, "input" in spaces)
    trajectory = opts.get("trajectory")
    loss_pca = "loss" in spaces and chosen == "pca"
    if loss_pca and not trajectory:
        raise LandscapeError("directions: 'pca' in the loss space needs --trajectory DIR (checkpoints "
                             "written by `landscape train --save-trajectory`)")
    if trajectory and not loss_pca:
        raise LandscapeError("trajectory: --trajectory serves --directions pca with --space loss or both")
    if trajectory:
        from ..trajectory import trajectory_files

        if not opts["checkpoint"]:  # centre the slice at the trajectory's end
            opts = {**opts, "checkpoint": str(trajectory_files(trajectory)[-1])}
    if "input" in spaces:
        from ..view import check_per_sample

        check_per_sample(opts["bn"] or "auto", "the input space (use --space loss)")
    if opts["batch_size"] is not None and opts["batch_size"] < 1:
        raise LandscapeError(f"batch-size: must be >= 1, got {opts['batch_size']}")
    shards = sharding(opts.get("scheduler"))  # a malformed --scheduler fails here
    setup = Setup("slice", opts)
    # One choice of BatchNorm statistics for every part of the result; unless --bn is
    # given, the loss of a BatchNorm network also under batch statistics, side by side.
    if "loss" in spaces and getattr(setup.model, "no_loss", None):  # minilm
        raise LandscapeError(f"slice --space loss: {setup.model.no_loss}")
    bn = _resolve_bn(setup, opts["bn"] or "auto")
    loss_bn = bn
    if opts["bn"] is None and bn != "batch":
        from ..view import batch_norms

        loss_bn = (bn, "batch") if batch_norms(setup.model) else bn
    with shards as client:
        ds = _slices(opts, setup, bn, loss_bn, spaces, chosen, loss_pca, trajectory, client)
    if client is not None:
        ds.attrs["scheduler"] = str(opts["scheduler"])
    return ds, setup


def _slices(opts, setup, bn, loss_bn, spaces, chosen, loss_pca, trajectory, client):
    """The loss and/or input slices of :func:`slice_analysis`, merged."""
    import xarray as xr

    from ..directions import INPUT_DIRECTIONS, PARAMETER_DIRECTIONS
    from ..slicing import input_slice, loss_slice

    parts = []
    if "loss" in spaces:
        kind = chosen if chosen in PARAMETER_DIRECTIONS else "filter"
        dims = opts["dims"] or 2
        if loss_pca:
            from ..trajectory import load_trajectory, trajectory_dataset, trajectory_directions

            steps, states = load_trajectory(trajectory)
            pcs, projections = trajectory_directions(setup.model, states, n=dims)
            kind = pcs
        part = loss_slice(
            setup.model, setup.x, setup.y, directions=kind, dims=dims, grid=opts["grid"],
            include_bias=opts["include_bias"], orthogonal=opts["orthogonal"], bn=loss_bn,
            batch_size=opts["batch_size"], engine=opts["engine"], seed=opts["seed"], tol=opts["tol"],
            dataset=opts["dataset"], progress=progress_bar(), loss_fn=opts["loss"],
            max_memory=opts["max_memory"], scheduler=client,
            hessian_options={"batch_size": opts["batch_size"]} if kind == "hessian" else None)
        if loss_pca:
            part = part.merge(trajectory_dataset(setup.model, states, steps, pcs, projections))
            part.attrs["directions"] = "pca"
            part.attrs["trajectory"] = str(trajectory)
        parts.append(part)
    if "input" in spaces:
        kind = chosen if chosen in INPUT_DIRECTIONS else "random"
        n_anchor = opts["anchors"]
        parts.append(input_slice(
            setup.input_model, opts["layer"], opts["units"], setup.input_x[:n_anchor],
            directions=kind, dims=opts["dims"] or 1, grid=opts["grid"], data=setup.input_x,
            anchor_labels=None if setup.labels is None else setup.labels[:n_anchor],
            bn=bn, batch_size=opts["batch_size"], seed=opts["seed"], tol=opts["tol"],
            dataset=opts["dataset"], progress=progress_bar(), max_memory=opts["max_memory"],
            scheduler=client))
    return parts[0] if len(parts) == 1 else _merge_slices(parts, xr)


def _resolve_bn(setup, bn: str) -> str:
    from ..view import resolve_bn

    return resolve_bn(setup.model, bn)


def _merge_slices(parts, xr):
    """One Dataset holding the loss and input slices (same grid, so same alpha)."""
    attrs = dict(parts[0].attrs)
    merged = xr.merge(parts, compat="override", combine_attrs="drop")
    from ..results import config_of, to_json

    attrs["config"] = to_json({p.attrs["space"]: config_of(p) for p in parts})
    attrs.update({k: v for k, v in parts[1].attrs.items() if k not in attrs})
    attrs["space"] = "both"
    attrs["directions"] = to_json({p.attrs["space"]: p.attrs["directions"] for p in parts})
    modes = {p.attrs["space"]: p.attrs["bn"] for p in parts}
    # One mode for both parts stays one word; the loss under several modes names each part's.
    attrs["bn"] = modes["loss"] if len(set(modes.values())) == 1 else to_json(modes)
    merged.attrs = attrs
    return merged


ANALYSIS = Analysis("slice", slice_analysis, tuple(MODEL_OPTIONS + LOSS_OPTIONS + SLICE_OPTIONS),
                    _slice_summary,
                    headlines=("loss_frac_*", "loss_*_frac_*", "activation_frac_*"), figure="slice",
                    help=(
                    "Slice the loss surface and units' input-response surfaces; score their "
                    'quasi-convexity.'))
