"""Commands for experiments over many networks: ``train``, ``sweep`` and ``compare``.

:mod:`landscape.cli` adds them to the ``landscape`` group; they follow its conventions (one error line,
progress on stderr, the last stdout line names the file written) and call the
API in :mod:`landscape.train`, :mod:`landscape.sweep` and :mod:`landscape.plot`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from .analyses import (
    LOSS_OPTIONS,
    MODEL_OPTIONS,
    check_labels,
    check_output,
    input_shape,
    model_from_options,
    pick_device,
    progress_bar,
    resolve_recipe,
    safe_name,
    with_options,
)
from .errors import LandscapeError
from .losses import loss_name
from .sweep import SWEEP_DIMS

TRAIN_SKIP = ("split", "out", "samples", "threads")  # train has its own --threads
# What `train` uses when neither the command line nor the model
# (``model.train_defaults``, e.g. the transformer's) says otherwise.
TRAIN_DEFAULTS = {"epochs": 10, "optimizer": "sgd", "lr": None, "weight_decay": 0.0,
                  "schedule": "constant", "warmup": 0, "clip": None, "batch_size": 64,
                  "samples": None, "test_samples": None}


# The model options of every analysis without --split, --out, --samples (training
# takes the train split and tests on the test split).
TRAIN_MODEL_OPTIONS = [p for p in MODEL_OPTIONS if p.name not in TRAIN_SKIP] + LOSS_OPTIONS


# ----------------------------------------------------------------------------- train

def _checkpoint_path(out: str | None, overwrite: bool, model: str, init: str) -> Path:
    path = Path(out) if out else Path(f"{safe_name(model)}_{safe_name(init)}.pt")
    return check_output(path, ".pt", overwrite)


def _trajectory_folder(folder: str | None, out: Path, overwrite: bool) -> Path:
    path = Path(folder) if folder else out.with_name(f"{out.stem}_trajectory")
    if path.exists() and not path.is_dir():
        raise LandscapeError(f"trajectory-dir: {str(path)!r} is not a folder")
    old = sorted(path.glob("step_*.pt")) if path.is_dir() else []
    if old and not overwrite:
        raise LandscapeError(f"trajectory-dir: {str(path)!r} already holds checkpoints; choose "
                             "another --trajectory-dir or pass --overwrite")
    from .validate import check_folder_writable

    return check_folder_writable(path, "trajectory-dir")


def _load_split(opts: dict, split: str, key: str, given: bool, common: dict):
    """One split with ``opts[key]`` samples; a model's default count is a cap (a
    small corpus is used whole), a count given on the command line is exact."""
    import torch

    from .data import load_dataset, subset_index

    n = opts[key]
    if given or n is None:
        return load_dataset(opts["dataset"], n=n, split=split, **common)
    x, y = load_dataset(opts["dataset"], split=split, **common)
    if n < len(x):
        idx = torch.from_numpy(subset_index(len(x), n, opts["seed"]))
        x, y = x[idx], None if y is None else y[idx]
    return x, y


@click.command("train")
@with_options(TRAIN_MODEL_OPTIONS)
@click.option("--samples", type=int, default=None,
              help="Deterministic subset of the training split (default: all of it; the "
                   "transformer's: 96 000 windows).")
@click.option("--test-samples", type=int, default=None,
              help="Deterministic subset of the test split (default: all of it; the "
                   "transformer's: 1024 windows).")
@click.option("--epochs", type=int, default=None,
              help="Passes over the data (default 10; the transformer's: 1).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default=None,
              help="SGD with momentum, Adam, or AdamW (default sgd; the transformer's: adamw).")
@click.option("--lr", type=float, default=None,
              help="Learning rate (default: 0.05 SGD, 1e-3 Adam/AdamW; the transformer's: 3e-3).")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=float, default=None,
              help="L2 penalty, decoupled for AdamW (default 0; the transformer's: 0.1).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default=None,
              help="Learning rate after the warm-up (default constant; the transformer's: cosine).")
@click.option("--warmup", type=int, default=None,
              help="Steps of linear learning-rate warm-up (default 0; the transformer's: 100).")
@click.option("--clip", type=float, default=None,
              help="Clip the gradient's global norm (default: no clipping; the transformer's: 1).")
@click.option("--batch-size", type=int, default=None,
              help="Mini-batch size (default 64; the transformer's: 32).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to write (.pt; default MODEL_INIT.pt).")
@click.option("--save-trajectory", is_flag=True,
              help="Also keep checkpoints along the way (for `slice --directions pca`).")
@click.option("--trajectory-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the step_NNN.pt checkpoints (default: <out stem>_trajectory/).")
@click.option("--trajectory-every", type=int, default=None,
              help="Optimiser steps between trajectory checkpoints (default: about 20 in all).")
@click.option("--threads", type=int, default=None,
              help="Torch threads (default: the cores this process may use); kept in the "
                   "checkpoint's metadata.")
def train_command(**opts) -> None:
    """Train a model (seeded SGD, Adam or AdamW) and save a checkpoint with its
    metadata, which `--checkpoint` of every analysis loads.  A sequence model
    (the transformer) prints its held-out loss in bits per byte beside the
    unigram baseline.  On CUDA, training uses deterministic algorithms, so the
    same seed gives the same weights."""
    from .analyses import default_dataset
    from .data import unigram_bits
    from .memory import use_threads
    from .models import load_checkpoint, read_checkpoint
    from .train import CUBLAS_DETERMINISTIC, save_checkpoint, train
    from .validate import probe_model

    resolve_recipe(opts, read_checkpoint(opts["checkpoint"])[1] if opts["checkpoint"] else {})
    out = _checkpoint_path(opts["out"], opts["overwrite"], opts["model_name"], opts["init"])
    folder = (_trajectory_folder(opts["trajectory_dir"], out, opts["overwrite"])
              if opts["save_trajectory"] else None)
    threads = use_threads(opts["threads"])
    device = pick_device(opts["device"])
    if device.type == "cuda":  # before cuBLAS starts: it reads the setting once
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    model = model_from_options(opts)
    from .models.minilm import refuse_without_loss

    refuse_without_loss(model, "train")
    opts["dataset"] = default_dataset(model, opts["dataset"])
    given = {key for key in TRAIN_DEFAULTS if opts.get(key) is not None}
    for key, value in {**TRAIN_DEFAULTS, **getattr(model, "train_defaults", {})}.items():
        if opts.get(key) is None:
            opts[key] = value
    if opts["checkpoint"]:
        load_checkpoint(model, opts["checkpoint"])
    model = model.to(device)
    common = dict(root=opts["data_root"], seed=opts["seed"], in_shape=input_shape(model, opts),
                  download=opts["download"])
    x, y = _load_split(opts, "train", "samples", "samples" in given, common)
    x_test, y_test = _load_split(opts, "test", "test_samples", "test_samples" in given, common)
    check_labels(model, y, y_test, opts["dataset"])
    probe_model(model, x[:2].to(device), y, opts["dataset"], opts["loss"])
    labels = getattr(model, "task", "classify") != "reconstruct"
    every = opts["trajectory_every"]
    if opts["save_trajectory"] and every is None:
        steps = opts["epochs"] * -(-x.shape[0] // max(1, opts["batch_size"]))
        every = max(1, steps // 20)
    history, snapshots = train(
        model, x.to(device), y.to(device) if labels and y is not None else None, x_test.to(device),
        y_test.to(device) if labels and y_test is not None else None, epochs=opts["epochs"],
        optimizer=opts["optimizer"],
        lr=opts["lr"], batch_size=opts["batch_size"], seed=opts["seed"], momentum=opts["momentum"],
        weight_decay=opts["weight_decay"], schedule=opts["schedule"], warmup=opts["warmup"],
        clip=opts["clip"], progress=progress_bar("step"), loss_fn=opts["loss"],
        trajectory_every=every if opts["save_trajectory"] else None)
    sequence = y is not None and y.dim() > 1  # next-token targets: report bits per byte
    bits = [loss / math.log(2) for loss in history["test_loss"]]
    meta = {
        "model": opts["model_name"], "dataset": opts["dataset"], "init": opts["init"],
        "bias_scale": opts["bias_scale"], "seed": opts["seed"], "epochs": opts["epochs"],
        "test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
        "train_loss": history["train_loss"][-1], "width": opts["width"], "depth": opts["depth"],
        "activation": opts["activation"],
        # A token model's input shape is its context, not an option.
        "in_shape": list(model.in_shape) if len(getattr(model, "in_shape", ())) == 3 else None,
        "model_args": opts["model_args"], "model_sha256": getattr(model, "model_sha256", None),
        "weight_std": opts["weight_std"], "optimizer": opts["optimizer"], "lr": opts["lr"],
        "batch_size": opts["batch_size"], "steps": history["steps"],
        "history": {k: history[k] for k in ("train_loss", "test_loss", "test_accuracy")},
        "samples": int(x.shape[0]), "test_samples": int(x_test.shape[0]),
        "loss": loss_name(opts["loss"], model),
        "position": opts["position"], "schedule": opts["schedule"], "warmup": opts["warmup"],
        "clip": opts["clip"], "weight_decay": opts["weight_decay"],
        "threads": threads, "device": str(device),
    }
    for key in ("width", "depth", "heads", "context", "tied"):  # the transformer's own shape
        meta[key] = getattr(model, key, opts.get(key))
    if sequence:
        meta["unigram_bits_per_byte"] = unigram_bits(x, x_test)
        meta["test_bits_per_byte"] = bits[-1]
    if folder is not None:
        from .train import save_checkpoint as save_step

        folder.mkdir(parents=True, exist_ok=True)
        # Checkpoints of an earlier run, and temporary files a killed one left behind.
        for old in [*folder.glob("step_*.pt"), *folder.glob(".step_*.pt.*.tmp")]:
            old.unlink()
        for step, state in zip(history["snapshot_steps"], snapshots):
            save_step(folder / f"step_{step:03d}.pt", state, {**meta, "step": step})
    for epoch, (tr, te, acc) in enumerate(zip(history["train_loss"], history["test_loss"],
                                              history["test_accuracy"]), 1):
        extra = f" ({bits[epoch - 1]:.3f} bits/byte)" if sequence else ""
        click.echo(f"epoch {epoch}: train loss {tr:.4f}, test loss {te:.4f}{extra}, "
                   f"test accuracy {acc:.3f}")
    if sequence:
        base = meta["unigram_bits_per_byte"]
        click.echo(f"held-out {bits[-1]:.3f} bits/byte; unigram baseline {base:.3f} bits/byte "
                   f"({100 * (1 - bits[-1] / base):.1f}% below)")
    if folder is not None:
        click.echo(f"trajectory: {len(snapshots)} checkpoints in {folder}")
    click.echo(str(save_checkpoint(out, model, meta)))


# ----------------------------------------------------------------------------- sweep

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
    from .results import save, to_json
    from .sweep import combine, expand_tasks, local_plan, parse_list, parse_seeds, run_tasks

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
    tasks = expand_tasks(analysis, model_list, init_list, bias_list, seed_list, folder,
                         states=state_list, trained=trained, args=list(ctx.args), threads=threads)
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
    from .results import load
    from .sweep import combine, compare_table

    ds = load(files[0]) if len(files) == 1 else None
    if ds is None or ds.attrs["kind"] != "sweep":
        ds = combine(list(files))
    for line in compare_table(ds, by):
        click.echo(line)
    if out_dir is not None:
        from .plot.sweeps import plot_sweep

        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise LandscapeError(f"out: {str(out)!r} is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        for path in plot_sweep(ds, out, "compare", by=by):
            click.echo(str(path))
