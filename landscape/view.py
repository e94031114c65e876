"""The model an analysis evaluates, and the guard that keeps the user's model as it was.

Every analysis reads a model and must leave it exactly as it was given:
parameters, buffers (BatchNorm running statistics), ``requires_grad`` and every
module's train/eval flag.  Two pieces serve that.

:func:`model_view` builds what an analysis evaluates instead of the model itself:
a private module in eval mode that *shares* the model's parameter tensors (no
copy, read only) and owns copies of its buffers, with its BatchNorm layers set
up as ``bn`` says.  Nothing an analysis does to the view (mode switches, forward
passes, recomputed statistics) reaches the user's model.

:func:`untouched` (a decorator and a context manager) is the last line of
defence around every public analysis: it records the model's state before the
call and compares it afterwards — buffers value by value, parameters by a hash
of their bytes, flags and ``requires_grad`` one by one.  Flags, ``requires_grad``
and buffers that changed are put back and reported (a ``RuntimeWarning``, or an
``AssertionError`` when ``LANDSCAPE_STRICT_STATE=1``, as the tests run);
a changed parameter cannot be put back and is always an error.

BatchNorm statistics (``bn``) of the forward passes an analysis makes:

``eval``       the running statistics as stored in the model;
``batch``      each forward pass normalises with the statistics of its own batch
               and writes nothing (what a network in training mode computes);
``recompute``  running statistics recomputed on the data with the weights
               frozen, on the view only: each BatchNorm layer's mean and
               (population) variance per channel of its input over the data,
               layer after layer, the layers before it already using theirs.
               The view in eval mode then normalises every channel of the data
               to mean 0 and variance 1 — it computes what the model in
               training mode computes on the whole data as one batch;
``auto``       ``eval`` when the model's running statistics were ever updated
               (``num_batches_tracked > 0``: a trained network or checkpoint),
               ``recompute`` when they are the fresh 0/1 of a network that never
               saw data (a random network), ``eval`` for a model without
               BatchNorm (where every choice is the same).

One choice serves every forward pass of one result (both spaces of a slice, the
directions' Hessian, maxact's ascent and its relation, the t-SNE features and
heatmaps) and is recorded in the result's ``bn`` attribute.  ``batch`` is for the
loss space only: a unit's response to its input must not depend on the other
inputs of its batch, so input slices, input Hessians, ``maxact`` and ``tsne``
refuse it.  ``recompute`` accumulates its sums in float64 over batches of the
analysis's batch size, so the statistics do not depend on how the data are
batched.  The 0/1 statistics of a random network describe no data at all (with
them every BatchNorm layer is a fixed affine map and activations grow or shrink
layer by layer), which is why ``auto`` recomputes them.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import hashlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .errors import LandscapeError, check_choice

BN_MODES = ("auto", "eval", "batch", "recompute")
# Modes under which a sample's output depends on that sample alone: what
# analyses of a unit's response to its own input (input slices and Hessians,
# maxact, t-SNE) need.
PER_SAMPLE_BN_MODES = ("auto", "eval", "recompute")
STRICT_ENV = "LANDSCAPE_STRICT_STATE"
_NORMS = (nn.modules.batchnorm._BatchNorm,)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _NORMS)]


def resolve_bn(model: nn.Module, bn: str) -> str:
    """``bn`` with ``auto`` replaced by what it means for ``model`` (module docstring)."""
    check_choice("bn", bn, BN_MODES)
    if bn != "auto":
        return bn
    tracked = [m.num_batches_tracked for m in batch_norms(model)
               if m.track_running_stats and m.num_batches_tracked is not None]
    if tracked and all(int(t) == 0 for t in tracked):
        return "recompute"
    return "eval"


def check_per_sample(bn: str, what: str) -> None:
    """Refuse ``bn="batch"`` for an analysis of a unit's response to its own input."""
    check_choice("bn", bn, BN_MODES)
    if bn not in PER_SAMPLE_BN_MODES:
        raise LandscapeError(
            f"bn: {bn!r} does not apply to {what}: with batch statistics a sample's activation "
            f"depends on the other samples of its batch; use {', '.join(PER_SAMPLE_BN_MODES)}")


# ----------------------------------------------------------------------------- the view

