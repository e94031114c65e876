"""Directions to slice along, in parameter space and in input space.

Parameter space (a direction is a dict ``name -> tensor`` shaped like
``model.named_parameters()``):

* ``random``  d ~ N(0, I), rescaled as a whole to the norm of the (included)
  parameters, so that α = 1 moves as far as the weights are long;
* ``filter``  filter normalisation of Li et al., *Visualizing the Loss Landscape
  of Neural Nets* (NeurIPS 2018): d ~ N(0, I); for every parameter tensor with
  dim > 1 each output filter (a filter of a convolution, a row of a linear
  layer: a slice along dim 0; for a transposed convolution, whose weight is
  laid out ``(in, out / groups, *kernel)``, the slice of one output channel) is
  rescaled to the norm of the matching filter of the weights;
* ``layer``   the same, one scale per tensor;
* ``hessian`` the top eigenvectors of the loss Hessian (unit norm, not rescaled);
* ``pca``     the principal directions of a training trajectory (unit norm), which
  need the trajectory: see :func:`landscape.trajectory.trajectory_directions`.

Tensors with dim ≤ 1 (biases, normalisation layers) get a zero direction unless
``include_bias``.  With ``include_bias`` they follow the reference code of Li et
al. (``normalize_directions_for_weights`` with ``ignore != 'biasbn'``): under
``filter`` and ``layer`` the direction of a 1-D parameter is the parameter
itself (so a zero bias does not move); under ``random`` it is part of the
Gaussian draw.  ``orthogonalize`` makes each direction orthogonal to the
previous ones (Gram–Schmidt in the flattened space, keeping each direction's norm).

Input space (a direction tensor has shape ``(A, D, *in_shape)`` for A anchors):

* ``random``  d ~ N(0, I) per anchor, rescaled to the anchor's norm;
* ``pca``     the top principal components of the data (shared by all
  anchors), rescaled to each anchor's norm.

Every direction is drawn and normalised in float64 on the CPU and cast to the
model's (the anchors') dtype and device at the end, so that one seed gives the
same direction, to the target dtype's rounding, for float32 and float64 models
and on every device.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import LandscapeError

PARAMETER_DIRECTIONS = ("random", "filter", "layer", "hessian", "pca")
INPUT_DIRECTIONS = ("random", "pca")

Direction = dict[str, torch.Tensor]

DRAW_DTYPE = torch.float64  # directions are drawn and normalised in this dtype, then cast


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _randn(shape, gen: torch.Generator) -> torch.Tensor:
    # On the CPU and in float64, so that a seed gives one direction on every device and dtype.
    return torch.randn(tuple(shape), generator=gen, dtype=DRAW_DTYPE)


def _filters(t: torch.Tensor, transposed: bool, groups: int) -> torch.Tensor:
    """``t`` as a matrix with one output filter per row.

    A transposed convolution's weight is ``(in, out / groups, *kernel)``: output channel
    ``g · out / groups + j`` is the slice ``[g · in / groups : (g + 1) · in / groups, j]``.
    """
    if not transposed:
        return t.flatten(1)
    cin, cout = t.shape[0], t.shape[1]
    if groups < 1 or cin % groups:
        raise LandscapeError(f"filter_normalize: {cin} input channels do not split into "
                             f"{groups} groups")
    split = t.reshape(groups, cin // groups, cout, -1)
    return split.transpose(1, 2).reshape(groups * cout, -1)


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor, eps: float = 1e-12, *,
                     transposed: bool = False, groups: int = 1) -> torch.Tensor:
    """Rescale each output filter of ``direction`` to the norm of the matching filter of
    ``weight``.

    A filter is a slice along dim 0 (a linear layer's row, a convolution's output
    filter); for the weight of a transposed convolution (``transposed``, laid out
    ``(in, out / groups, *kernel)``) it is one output channel, the slice along dim 1
    within each of its ``groups``.  For a tensor of dim ≤ 1 the whole tensor is one
    filter.
    """
    if direction.shape != weight.shape:
        raise LandscapeError(f"filter_normalize: direction of shape {tuple(direction.shape)} for "
                             f"a weight of shape {tuple(weight.shape)}")
    if direction.dim() <= 1:
        return direction * (weight.norm() / (direction.norm() + eps))
    d = _filters(direction, transposed, groups)
    w = _filters(weight, transposed, groups)
    scale = w.norm(dim=1) / (d.norm(dim=1) + eps)  # one per output filter
    if not transposed:
        return direction * scale.view(-1, *([1] * (direction.dim() - 1)))
    cin, cout = direction.shape[:2]
    per_slot = scale.view(groups, 1, cout).expand(groups, cin // groups, cout).reshape(cin, cout)
    return direction * per_slot.view(cin, cout, *([1] * (direction.dim() - 2)))


def layer_normalize(direction: torch.Tensor, weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rescale the whole ``direction`` tensor to the norm of ``weight``."""
    return direction * (weight.norm() / (direction.norm() + eps))


def _dot(a: Direction, b: Direction) -> torch.Tensor:
    return sum((a[k].double() * b[k].double()).sum() for k in a)


