"""``landscape sweep`` and ``landscape compare``: one analysis at every point of
model x init x bias scale x seed x state on Dask (:mod:`landscape.sweep`), and
the headline numbers of the combined result as tables and figures
(:mod:`landscape.summary`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import LandscapeError
from ..summary import SWEEP_DIMS
from .setup import progress_bar


@click.command("sweep", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("analysis")
@click.option("--model", "models", default="mlp", show_default=True, help="Models, comma separated.")
@click.option("--init", "inits", default="xavier", show_default=True, help="Inits, comma separated.")
@click.option("--bias-scale", "bias_scales", required=True,
              help="Bias scales, comma separated (0,0.1,1).")
@click.option("--seeds", default="0", show_default=True, help="Seeds: 0-4 or 0,3,7.")
@click.option("--trained", default=None,
              help="Checkpoint of the trained state, or a template filled per task with {model}, "
                   "{init}, {bias_scale}, {seed} (e.g. ckpt/{model}_{init}_s{seed}.pt).")
@click.option("--states", default=None,
              help="random and/or trained, comma separated (default: both with --trained, else random).")
@click.option("--workers", type=int, default=None,
              help="Worker processes of the local cluster (default: one per visible GPU when the "
                   "tasks run on CUDA, each pinned to its GPU; else one per CPU core).")
@click.option("--scheduler", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786) instead of a local cluster.")
@click.option("--threads", type=int, default=None,
              help="Torch threads per task (default: the cores this process may use / workers; "
                   "recorded in each result's 'threads').")
@click.option("--out-dir", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder of the per-task files (DIR/ANALYSIS/) and the combined result.")
@click.pass_context
def sweep_command(ctx: click.Context, analysis: str, models: str, inits: str, bias_scales: str,
                  seeds: str, trained: str | None, states: str | None, workers: int | None,
                  scheduler: str | None, threads: int | None, out_dir: str) -> int:
    """Run ANALYSIS (slice, ...) at every point of model x init x bias scale x seed x
    state on Dask; every other option (--grid, --samples, --dataset, ...) goes to
    each task.  Finished tasks are skipped when run again; the parts combine into
    one file, named on the last line."""
    from ..results import save, to_json
    from ..sweep import (
        check_pass_through,
        combine,
        expand_tasks,
        local_plan,
        parse_list,
        parse_seeds,
        run_tasks,
    )
    from .registry import ANALYSES

    model_list = parse_list(models, str, "model")
    init_list = parse_list(inits, str, "init")
    bias_list = parse_list(bias_scales, float, "bias-scale")
    seed_list = parse_seeds(seeds)
    state_list = parse_list(states, str, "states") if states else (
        ["random", "trained"] if trained else ["random"])
    if workers is not None and workers < 1:
        raise LandscapeError(f"workers: must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise LandscapeError(f"threads: must be >= 1, got {threads}")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise LandscapeError(f"out-dir: {str(folder)!r} is not a folder")
    # The options every task shares, parsed here once; each point sets its own.
    if analysis not in ANALYSES:
        raise LandscapeError(f"sweep: unknown analysis {analysis!r}; choose one of "
                             f"{', '.join(sorted(ANALYSES))}")
    shared = ANALYSES[analysis].parse(check_pass_through(ctx.args), prog=f"sweep {analysis}")
    tasks = expand_tasks(analysis, model_list, init_list, bias_list, seed_list, folder,
                         states=state_list, trained=trained, options=shared, threads=threads)
    plan = None if scheduler else local_plan(tasks, workers, threads)
    for task in tasks if plan else ():
        task.threads = plan[0].threads
    folder.mkdir(parents=True, exist_ok=True)
    outcome = run_tasks(tasks, scheduler=scheduler, progress=progress_bar("task"), plan=plan)
    done = outcome.succeeded
    errors = set(outcome.failures.values())
    if not done and len(errors) == 1:  # one cause (a bad option, say): one line
        raise LandscapeError(f"every task failed: {errors.pop()}")
    for label, error in sorted(outcome.failures.items()):
        click.echo(f"landscape: task {label} failed: {error}", err=True)
    if not done:
        raise LandscapeError(f"all {len(tasks)} tasks failed (see the lines above)")
    records = [{"model": t.model, "init": t.init, "bias_scale": t.bias_scale, "seed": t.seed,
                "state": t.state, "file": str(Path(t.path).relative_to(folder)),
                "status": "failed" if t.label in outcome.failures else "ok"} for t in tasks]
    combined = combine([t.path for t in done], tasks=records, failures=outcome.failures,
                       analysis=analysis)
    combined.attrs["config"] = to_json({
        "analysis": analysis, "model": model_list, "init": init_list, "bias_scale": bias_list,
        "seeds": seed_list, "states": state_list, "trained": trained, "args": list(ctx.args)})
    path = save(combined, folder / f"{analysis}_sweep.nc", overwrite=True)
    click.echo(f"{len(tasks)} tasks: {len(outcome.ran) - len(outcome.failures)} ran, "
               f"{len(outcome.skipped)} done before, {len(outcome.failures)} failed")
    click.echo(str(path))
    return 1 if outcome.failures else 0


# ----------------------------------------------------------------------------- compare

@click.command("compare")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--by", type=click.Choice(SWEEP_DIMS), default="bias_scale", show_default=True,
              help="Sweep dimension whose values are the table's columns.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for a comparison figure.")
def compare_command(files: tuple[str, ...], by: str, out_dir: str | None) -> None:
    """Headline numbers (fractions of quasi-convex/concave curves, Hessian negative
    mass and top eigenvalue) of a sweep, or of several results combined like one,
    by --by: mean ± std over seeds."""
    from ..results import load
    from ..summary import compare_table
    from ..sweep import combine

    ds = load(files[0]) if len(files) == 1 else None
    if ds is None or ds.attrs["kind"] != "sweep":
        ds = combine(list(files))
    for line in compare_table(ds, by):
        click.echo(line)
    if out_dir is not None:
        from ..plot.sweeps import plot_sweep

        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise LandscapeError(f"out: {str(out)!r} is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        for path in plot_sweep(ds, out, "compare", by=by):
            click.echo(str(path))
