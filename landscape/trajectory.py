"""Principal directions of an optimisation trajectory.

Li et al., *Visualizing the Loss Landscape of Neural Nets* (NeurIPS 2018,
Sec. 7) show why random directions miss the path an optimiser takes (in high
dimensions two random vectors are nearly orthogonal to any given one) and plot
the trajectory in the plane of its own principal components instead:

    M = [θ_0 − θ_T; θ_1 − θ_T; ...; θ_T − θ_T]   (T+1 rows, all parameters flattened)
    M = U S Vᵀ,   d_i = V[:, i],   projection of θ_t = (M V)[t, :n] = (U S)[t, :n]

The directions are orthonormal; the last point (the final weights, the centre
of the slice) projects onto the origin.  Each direction's sign is fixed so that
the trajectory starts at a non-negative coordinate, which makes results
reproducible.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .directions import Direction
from .errors import LandscapeError

STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def trajectory_files(folder) -> list[Path]:
    """The ``step_NNN.pt`` checkpoints of a trajectory folder, in step order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LandscapeError(f"trajectory: no such folder {str(folder)!r}")
    files = sorted((p for p in folder.iterdir() if STEP_FILE.search(p.name)),
                   key=lambda p: int(STEP_FILE.search(p.name).group(1)))
    if len(files) < 2:
        raise LandscapeError(
            f"trajectory: {str(folder)!r} holds {len(files)} step_NNN.pt checkpoints; need at least 2 "
            "(write them with `landscape train --save-trajectory`)"
        )
    return files


def _state_dict(item) -> dict[str, torch.Tensor]:
    if isinstance(item, dict) and "state_dict" in item:
        return item["state_dict"]
    if isinstance(item, dict):
        return item
    path = Path(item)
    from .validate import torch_load

    obj = torch_load(path, f"trajectory: checkpoint {str(path)!r} cannot be read")
    return obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj


def trajectory_directions(model: torch.nn.Module, checkpoints, n: int = 2
                          ) -> tuple[list[Direction], np.ndarray]:
    """The top ``n`` principal directions of a trajectory and its coordinates in them.

    ``checkpoints``: paths or state dicts (or ``{"state_dict": ...}``) in training
    order, the last being the final weights.  Every parameter of ``model``
    (weights and biases; buffers such as running statistics are not parameters)
    takes part.  Returns ``(directions, projections)``: ``n`` orthonormal direction
    dicts keyed like ``model.named_parameters()`` on the model's device and dtype,
    and an array ``(T, n)`` of each checkpoint's coordinates ``⟨θ_t − θ_T, d_i⟩``.
    """
    states = [_state_dict(c) for c in checkpoints]
    if len(states) < 2:
        raise LandscapeError(f"trajectory: need at least 2 checkpoints, got {len(states)}")
    params = dict(model.named_parameters())
    for i, s in enumerate(states):
        wrong = [k for k, p in params.items() if k not in s or tuple(s[k].shape) != tuple(p.shape)]
        if wrong:
            raise LandscapeError(f"trajectory: checkpoint {i} does not fit model "
                                 f"{getattr(model, 'name', '?')!r} (e.g. parameter {wrong[0]!r})")
    rank = min(len(states) - 1, sum(p.numel() for p in params.values()))
    if n < 1 or n > rank:
        raise LandscapeError(f"dims: a trajectory of {len(states)} checkpoints has {rank} principal "
                             f"direction(s); cannot take {n}")
    # On the CPU in float64, wherever the checkpoints' tensors live (CUDA state dicts too).
    flat = torch.stack([torch.cat([s[k].detach().cpu().double().flatten() for k in params])
                        for s in states])
    diffs = flat - flat[-1]
    u, sv, vh = torch.linalg.svd(diffs, full_matrices=False)
    if float(sv[n - 1]) <= 1e-12 * max(float(sv[0]), 1e-300):
        raise LandscapeError(f"trajectory: the checkpoints span fewer than {n} directions")
    vh = vh[:n]
    proj = diffs @ vh.T
    signs = torch.where(proj[0] < 0, -1.0, 1.0).double()
    vh, proj = vh * signs[:, None], proj * signs
    directions = []
    for row in vh:
        d, start = {}, 0
        for k, p in params.items():
            d[k] = row[start:start + p.numel()].reshape(p.shape).to(dtype=p.dtype, device=p.device)
            start += p.numel()
        directions.append(d)
    return directions, proj.numpy()


def explained_variance(projections: np.ndarray, checkpoints, model: torch.nn.Module) -> np.ndarray:
    """Fraction of the trajectory's squared deviation from the final weights,
    ``Σ_t ‖θ_t − θ_T‖²``, that each principal direction's coordinates explain."""
    params = [k for k, _ in model.named_parameters()]
    states = [_state_dict(c) for c in checkpoints]
    last = states[-1]
    total = sum(float(sum(((s[k].detach().cpu().double() - last[k].detach().cpu().double()) ** 2
                           ).sum() for k in params))
                for s in states)
    return (np.asarray(projections) ** 2).sum(0) / max(total, 1e-300)



def load_trajectory(folder) -> tuple[list[int], list[dict[str, torch.Tensor]]]:
    """Steps and state dicts of the ``step_NNN.pt`` checkpoints in ``folder``."""
    files = trajectory_files(folder)
    steps = [int(STEP_FILE.search(p.name).group(1)) for p in files]
    return steps, [_state_dict(p) for p in files]


def trajectory_dataset(model: torch.nn.Module, states, steps, directions: list[Direction],
                       projections: np.ndarray):
    """The trajectory's coordinates as variables ``trajectory_alpha(step)`` (and
    ``trajectory_beta(step)``), measured from ``model``'s current weights (the
    centre of a slice), which need not be the trajectory's last point."""
    import xarray as xr

    params = dict(model.named_parameters())
    final = states[-1]
    offset = np.array([
        float(sum(((final[k].detach().to(p.device).double() - p.detach().double())
                   * d[k].to(p.device).double()).sum()
                  for k, p in params.items()))
        for d in directions
    ])
    coords = np.asarray(projections) + offset
    names = ("trajectory_alpha", "trajectory_beta")[:len(directions)]
    ds = xr.Dataset(
        {name: ("step", coords[:, i], {"long_name": f"trajectory coordinate along principal "
                                                     f"direction {i + 1}"})
         for i, name in enumerate(names)},
        coords={"step": np.asarray(steps, dtype=np.int64)},
    )
    ds["trajectory_explained_variance"] = (
        "direction", explained_variance(projections, states, model),
        {"long_name": "fraction of the trajectory's spread along each direction"})
    return ds
