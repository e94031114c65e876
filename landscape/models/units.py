"""Units: a layer's output reduced to one number per unit and input, the
default layer of a model, and the view input-space analyses move through."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import LandscapeError


def parse_shape(value) -> tuple[int, int, int]:
    """``"3x32x32"``, ``"1,8,8"`` or a sequence of three ints -> ``(C, H, W)``."""
    try:
        if isinstance(value, str):
            parts = value.lower().replace(",", "x").split("x")
            shape = tuple(int(p) for p in parts)
        else:
            shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise LandscapeError(f"in_shape: expected C x H x W such as 3x32x32, got {value!r}")
    return shape


def resolve_layer(model: nn.Module, layer: str | None) -> str:
    """The module name to read units from: ``layer``, or the model's default."""
    if layer is not None and hasattr(model, "layer_alias"):  # minilm: --layer N
        layer = model.layer_alias(layer)
    if layer is None:
        layer = getattr(model, "default_layer", None) or inferred_layer(model)[0]
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise LandscapeError(f"layer: no module named {layer!r} in this model; it has {shown}")
    return layer


# Modules that pass their input on unchanged, or only reshaped: never a head's feeder.
_PASS_THROUGH = (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_HEADS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LazyLinear)


def inferred_layer(model: nn.Module) -> tuple[str, str]:
    """``(layer, head)`` for a model without ``default_layer``: the last Linear or
    convolution among its leaf modules, in the order they were registered, is the
    head, and the leaf registered before it (past flattening and dropout) feeds it.

    ``nn.Sequential(conv, relu, pool, flatten, linear)`` gives ``("2", "4")``:
    the pooled map whose channels are the units.  Raises when the model has no
    such head, or nothing before it."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    heads = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _HEADS)]
    if not heads:
        raise LandscapeError("layer: this model has no default layer and no Linear or Conv head "
                             "to find one by; name one with --layer")
    for name, module in reversed(leaves[:heads[-1]]):
        if not isinstance(module, _PASS_THROUGH):
            return name, leaves[heads[-1]][0]
    raise LandscapeError(f"layer: nothing comes before the head {leaves[heads[-1]][0]!r}; name a "
                         "layer with --layer")


class _StopForward(Exception):
    pass

def layer_output(model: nn.Module, name: str, x: torch.Tensor, option: str = "layer") -> torch.Tensor:
    """Module ``name``'s output on ``x`` (a tuple's first element), the forward stopped there."""
    module = dict(model.named_modules())[name]
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward
    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:  # the module is never called
        raise LandscapeError(f"{option}: module {name!r} is not used in the forward pass")
    return captured[0]


def unit_activations(model: nn.Module, layer: str | None, x: torch.Tensor,
                     units: Sequence[int] | None = None) -> torch.Tensor:
    """Activations of a layer's units, shape ``(N, U)``.

    A unit of a convolutional layer (output ``N, C, H, W``) is its channel's
    spatial mean; of a token layer (``N, L, F``) the mean over tokens, or one
    feature at position ``model.unit_position`` when the model names one (the
    transformer); of a dense layer (``N, F``) one feature.  The forward pass
    stops at ``layer``.
    Differentiable in ``x`` and in the parameters, and usable under ``torch.func``.
    """
    out = layer_output(model, resolve_layer(model, layer), x)
    position = getattr(model, "unit_position", None)
    if position is not None and out.dim() == 3:
        out = out[:, position]
    feats = units_of(out)
    if units is not None:
        idx = torch.as_tensor(list(units), dtype=torch.long, device=feats.device)
        feats = feats.index_select(1, idx)
    return feats


def units_of(output: torch.Tensor) -> torch.Tensor:
    """Reduce a layer's output to ``(N, U)`` units (see :func:`unit_activations`)."""
    if output.dim() == 2:
        return output
    if output.dim() == 3:
        return output.mean(dim=1)
    if output.dim() >= 4:
        return output.flatten(2).mean(dim=2)
    raise LandscapeError(f"layer output of shape {tuple(output.shape)} has no units")


def n_units(model: nn.Module, layer: str | None, x: torch.Tensor | None = None) -> int:
    """How many units ``layer`` has: one forward pass on the first input of ``x``
    (any ``nn.Module``), or on a zero input of ``model.in_shape`` (the registered
    models) when no input is given."""
    if x is None:
        shape = getattr(model, "in_shape", None)
        if shape is None:
            raise LandscapeError("units: this model has no in_shape attribute; give example "
                                 "inputs to count the units of its layer")
        p = next(model.parameters())
        x = torch.zeros((1, *shape), dtype=p.dtype, device=p.device)
    if x.dim() < 1 or len(x) < 1:
        raise LandscapeError("units: need at least one example input")
    with torch.no_grad(), eval_mode(model):
        return unit_activations(model, layer, x[:1].detach()).shape[1]


def select_units(model: nn.Module, layer: str | None, units,
                 x: torch.Tensor | None = None) -> list[int]:
    """``units`` as a list of indices: an int N means the first N units.  ``x``:
    example inputs (see :func:`n_units`)."""
    total = n_units(model, layer, x)
    if units is None:
        return list(range(total))
    if isinstance(units, int):
        if units < 1:
            raise LandscapeError(f"units: must be >= 1, got {units}")
        if units > total:
            raise LandscapeError(f"units: layer has {total} units, asked for {units}")
        return list(range(units))
    chosen = [int(u) for u in units]
    bad = [u for u in chosen if not 0 <= u < total]
    if bad or not chosen:
        raise LandscapeError(f"units: indices must lie in 0..{total - 1}, got {chosen}")
    return chosen


def input_view(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The model and data that input-space analyses move through: ``(model, x)``
    itself, or for a model of discrete tokens (one with an ``input_view`` method,
    the transformer) a view of it taking continuous token embeddings and the
    embedded data."""
    if hasattr(model, "input_view"):
        return model.input_view(x)
    return model, x


class eval_mode:
    """Context manager: put ``model`` in eval mode and restore every module's
    own training flag afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, flag in self.flags:
            m.training = flag
        return False
