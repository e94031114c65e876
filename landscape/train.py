"""A plain, seeded training loop and checkpoints that carry their metadata.

:func:`train` runs mini-batch SGD (with momentum), Adam or AdamW on ``(x, y)``
for a number of epochs, measures the held-out loss and accuracy after each epoch
and can keep snapshots of the weights along the way: the optimisation trajectory
whose principal components :mod:`landscape.trajectory` turns into slice
directions (Li et al., *Visualizing the Loss Landscape of Neural Nets*,
NeurIPS 2018, Sec. 7).  It prints nothing and writes no file.

:func:`save_checkpoint` writes ``{"state_dict": ..., "meta": {...}}`` atomically,
the format :func:`landscape.models.load_checkpoint` reads.

Sequence models train the same way: ``x`` holds token windows ``(N, T)`` and
``y`` the next token at every position, the loss is the mean cross-entropy over
all positions and the accuracy the fraction of positions right
(:class:`landscape.losses.Objective`).  For them AdamW (decoupled weight
decay on matrices and embedding tables only, not on biases or LayerNorms), a
linear warm-up and a cosine decay of the learning rate, and gradient-norm
clipping are the usual recipe (``optimizer="adamw"``, ``schedule="cosine"``,
``warmup``, ``clip``).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ._heap import reusing_freed_memory
from .errors import LandscapeError, check_choice
from .losses import LossFn, Objective
from .models import eval_mode
from .results import atomic_write

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
EVAL_BATCH = 1024
EVAL_TOKENS = 65536  # positions per evaluation batch of a sequence model
FINAL_LR_FRACTION = 0.1  # the cosine schedule ends at this fraction of lr


def lr_factor(step: int, total: int, warmup: int = 0, schedule: str = "constant") -> float:
    """Learning-rate multiplier of optimiser step ``step`` (0-based) of ``total``:
    linear warm-up over ``warmup`` steps, then constant, or a cosine from 1 down to
    ``FINAL_LR_FRACTION`` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - 1 - warmup)
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# cuBLAS needs a fixed workspace to reduce in a fixed order (PyTorch's reproducibility notes).
CUBLAS_DETERMINISTIC = ":4096:8"


