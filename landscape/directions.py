"""Directions to slice along, in parameter space and in input space.

Parameter space (a direction is a dict ``name -> tensor`` shaped like
``model.named_parameters()``):

* ``random``  d ~ N(0, I), rescaled as a whole to the norm of the (included)
  weights, so that α = 1 moves as far as the weights are long;
* ``filter``  filter normalisation of Li et al., *Visualizing the Loss Landscape
  of Neural Nets* (NeurIPS 2018): d ~ N(0, I); for every parameter tensor with
  dim > 1 each slice along dim 0 (a filter of a convolution, a row of a linear
  layer) is rescaled to the norm of the matching slice of the weights;
* ``layer``   the same, one scale per tensor;
* ``hessian`` the top eigenvectors of the loss Hessian (unit norm, not rescaled);
* ``pca``     the principal directions of a training trajectory (unit norm), which
  need the trajectory: see :func:`landscape.trajectory.trajectory_directions`.

Tensors with dim ≤ 1 (biases, normalisation layers) get a zero direction unless
``include_bias``; then each such tensor is one "filter" (rescaled to its own
norm under ``filter``/``layer``).  ``orthogonalize`` makes each direction
orthogonal to the previous ones (Gram–Schmidt in the flattened space, keeping
each direction's norm).

Input space (a direction tensor has shape ``(A, D, *in_shape)`` for A anchors):

* ``random``  d ~ N(0, I) per anchor, rescaled to the anchor's norm;
* ``pca``     the top principal components of the data (shared by all
  anchors), rescaled to each anchor's norm.
"""

from __future__ import annotations

import torch

from .errors import LandscapeError

PARAMETER_DIRECTIONS = ("random", "filter", "layer", "hessian", "pca")
INPUT_DIRECTIONS = ("random", "pca")

Direction = dict[str, torch.Tensor]


def _generator(seed: int, device) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _randn_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    # Drawn on the CPU so that a seed gives the same direction on every device.
    return torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rescale each slice ``direction[i]`` along dim 0 to the norm of ``weight[i]``.

    For a tensor of dim ≤ 1 the whole tensor is one slice.
    """
    if direction.dim() <= 1:
        return direction * (weight.norm() / (direction.norm() + eps))
    d = direction.flatten(1)
    w = weight.flatten(1)
    scale = w.norm(dim=1, keepdim=True) / (d.norm(dim=1, keepdim=True) + eps)
    return (d * scale).reshape(direction.shape)


def layer_normalize(direction: torch.Tensor, weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rescale the whole ``direction`` tensor to the norm of ``weight``."""
    return direction * (weight.norm() / (direction.norm() + eps))


def _dot(a: Direction, b: Direction) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def orthogonalize(directions: list[Direction]) -> list[Direction]:
    """Gram–Schmidt: each direction minus its projection on the earlier ones,
    rescaled back to its own norm."""
    out: list[Direction] = []
    for d in directions:
        norm = _dot(d, d).sqrt()
        v = dict(d)
        for u in out:
            coef = _dot(v, u) / _dot(u, u)
            v = {k: v[k] - coef * u[k] for k in v}
        scale = norm / (_dot(v, v).sqrt() + 1e-30)
        out.append({k: t * scale for k, t in v.items()})
    return out


def parameter_directions(model, kind: str = "filter", n: int = 2, seed: int = 0,
                         include_bias: bool = False, orthogonal: bool = False,
                         x=None, y=None, **hessian_options) -> list[Direction]:
    """``n`` directions in the parameter space of ``model`` (see the module docstring).

    ``hessian`` needs the data ``x, y`` the loss is taken over.
    """
    if kind not in PARAMETER_DIRECTIONS:
        raise LandscapeError(
            f"directions: unknown value {kind!r} for the loss space; "
            f"choose one of {', '.join(PARAMETER_DIRECTIONS)}"
        )
    if n < 1:
        raise LandscapeError(f"dims: must be >= 1, got {n}")
    if kind == "pca":
        raise LandscapeError(
            "directions 'pca' in the loss space need a training trajectory: pass --trajectory DIR "
            "(from `landscape train --save-trajectory`) or use "
            "landscape.trajectory.trajectory_directions"
        )
    params = {k: p.detach() for k, p in model.named_parameters()}
    if kind == "hessian":
        if x is None:
            raise LandscapeError("directions 'hessian' need data to take the loss over")
        from .hessian import top_eigenvectors

        options = {"seed": seed, **hessian_options}
        _, vectors = top_eigenvectors(model, x, y, n, **options)
        return [{k: v.to(params[k].dtype) for k, v in d.items()} for d in vectors]

    gen = _generator(seed, None)
    directions = []
    for _ in range(n):
        d = {}
        for k, w in params.items():
            r = _randn_like(w, gen)
            if w.dim() <= 1 and not include_bias:
                d[k] = torch.zeros_like(w)
            elif kind == "filter":
                d[k] = filter_normalize(r, w)
            elif kind == "layer":
                d[k] = layer_normalize(r, w)
            else:
                d[k] = r
        if kind == "random":
            included = [k for k, w in params.items() if w.dim() > 1 or include_bias]
            w_norm = torch.sqrt(sum((params[k] ** 2).sum() for k in included))
            scale = w_norm / (_dot(d, d).sqrt() + 1e-30)
            d = {k: t * scale for k, t in d.items()}
        directions.append(d)
    return orthogonalize(directions) if orthogonal else directions


def input_directions(anchors: torch.Tensor, kind: str = "random", n: int = 1, seed: int = 0,
                     data: torch.Tensor | None = None, orthogonal: bool = True) -> torch.Tensor:
    """Directions through each anchor, shape ``(A, n, *in_shape)``, each scaled to
    its anchor's norm (see the module docstring).  ``pca`` needs ``data``."""
    if kind not in INPUT_DIRECTIONS:
        raise LandscapeError(
            f"directions: unknown value {kind!r} for the input space; "
            f"choose one of {', '.join(INPUT_DIRECTIONS)}"
        )
    if n < 1:
        raise LandscapeError(f"dims: must be >= 1, got {n}")
    a, shape = anchors.shape[0], anchors.shape[1:]
    flat = anchors.flatten(1)
    if kind == "random":
        gen = _generator(seed, None)
        d = torch.randn((a, n, flat.shape[1]), generator=gen, dtype=anchors.dtype)
        d = d.to(anchors.device)
        if orthogonal:
            d = torch.linalg.qr(d.transpose(1, 2)).Q.transpose(1, 2)
    else:
        if data is None:
            raise LandscapeError("directions 'pca' in input space need the data to take components of")
        if n > min(data.shape[0], flat.shape[1]):
            raise LandscapeError(f"dims: cannot take {n} principal components of {data.shape[0]} samples")
        centred = data.flatten(1).double()
        centred = centred - centred.mean(0, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        vh = vh[:n]
        # Fix each component's sign (largest entry positive) so results are reproducible.
        signs = torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))
        d = (vh * signs).to(anchors.dtype).to(anchors.device).expand(a, -1, -1)
    d = d / d.norm(dim=2, keepdim=True)
    d = d * flat.norm(dim=1)[:, None, None]
    return d.reshape(a, n, *shape)