def _share_parameters(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters are the model's own tensors."""
    memo = {id(p): p for p in model.parameters()}
    with torch.inference_mode(False):
        return copy.deepcopy(model, memo)


def model_view(model: nn.Module, bn: str = "auto", data: torch.Tensor | None = None,
               batch_size: int | None = None) -> nn.Module:
    """What an analysis evaluates: ``model`` in eval mode with BatchNorm statistics
    as ``bn`` says (module docstring), parameters shared, buffers private.

    ``data`` (and ``batch_size``, default all at once) feed ``recompute``.  The
    view carries the model's attributes (``name``, ``in_shape``, ``task``, ...) and
    ``view.bn_mode``, the resolved mode."""
    mode = resolve_bn(model, bn)
    view = _share_parameters(model).eval()
    norms = batch_norms(view)
    if mode == "batch":
        for m in norms:
            # No running statistics: every forward pass, in eval mode too, uses
            # its batch's statistics and writes nothing.
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    elif mode == "recompute" and norms:
        if data is None or len(data) < 2:
            raise LandscapeError(
                f"bn: {bn!r} ({mode} for this model) needs data, at least 2 samples, to take the "
                "BatchNorm statistics over; pass data, or choose bn='eval'")
        recompute_statistics(view, data, batch_size)
    view.bn_mode = mode
    view._private_view = True  # private: the guard of the call that made it covers the shared parameters
    return view


class _Stop(Exception):
    pass


class _Moments:
    """Per-channel sums of a BatchNorm layer's inputs, in float64."""

    def __init__(self):
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        dims = [d for d in range(x.dim()) if d != 1]
        self.count += x.numel() // x.shape[1]
        self.total = self.total + x.sum(dims)
        self.squares = self.squares + (x * x).sum(dims)

    def store(self, layer: nn.Module) -> None:
        if not self.count:
            return  # the layer is not on the forward path
        mean = self.total / self.count
        var = (self.squares / self.count - mean * mean).clamp_min(0)
        layer.running_mean = mean.to(layer.running_mean)
        layer.running_var = var.to(layer.running_var)
        if layer.num_batches_tracked is not None:
            layer.num_batches_tracked = torch.ones_like(layer.num_batches_tracked)


@torch.no_grad()
def recompute_statistics(module: nn.Module, data: torch.Tensor,
                         batch_size: int | None = None) -> nn.Module:
    """Set every BatchNorm layer's running mean and variance of ``module`` (in
    place; give it a private copy) to the per-channel mean and population
    variance of the layer's input over ``data``, in forward order, each layer's
    input computed in eval mode with the statistics already recomputed before
    it.  Sums are accumulated in float64.

    With all the data in one batch (``batch_size`` None or ``>= len(data)``) one
    forward pass in training mode computes exactly that: each layer normalises
    with its batch's statistics, which are then the data's.  In smaller batches
    the layers are taken one after another, a pass over the data each (stopped
    at the layer), so the result does not depend on the batching."""
    norms = [m for m in batch_norms(module) if m.running_mean is not None]
    size = len(data) if batch_size is None else max(1, int(batch_size))
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        if size >= len(data):
            moments = [_Moments() for _ in norms]
            handles = [m.register_forward_pre_hook(lambda _m, inputs, acc=acc: acc.add(inputs[0]))
                       for m, acc in zip(norms, moments, strict=True)]
            tracked = [m.track_running_stats for m in norms]
            try:
                for m in norms:  # batch statistics, no running-statistics update
                    m.training, m.track_running_stats = True, False
                module(data)
            finally:
                for h in handles:
                    h.remove()
                for m, flag in zip(norms, tracked, strict=True):
                    m.training, m.track_running_stats = False, flag
            for m, acc in zip(norms, moments, strict=True):
                acc.store(m)
            return module
        for layer in _forward_order(module, norms, data[:2]):
            acc = _Moments()

            def hook(_m, inputs, acc=acc):
                acc.add(inputs[0])
                raise _Stop

            handle = layer.register_forward_pre_hook(hook)
            try:
                for i in range(0, len(data), size):
                    try:
                        module(data[i:i + size])
                    except _Stop:
                        pass
            finally:
                handle.remove()
            acc.store(layer)
    finally:
        for m, flag in flags:
            m.training = flag
    return module


def _forward_order(module: nn.Module, norms: list[nn.Module], probe: torch.Tensor) -> list:
    """``norms`` in the order a forward pass reaches them (one sample, eval mode)."""
    order: list[nn.Module] = []
    handles = [m.register_forward_pre_hook(lambda m, _i: order.append(m)) for m in norms]
    try:
        module(probe)
    finally:
        for h in handles:
            h.remove()
    seen = {id(m) for m in order}
    unique = list({id(m): m for m in order}.values())
    return unique + [m for m in norms if id(m) not in seen]


# ----------------------------------------------------------------------------- the guard

def _digest(t: torch.Tensor) -> str:
    data = t.detach().reshape(-1).contiguous().cpu()
    return hashlib.blake2b(data.view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()


class ModelState:
    """What :func:`untouched` compares: buffers (copies), parameters (identity
    and a hash of their bytes), ``requires_grad``, gradients and training flags."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.flags = [(name, m, m.training) for name, m in model.named_modules()]
        self.params = {n: (p, p.requires_grad, _digest(p), p.grad)
                       for n, p in model.named_parameters(remove_duplicate=False)}
        self.buffers = {n: (b, None if b is None else b.detach().clone())
                        for n, b in _named_buffers(model)}

    def differences(self) -> list[str]:
        """What changed since the snapshot, one phrase each."""
        out = []
        now = dict(self.model.named_parameters(remove_duplicate=False))
        for n, (p, req, digest, grad) in self.params.items():
            if now.get(n) is not p:
                out.append(f"parameter {n} replaced")
                continue
            if p.requires_grad != req:
                out.append(f"requires_grad of {n}")
            if p.grad is not grad:
                out.append(f"gradient of {n}")
            if _digest(p) != digest:
                out.append(f"parameter {n}")
        current = dict(_named_buffers(self.model))
        for n, (b, saved) in self.buffers.items():
            cur = current.get(n)
            if (cur is None) != (saved is None) or cur is not b or (
                    saved is not None and not torch.equal(cur, saved)):
                out.append(f"buffer {n}")
        out += [f"training flag of {name or 'the model'}" for name, m, flag in self.flags
                if m.training != flag]
        return out

    def restore(self) -> None:
        """Put back flags, ``requires_grad``, gradients and buffers (not parameter values)."""
        for _, m, flag in self.flags:
            m.training = flag
        for p, req, _, grad in self.params.values():
            p.requires_grad_(req)
            p.grad = grad
        modules = dict(self.model.named_modules())
        for n, (b, saved) in self.buffers.items():
            owner, _, leaf = n.rpartition(".")
            if saved is not None:
                with torch.no_grad():
                    b.copy_(saved)
            modules[owner]._buffers[leaf] = b


def _named_buffers(model: nn.Module):
    """Every registered buffer, ``None`` ones included (they are state too)."""
    for prefix, m in model.named_modules():
        for leaf, b in m._buffers.items():
            yield (f"{prefix}.{leaf}" if prefix else leaf), b


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip() not in ("", "0", "false", "no", "off")


# Models an enclosing guard already watches: a nested guard of the same model
# (an analysis calling another) adds nothing but a second hash of every parameter.
_GUARDED: contextvars.ContextVar[frozenset] = contextvars.ContextVar("guarded", default=frozenset())


@contextmanager
def _guard(model: nn.Module, what: str) -> Iterator[None]:
    guarded = _GUARDED.get()
    if id(model) in guarded:
        yield
        return
    state = ModelState(model)
    token = _GUARDED.set(guarded | {id(model)})
    try:
        yield
    finally:
        _GUARDED.reset(token)
        changed = state.differences()
        if changed:
            params = [c for c in changed if c.startswith("parameter ")]
            state.restore()
            message = (f"{what} changed the model it was given ({', '.join(changed[:6])}"
                       f"{', ...' if len(changed) > 6 else ''})")
            if params:
                raise RuntimeError(message + "; parameters cannot be restored")
            if _strict():
                raise AssertionError(message)
            warnings.warn(message + "; restored", RuntimeWarning, stacklevel=3)


def untouched(target: nn.Module | Callable | None = None, *, argument: str = "model"):
    """Guard a model against changes by an analysis (module docstring).

    As a decorator, ``@untouched`` guards the function's argument named ``model``
    (or ``argument``) when it is an ``nn.Module``; as a context manager,
    ``with untouched(model): ...`` guards ``model``.
    """
    if isinstance(target, nn.Module):
        return _guard(target, "the analysis")
    if target is None:
        return functools.partial(untouched, argument=argument)
    fn = target
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        model = signature.bind_partial(*args, **kwargs).arguments.get(argument)
        if not isinstance(model, nn.Module) or getattr(model, "_private_view", False):
            return fn(*args, **kwargs)
        with _guard(model, fn.__name__):
            return fn(*args, **kwargs)

    return wrapper