@contextmanager
def deterministic(device) -> None:
    """On a CUDA ``device``: deterministic algorithms for the duration
    (``torch.use_deterministic_algorithms`` with ``warn_only``, cuDNN without
    benchmarking) and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless already set; the
    previous settings come back afterwards.  Elsewhere: nothing.

    Operations with no deterministic CUDA kernel (``adaptive_avg_pool2d``'s
    backward, which ResNets use, among them) still run, with a warning naming
    them.  cuBLAS reads its workspace setting when it first starts in a process:
    set the variable before any CUDA work for bit-identical runs.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.benchmark,
              cudnn.deterministic)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.benchmark, cudnn.deterministic = before[2], before[3]


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
             batch_size: int = EVAL_BATCH,
             loss_fn: str | LossFn | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode (accuracy per
    label, so per token for sequences; NaN when the outputs do not score labels,
    as for an autoencoder).  The sums stay on the device; host and device
    synchronise once, at the end."""
    objective = Objective(model, loss_fn)
    if x.dim() == 2 and not x.dtype.is_floating_point:  # token windows: bound the positions
        batch_size = max(1, min(batch_size, EVAL_TOKENS // max(1, x.shape[1])))
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    counted, labels = True, 0
    with eval_mode(model), torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
            out = model(xb)
            loss_sum += objective(out, xb, yb).double() * len(xb)
            counted = counted and objective.counts(out, yb)
            if counted:
                correct += objective.correct(out, yb)
                labels += yb.numel()
    n = max(1, x.shape[0])
    return float(loss_sum) / n, (float(correct) / labels if counted and labels else float("nan"))


@reusing_freed_memory
def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
          x_test: torch.Tensor, y_test: torch.Tensor | None, epochs: int = 1,
          optimizer: str = "sgd", lr: float | None = None, batch_size: int = 64, seed: int = 0,
          progress=None, trajectory_every: int | None = None, momentum: float = 0.9,
          weight_decay: float = 0.0, schedule: str = "constant", warmup: int = 0,
          clip: float | None = None,
          loss_fn: str | LossFn | None = None) -> tuple[dict, list[dict[str, torch.Tensor]]]:
    """Train ``model`` in place on ``(x, y)``; evaluate on ``(x_test, y_test)`` after
    every epoch.

    Minimises ``loss_fn`` (a name of :mod:`landscape.losses` or ``loss_fn(output,
    target) -> scalar mean``; default cross-entropy, or MSE for an autoencoder)
    with ``sgd`` (momentum ``momentum``), ``adam`` or ``adamw`` at learning rate
    ``lr`` (default 0.05 / 1e-3 / 1e-3), scaled per step by :func:`lr_factor`
    (``schedule``, ``warmup`` steps); ``clip`` caps the gradient's global norm.
    ``seed`` fixes the order of the mini-batches, so the same model, data and
    arguments give the same weights; on CUDA training runs under
    :func:`deterministic` for the same reason.  The running loss stays on the
    device: host and device synchronise once per epoch.

    ``progress``: a factory ``(total, description) -> bar`` with ``update(n)`` and
    ``close()`` (tqdm fits), advanced once per optimiser step.
    ``trajectory_every``: keep a CPU copy of the state dict every that many steps,
    always including the initial and the final weights; ``None`` keeps none.

    Returns ``(history, snapshots)``: ``history`` holds per-epoch lists
    ``train_loss``, ``test_loss``, ``test_accuracy``, the number of ``steps`` and
    the ``snapshot_steps`` (step of each snapshot); ``snapshots`` the state dicts.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    objective = Objective(model, loss_fn)
    check_choice("schedule", schedule, SCHEDULES)
    if warmup < 0 or int(warmup) != warmup:
        raise LandscapeError(f"warmup: must be a non-negative integer, got {warmup!r}")
    if clip is not None and not clip > 0:
        raise LandscapeError(f"clip: must be > 0, got {clip}")
    if epochs < 1 or int(epochs) != epochs:
        raise LandscapeError(f"epochs: must be a positive integer, got {epochs!r}")
    if batch_size < 1:
        raise LandscapeError(f"batch_size: must be >= 1, got {batch_size}")
    if trajectory_every is not None and trajectory_every < 1:
        raise LandscapeError(f"trajectory_every: must be >= 1, got {trajectory_every}")
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    if not lr > 0:
        raise LandscapeError(f"lr: must be > 0, got {lr}")
    n = x.shape[0]
    if n < 1:
        raise LandscapeError("x: no samples to train on")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2]},
                                 {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    steps_per_epoch = (n + batch_size - 1) // batch_size
    history: dict = {"train_loss": [], "test_loss": [], "test_accuracy": [], "steps": 0,
                     "snapshot_steps": []}
    snapshots: list[dict[str, torch.Tensor]] = []

    def keep(step: int) -> None:
        snapshots.append(_snapshot(model))
        history["snapshot_steps"].append(step)

    if trajectory_every is not None:
        keep(0)
    bar = progress(epochs * steps_per_epoch, "train") if progress is not None else None
    step = 0
    was_training = model.training
    model.train()
    try:
        with deterministic(x.device):
            for _ in range(epochs):
                order = torch.randperm(n, generator=gen).to(x.device)
                total = torch.zeros((), dtype=torch.float64, device=x.device)
                for start in range(0, n, batch_size):
                    idx = order[start:start + batch_size]
                    xb = x[idx]
                    yb = None if y is None else y[idx]
                    loss = objective(model(xb), xb, yb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    factor = lr_factor(step, epochs * steps_per_epoch, warmup, schedule)
                    for group in opt.param_groups:
                        group["lr"] = lr * factor
                    opt.step()
                    total += loss.detach().double() * len(idx)
                    step += 1
                    if trajectory_every is not None and step % trajectory_every == 0:
                        keep(step)
                    if bar is not None:
                        bar.update(1)
                mean = float(total) / n  # the epoch's one synchronisation
                test_loss, test_acc = evaluate(model, x_test, y_test, loss_fn=loss_fn)
                history["train_loss"].append(mean)
                history["test_loss"].append(test_loss)
                history["test_accuracy"].append(test_acc)
                if not np.isfinite(mean):
                    raise LandscapeError(f"training diverged (loss {mean}); lower --lr (was {lr})")
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    if trajectory_every is not None and history["snapshot_steps"][-1] != step:
        keep(step)
    history["steps"] = step
    return history, snapshots


def save_checkpoint(path, model: torch.nn.Module | dict, meta: dict) -> Path:
    """Write ``{"state_dict": ..., "meta": meta}`` to ``path`` atomically (a
    temporary file in the same folder, renamed over ``path`` once complete).

    ``model``: a module or a state dict.  ``meta`` should hold plain values only
    (str, int, float, bool, None, lists, dicts) so that ``torch.load(...,
    weights_only=True)`` reads it back.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LandscapeError(f"checkpoint: folder {str(folder)!r} does not exist")
    state = model if isinstance(model, dict) else model.state_dict()
    state = {k: v.detach().cpu() for k, v in state.items()}
    with atomic_write(path) as tmp:
        torch.save({"state_dict": state, "meta": dict(meta)}, tmp)
    return path
