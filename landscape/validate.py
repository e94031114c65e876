"""Checks of what the user gives, made before any work: the values in the data,
labels against the model's outputs, a forward pass on the data's shape, output
folders that can be written, and files read with ``torch.load``.

Each check raises :class:`~landscape.errors.LandscapeError` with one line that
names the option, the value received and what was expected, so that "internal
error" stays reserved for our own bugs.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

from .errors import LandscapeError

# --seed: what numpy's and torch's generators, and scikit-learn's, all accept.
SEED_MAX = 2**32 - 1
THREADS_HELP = ("Torch threads (default: the cores this process may use, at most OMP_NUM_THREADS); "
                "recorded in the result's 'threads': with the seed, they decide the result.")


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (``sys.exit(N)`` for SystemExit)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------- data

def check_finite(array, dataset: str, name: str) -> None:
    """Refuse a floating array with NaN or inf, naming how many rows (samples) hold one."""
    import numpy as np
    import torch

    if isinstance(array, torch.Tensor):
        if not array.is_floating_point():
            return
        bad_rows = ~torch.isfinite(array.reshape(len(array), -1)).all(dim=1)
        bad = int(bad_rows.sum())
    else:
        if array.dtype.kind not in "fc":
            return
        bad = int((~np.isfinite(array.reshape(len(array), -1)).all(axis=1)).sum())
    if bad:
        raise LandscapeError(f"dataset {dataset}: {bad} of {len(array)} rows of {name!r} hold NaN "
                             "or inf; remove or repair them")


def check_labels(model, *labels) -> None:
    """Refuse class labels beyond a registered classifier's classes."""
    *ys, dataset = labels
    classes = getattr(model, "num_classes", None)
    if classes is None or getattr(model, "task", "classify") != "classify":
        return
    top = max((int(y.max()) for y in ys if y is not None and y.numel() and not y.is_floating_point()),
              default=-1)
    if top >= classes:
        raise LandscapeError(f"dataset {dataset!r} has labels up to {top} but the model has "
                             f"{classes} classes")


def probe_model(model, x, y, dataset: str, loss: str | None = None) -> None:
    """One forward pass on two samples (eval mode, no gradient; the model's flags are
    restored): a model that cannot read the data, or labels beyond its outputs, are
    refused now and in the user's words."""
    import torch

    name = getattr(model, "name", "?")
    shape = tuple(x.shape[1:])
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            output = model(x[:2])
    except (Exception, SystemExit) as exc:
        if not torch.is_floating_point(x) and not hasattr(model, "input_view"):
            raise LandscapeError(
                f"--dataset {dataset!r} holds integer x (token ids) of shape {shape}, which "
                f"--model {name!r} cannot read ({first_line(exc)}); store images as floats"
            ) from None
        raise LandscapeError(
            f"--model {name!r} cannot read --dataset {dataset!r}: its forward pass fails on "
            f"inputs of shape {shape} ({first_line(exc)}); check --in-shape, --model and "
            "--dataset") from None
    finally:
        for module, flag in flags:
            module.training = flag
    if getattr(model, "task", "classify") == "reconstruct" or y is None or \
            not isinstance(output, torch.Tensor):
        return
    indices = (not y.is_floating_point() and output.dim() >= 1 and output.shape[-1] > 1
               and tuple(y.shape[1:]) == tuple(output.shape[1:-1]))
    if not indices and loss not in ("cross-entropy", "nll"):
        return  # targets, not class indices
    if y.is_floating_point() or not y.numel():
        return
    low, top, outputs = int(y.min()), int(y.max()), int(output.shape[-1])
    if low < 0:
        raise LandscapeError(f"--dataset {dataset!r} has a negative label ({low}); labels are "
                             f"class indices 0..{outputs - 1} of --model {name!r}'s outputs")
    if top >= outputs:
        raise LandscapeError(f"--dataset {dataset!r} has labels up to {top} but --model {name!r} "
                             f"has {outputs} outputs (classes 0..{outputs - 1}), for every --loss")


# ----------------------------------------------------------------------------- files

def check_folder_writable(folder, what: str = "out") -> Path:
    """``folder`` if a file can be created in it, or in the nearest folder above it
    that exists (where it would be made); tried by creating a file, so that a
    read-only file system is caught whoever runs."""
    folder = Path(folder) if str(folder) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LandscapeError(f"{what}: {str(existing)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".landscape-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LandscapeError(f"{what}: folder {str(existing)!r} is not writable "
                             f"({exc.strerror or type(exc).__name__})") from None
    return folder


def torch_load(path, failure: str):
    """``torch.load(path, weights_only=True)`` that fails in one line of ours: no
    warning printed, and never PyTorch's advice to load without ``weights_only``
    (that runs arbitrary code from an untrusted file).  ``failure`` starts the line."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            reason = (f"it holds an object of type {found.group(1)}, which is not loaded from an "
                      "untrusted file; save tensors only (a state dict)")
        elif "weights_only" in text or "Weights only" in text:
            reason = "it holds objects other than tensors; save tensors only (a state dict)"
        else:
            reason = f"not a file written by torch.save ({type(exc).__name__})"
        raise LandscapeError(f"{failure}: {reason}") from None