def orthogonalize(directions: list[Direction]) -> list[Direction]:
    """Gram–Schmidt: each direction minus its projection on the earlier ones,
    rescaled back to its own norm (computed in float64, returned in each tensor's dtype)."""
    out: list[Direction] = []
    for d in directions:
        norm = _dot(d, d).sqrt()
        v = {k: t.double() for k, t in d.items()}
        for u in out:
            coef = _dot(v, u) / _dot(u, u)
            v = {k: v[k] - coef * u[k] for k in v}
        scale = norm / (_dot(v, v).sqrt() + 1e-30)
        out.append({k: t * scale for k, t in v.items()})
    return [{k: t.to(d[k].dtype) for k, t in o.items()} for o, d in zip(out, directions)]


def _transposed_weights(model: nn.Module) -> dict[str, int]:
    """Names of the weights of transposed convolutions, with their groups."""
    return {f"{name}.weight" if name else "weight": m.groups
            for name, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvTransposeNd)}


def _check_request(kind: str, kinds, space: str, n: int) -> None:
    if kind not in kinds:
        raise LandscapeError(f"directions: unknown value {kind!r} for the {space} space; "
                             f"choose one of {', '.join(kinds)}")
    if n < 1:
        raise LandscapeError(f"dims: must be >= 1, got {n}")


def parameter_directions(model, kind: str = "filter", n: int = 2, seed: int = 0,
                         include_bias: bool = False, orthogonal: bool = False) -> list[Direction]:
    """``n`` directions in the parameter space of ``model`` (see the module docstring).

    ``hessian`` directions depend on data and a loss: :func:`landscape.loss_slice`
    takes them from :func:`landscape.top_eigenvectors` itself.
    """
    _check_request(kind, PARAMETER_DIRECTIONS, "loss", n)
    if kind == "pca":
        raise LandscapeError(
            "directions 'pca' in the loss space need a training trajectory: pass --trajectory DIR "
            "(from `landscape train --save-trajectory`) or use "
            "landscape.trajectory.trajectory_directions"
        )
    if kind == "hessian":
        raise LandscapeError(
            "directions 'hessian' are the loss Hessian's top eigenvectors: use "
            "loss_slice(directions='hessian') or landscape.top_eigenvectors")
    params = {k: p.detach() for k, p in model.named_parameters()}

    transposed = _transposed_weights(model)
    weights = {k: w.to("cpu", DRAW_DTYPE) for k, w in params.items()}
    gen = _generator(seed)
    directions = []
    for _ in range(n):
        d = {}
        for k, w in weights.items():
            r = _randn(w.shape, gen)
            if w.dim() <= 1 and not include_bias:
                d[k] = torch.zeros_like(w)
            elif w.dim() <= 1 and kind != "random":
                d[k] = w.clone()  # Li et al.'s reference: a 1-D parameter is its own direction
            elif kind == "filter":
                d[k] = filter_normalize(r, w, transposed=k in transposed,
                                        groups=transposed.get(k, 1))
            elif kind == "layer":
                d[k] = layer_normalize(r, w)
            else:
                d[k] = r
        if kind == "random":
            included = [k for k, w in weights.items() if w.dim() > 1 or include_bias]
            w_norm = torch.sqrt(sum((weights[k] ** 2).sum() for k in included))
            scale = w_norm / (_dot(d, d).sqrt() + 1e-30)
            d = {k: t * scale for k, t in d.items()}
        directions.append(d)
    if orthogonal:
        directions = orthogonalize(directions)
    return [{k: t.to(params[k].device, params[k].dtype) for k, t in d.items()} for d in directions]


def input_directions(anchors: torch.Tensor, kind: str = "random", n: int = 1, seed: int = 0,
                     data: torch.Tensor | None = None, orthogonal: bool = True) -> torch.Tensor:
    """Directions through each anchor, shape ``(A, n, *in_shape)``, each scaled to
    its anchor's norm (see the module docstring).  ``pca`` needs ``data``."""
    _check_request(kind, INPUT_DIRECTIONS, "input", n)
    a, shape = anchors.shape[0], anchors.shape[1:]
    flat = anchors.detach().flatten(1).to("cpu", DRAW_DTYPE)
    if kind == "random":
        d = _randn((a, n, flat.shape[1]), _generator(seed))
        if orthogonal:
            d = torch.linalg.qr(d.transpose(1, 2)).Q.transpose(1, 2)
    else:
        if data is None:
            raise LandscapeError("directions 'pca' in input space need the data to take components of")
        if n > min(data.shape[0], flat.shape[1]):
            raise LandscapeError(f"dims: cannot take {n} principal components of {data.shape[0]} samples")
        centred = data.detach().flatten(1).to("cpu", DRAW_DTYPE)
        centred = centred - centred.mean(0, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        vh = vh[:n]
        # Fix each component's sign (largest entry positive) so results are reproducible.
        signs = torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))
        d = (vh * signs).expand(a, -1, -1)
    d = d / d.norm(dim=2, keepdim=True)
    d = d * flat.norm(dim=1)[:, None, None]
    return d.reshape(a, n, *shape).to(anchors.device, anchors.dtype)
