"""The evaluators of a slice's grid: :class:`LossGrid` (loss and correct counts at
parameter-space points) and :class:`InputGrid` (units' activations at input-space
points), each evaluated by ranges of points wherever the ranges run
(:mod:`landscape.streams`: here, on several CPU streams, or on Dask workers).
"""

from __future__ import annotations

import copy
import threading
from functools import partial

import numpy as np
import torch
from torch.func import functional_call, vmap

from .directions import Direction
from .losses import Objective
from .models import unit_activations


class ChannelsLastMaxPool2d(torch.nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` that pools a 4-D input in the channels-last layout
    and returns it contiguous: the same values bit for bit (a maximum rounds nothing;
    NaN propagates the same), 3.7x faster on the CPU for ResNet-18's stem (256 x 64 x
    16 x 16: 8 ms against 31 ms, a sixth of its forward pass)."""

    def forward(self, x):
        if x.dim() != 4:
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


def pool_channels_last(net: torch.nn.Module) -> None:
    """Max pooling of ``net`` (a private copy evaluated without gradients on the CPU)
    in the channels-last layout (see :class:`ChannelsLastMaxPool2d`)."""
    for module in net.modules():
        if type(module) is torch.nn.MaxPool2d and not module.return_indices:
            module.__class__ = ChannelsLastMaxPool2d


class LossGrid:
    """Sums of the loss and of correct labels of ``model`` on ``(x, y)`` at
    ``θ + Σ_j coeffs[i, j] d_j``, evaluated by ranges of rows of ``coeffs``.

    The one evaluation of every loss slice, in this process or sharded over Dask
    workers (:mod:`landscape.sweep.shard`): each range of rows is one chunk of
    points, evaluated the same way wherever it runs, so a sharded surface equals
    the single-process one bit for bit.  ``how``: ``vmap`` evaluates a chunk per
    data batch in one batched call; ``loop`` makes one plain call per point in a
    private copy of the model.  Pickles as its data only (the model, the data, the
    directions, the coefficients); the batched functions are rebuilt on first use.
    A shallow copy (one per stream, :mod:`landscape.streams`) builds its own
    functions and model copy but shares the stacked directions, built once.
    """

    def __init__(self, model, x, y, directions: list[Direction], coeffs: np.ndarray,
                 batch_size: int, how: str, objective: Objective):
        self.model, self.x, self.y, self.directions = model, x, y, directions
        self.coeffs, self.batch_size, self.how, self.objective = coeffs, batch_size, how, objective
        self._run = None
        self._shared = _Once()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_run": None}

    def __copy__(self) -> LossGrid:
        other = object.__new__(LossGrid)
        other.__dict__.update(self.__dict__, _run=None)
        return other

    def evaluate(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Loss sums (over samples) and correct counts of rows ``start:stop``."""
        if self._run is None:
            self._run = self._build()
        with torch.inference_mode():
            loss, correct = self._run(self._shared.get(self._prepare)["coeffs"][start:stop])
        return loss.cpu().numpy(), correct.cpu().numpy()

    def _prepare(self) -> dict:
        """What every copy reads: the parameters split into moving and fixed, and
        the directions of each moving tensor stacked as rows, so that the
        parameters of C points are one fused θ + C·D product per tensor."""
        params = {k: p.detach() for k, p in self.model.named_parameters()}
        moving = [k for k in params if any(bool(d[k].abs().max() > 0) for d in self.directions)]
        dirs = [{k: d[k].to(params[k]) for k in moving} for d in self.directions]
        return dict(
            buffers={k: b.detach() for k, b in self.model.named_buffers()},
            base={k: params[k] for k in moving},
            fixed={k: v for k, v in params.items() if k not in moving},
            flat_base={k: params[k].reshape(1, -1) for k in moving},
            stacked={k: torch.stack([d[k].reshape(-1) for d in dirs]) for k in moving},
            coeffs=torch.as_tensor(self.coeffs, dtype=next(iter(params.values())).dtype,
                                   device=self.x.device))

    def _build(self):
        model, x, y, objective = self.model, self.x, self.y, self.objective
        shared = self._shared.get(self._prepare)
        buffers, base, fixed = shared["buffers"], shared["base"], shared["fixed"]
        flat_base, stacked = shared["flat_base"], shared["stacked"]
        batch_size, how = self.batch_size, self.how

        # The objective is a batch mean: times the batch size it sums over samples.
        def scores(out, xb, yb):
            loss = objective(out, xb, yb) * xb.shape[0]
            correct = (objective.correct(out, yb) if objective.counts(out, yb)
                       else torch.zeros((), device=out.device))
            return loss, correct

        def point_loss(p, xb, yb):
            return scores(functional_call(model, (p, fixed, buffers), (xb,), strict=False), xb, yb)

        batched = vmap(point_loss, in_dims=(0, None, None))
        batches = [(x[b:b + batch_size], None if y is None else y[b:b + batch_size])
                   for b in range(0, x.shape[0], batch_size)]

        def points(c: torch.Tensor) -> dict[str, torch.Tensor]:
            return {k: torch.addmm(flat_base[k], c, stacked[k]).view(c.shape[0], *w.shape)
                    for k, w in base.items()}

        if how == "loop":
            # A private copy whose moving parameters are overwritten in place at each
            # point: one plain forward pass per point and batch, without the cost of
            # re-binding parameters that a functional call pays on every call.
            with torch.inference_mode(False):
                net = copy.deepcopy(model)
            if x.device.type == "cpu":
                pool_channels_last(net)
            slots = {k: p.detach() for k, p in net.named_parameters() if k in base}

            def net_loss(xb, yb):
                return scores(net(xb), xb, yb)

            def write_point(c_row: torch.Tensor) -> None:
                for k, slot in slots.items():
                    if slot.is_contiguous():
                        torch.addmm(flat_base[k], c_row, stacked[k], out=slot.view(1, -1))
                    else:
                        slot.copy_(torch.addmm(flat_base[k], c_row, stacked[k]).view(slot.shape))

        def run(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss = torch.zeros(c.shape[0], dtype=torch.float64, device=x.device)
            correct = torch.zeros_like(loss)
            if how == "vmap" and base:
                p = points(c)
                for xb, yb in batches:
                    l, k_ = batched(p, xb, yb)
                    loss += l.double()
                    correct += k_.double()
                return loss, correct
            for i in range(c.shape[0]):
                if how == "loop":
                    write_point(c[i:i + 1])
                    evaluate = net_loss
                else:  # vmap with nothing moving: every point is θ itself
                    evaluate = partial(point_loss, {})
                for xb, yb in batches:
                    l, k_ = evaluate(xb, yb)
                    loss[i] += l.double()
                    correct[i] += k_.double()
            return loss, correct

        return run


class InputGrid:
    """Activations of ``units`` of ``layer`` at ``anchors[a] + Σ_j coeffs[p, j] dirs[a, j]``
    for flat indices ``a * n_points + p``, evaluated by ranges of indices, each one
    forward pass; picklable, like :class:`LossGrid`, for sharding."""

    def __init__(self, net, layer: str, units, anchors: torch.Tensor, coeffs: torch.Tensor,
                 dirs: torch.Tensor):
        self.net, self.layer, self.units = net, layer, units
        self.anchors, self.coeffs, self.dirs = anchors, coeffs, dirs

    def evaluate(self, start: int, stop: int) -> np.ndarray:
        """Activations ``(stop - start, units)`` in float64."""
        n_points = self.coeffs.shape[0]
        with torch.inference_mode():
            idx = torch.arange(start, stop, device=self.anchors.device)
            a_idx, p_idx = idx // n_points, idx % n_points
            points = self.anchors.flatten(1)[a_idx] + torch.einsum(
                "nd,ndf->nf", self.coeffs[p_idx], self.dirs.flatten(2)[a_idx])
            acts = unit_activations(self.net, self.layer,
                                    points.view(-1, *self.anchors.shape[1:]), self.units)
            return acts.double().cpu().numpy()


class _Once:
    """A value built once by whichever thread asks first; shared by shallow copies."""

    def __init__(self):
        self._lock = threading.Lock()
        self._value = None

    def __reduce__(self):  # pickled (for a Dask worker) empty, with a lock of its own
        return _Once, ()

    def get(self, build):
        with self._lock:
            if self._value is None:
                self._value = build()
            return self._value
