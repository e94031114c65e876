"""``landscape train``: a seeded training run of any model, saved as a
checkpoint with the meta of how it was drawn and trained, which ``--checkpoint``
of every analysis loads (:func:`landscape.train.train`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from ..errors import LandscapeError
from ..losses import loss_name
from ..validate import check_labels
from .options import LOSS_OPTIONS, MODEL_OPTIONS, with_options
from .setup import Setup, input_shape, pick_device, progress_bar

TRAIN_SKIP = ("split", "out", "samples", "threads")  # train has its own --threads
# What `train` uses when neither the command line nor the model
# (``model.train_defaults``, e.g. the transformer's) says otherwise.
TRAIN_DEFAULTS = {"epochs": 10, "optimizer": "sgd", "lr": None, "weight_decay": 0.0,
                  "schedule": "constant", "warmup": 0, "clip": None, "batch_size": 64,
                  "samples": None, "test_samples": None}


# The model options of every analysis without --split, --out, --samples (training
# takes the train split and tests on the test split).
TRAIN_MODEL_OPTIONS = [p for p in MODEL_OPTIONS if p.name not in TRAIN_SKIP] + LOSS_OPTIONS


def _trajectory_folder(folder: str | None, out: Path, overwrite: bool) -> Path:
    path = Path(folder) if folder else out.with_name(f"{out.stem}_trajectory")
    if path.exists() and not path.is_dir():
        raise LandscapeError(f"trajectory-dir: {str(path)!r} is not a folder")
    old = sorted(path.glob("step_*.pt")) if path.is_dir() else []
    if old and not overwrite:
        raise LandscapeError(f"trajectory-dir: {str(path)!r} already holds checkpoints; choose "
                             "another --trajectory-dir or pass --overwrite")
    from ..validate import check_folder_writable

    return check_folder_writable(path, "trajectory-dir")


def _load_split(opts: dict, split: str, key: str, given: bool, common: dict):
    """One split with ``opts[key]`` samples; a model's default count is a cap (a
    small corpus is used whole), a count given on the command line is exact."""
    import torch

    from ..data import load_dataset, subset_index

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
    from ..data import unigram_bits
    from ..memory import use_threads
    from ..models.minilm import refuse_without_loss
    from ..train import CUBLAS_DETERMINISTIC, save_checkpoint, train
    from ..validate import probe_model

    if pick_device(opts["device"]).type == "cuda":  # before cuBLAS starts: it reads this once
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    threads = use_threads(opts["threads"])
    setup = Setup("train", opts, load_data=False, suffix=".pt", stamp=False)
    model, device, out = setup.model, setup.device, setup.out
    folder = (_trajectory_folder(opts["trajectory_dir"], out, opts["overwrite"])
              if opts["save_trajectory"] else None)
    refuse_without_loss(model, "train")
    given = {key for key in TRAIN_DEFAULTS if opts.get(key) is not None}
    for key, value in {**TRAIN_DEFAULTS, **getattr(model, "train_defaults", {})}.items():
        if opts.get(key) is None:
            opts[key] = value
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
        from ..train import save_checkpoint as save_step

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
