"""Checkpoints: state dicts saved by ``torch.save``, alone or with the meta of
how their network was drawn (``landscape train`` writes both)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import LandscapeError

# The part of a recipe that a checkpoint's meta overrides: how the weights were drawn.
INIT_KEYS = ("init", "bias_scale", "weight_std", "seed")


def adopt_meta(model: nn.Module, meta: dict) -> None:
    """Record a checkpoint's own init, bias scale, weight std and seed (its meta)
    as the model's recipe and provenance, so that null models and results
    describe the network that was trained, not the one it was loaded into."""
    recipe = getattr(model, "recipe", None)
    if not isinstance(meta, dict) or "init" not in meta or recipe is None:
        return
    for key in INIT_KEYS:
        if key in meta or key != "seed":
            recipe[key] = meta.get(key)
    model.init = recipe["init"]
    model.bias_scale = None if recipe["bias_scale"] is None else float(recipe["bias_scale"])


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a checkpoint saved by ``torch.save``: a state dict
    alone (meta ``{}``), or ``{"state_dict": ..., "meta": {...}}``."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"checkpoint: no such file {str(path)!r}")
    from ..validate import torch_load

    # Pickle errors, truncated files, non-tensor objects: one line of ours.
    obj = torch_load(path, f"checkpoint {str(path)!r} cannot be read")
    meta: dict = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        meta = obj.get("meta") or {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LandscapeError(f"checkpoint {str(path)!r} holds no state dict")
    return obj, meta if isinstance(meta, dict) else {}


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a state dict saved by ``torch.save`` (alone, or under ``"state_dict"``
    with a ``"meta"`` dict beside it) into ``model``; returns the metadata.  When
    the meta names the init, the model's recipe, ``init`` and ``bias_scale``
    become the checkpoint's (:func:`adopt_meta`)."""
    path = Path(path)
    obj, meta = read_checkpoint(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(obj))
    unexpected = sorted(set(obj) - set(own))
    wrong = sorted(k for k in set(own) & set(obj) if own[k].shape != obj[k].shape)
    if missing or unexpected or wrong:
        what = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                what.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        arch = meta.get("model") if isinstance(meta, dict) else None
        hint = f" (it was saved from {arch!r})" if arch else ""
        raise LandscapeError(
            f"checkpoint {str(path)!r} does not fit model {getattr(model, 'name', '?')!r}{hint}: "
            + "; ".join(what)
        )
    model.load_state_dict(obj)
    adopt_meta(model, meta)
    return meta
