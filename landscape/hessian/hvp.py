"""Hessian-vector products as matrix-free linear operators on flat vectors.

Two Hessians are offered:

* :class:`LossHessian` — ``H = ∇²_θ L(θ)`` of the mean training loss over a
  fixed sample set ``L(θ) = Σ_b (n_b / N) · mean_{i∈b} ℓ(f_θ(x_i), y_i)``,
  where the batches ``b`` of sizes ``n_b`` split the ``N`` samples; so
  ``Hv = Σ_b (n_b / N) H_b v`` equals the full-batch Hessian exactly.
* :class:`InputHessian` — ``H = ∇²_x a_u(x)`` of one unit's activation with
  respect to the network input ``x`` at one anchor point (a conv unit is its
  channel's spatial mean, see :func:`landscape.models.unit_activations`).

Products are exact (Pearlmutter, *Fast exact multiplication by the Hessian*,
Neural Computation 1994) and come from one of two engines:

``double-backward``       ``Hv = ∂(∇L · v)/∂θ``: the first-order graph is built
                          once with ``create_graph=True`` and reused for every
                          product (``retain_graph``); several probes go through
                          one backward pass with ``is_grads_batched``.
``forward-over-reverse``  ``Hv = jvp(grad L, θ, v)`` with :mod:`torch.func`,
                          several probes at once with ``vmap``; nothing is cached,
                          so it suits data split into many batches.

Vectors are flat: ``matvec(v)`` takes ``(dim,)``, ``matmat(V)`` takes ``(k, dim)``
(one probe per row, the layout ``vmap`` and ``is_grads_batched`` use) and
returns the same shape; probes are processed ``chunk_size`` at a time to bound
memory.  ``n_products`` counts Hessian-vector products (one per probe).

The user's model is never modified: parameters enter as detached tensors
through :func:`torch.func.functional_call` (or as detached leaves), no
``.grad`` is written, and the modules' training flags are restored after every
forward pass; :class:`LossHessian` evaluates a private view of the model whose
BatchNorm statistics are those ``bn`` asks for (:mod:`landscape.view`).

Example — a linear map ``W`` under the mean squared error
``L = 1/(N d) Σ_n ‖W x_n − x_n‖²`` has ``H = 2/(N d) · I_d ⊗ XᵀX``::

    >>> import torch
    >>> lin = torch.nn.Linear(3, 3, bias=False).double(); lin.task = "reconstruct"
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> op = LossHessian(lin, x, None)
    >>> dense = 2 / (5 * 3) * torch.kron(torch.eye(3, dtype=x.dtype), x.T @ x)
    >>> bool(torch.allclose(op.matmat(torch.eye(9, dtype=x.dtype)), dense))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import LandscapeError, check_choice
from ..losses import LossFn, Objective
from ..models import eval_mode, unit_activations
from ..view import model_view

ENGINES = ("auto", "double-backward", "forward-over-reverse")


class HessianOperator:
    """A symmetric matrix-free operator on flat vectors of length ``dim``.

    Subclasses implement ``_matmat(V)`` for ``V`` of shape ``(k, dim)`` with
    ``k <= chunk_size``; this class chunks, counts and checks shapes.
    """

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __init__(self, chunk_size: int | None = 8, batch_probes: bool | None = None):
        self.batch_probes = batch_probes
        if chunk_size is not None and chunk_size < 1:
            raise LandscapeError(f"chunk_size: must be >= 1 or None, got {chunk_size}")
        self.chunk_size = chunk_size
        self.n_products = 0
        # Called with the number of products after each matmat (a progress bar's update).
        self.on_products: Callable[[int], object] | None = None

    @property
    def batched(self) -> bool:
        """Whether probes share one vmapped pass: ``batch_probes``, or by default on
        accelerators only (on the CPU a loop measured faster)."""
        if self.batch_probes is None:
            return self.device.type != "cpu"
        return self.batch_probes

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat ``v`` of shape ``(dim,)``."""
        return self.matmat(v.reshape(1, -1))[0]

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``(H Vᵀ)ᵀ``: the product with each row of ``V`` (shape ``(k, dim)``), in
        memory of its own."""
        if V.dim() != 2 or V.shape[1] != self.dim:
            raise ValueError(f"matmat: expected shape (k, {self.dim}), got {tuple(V.shape)}")
        V = V.to(device=self.device, dtype=self.dtype)
        step = V.shape[0] if self.chunk_size is None else self.chunk_size
        out = [self._matmat(V[i:i + step]) for i in range(0, V.shape[0], step)]
        self.n_products += V.shape[0]
        if self.on_products is not None:
            self.on_products(V.shape[0])
        if len(out) == 1:  # fresh memory that callers may update in place
            shared = out[0].untyped_storage().data_ptr() == V.untyped_storage().data_ptr()
            return out[0].clone() if shared else out[0]
        return torch.cat(out) if out else V.clone()

    def dense(self) -> torch.Tensor:
        """The full ``(dim, dim)`` matrix (``dim`` products): for tests and tiny problems."""
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))


class DenseOperator(HessianOperator):
    """A symmetric matrix given explicitly, behind the operator interface."""

    def __init__(self, matrix: torch.Tensor, chunk_size: int | None = None):
        super().__init__(chunk_size)
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"DenseOperator: expected a square matrix, got {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return V @ self.matrix.T


# ----------------------------------------------------------------------------- helpers

def flatten(tensors) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _split_rows(V: torch.Tensor, shapes: list[torch.Size]) -> list[torch.Tensor]:
    """``(k, dim)`` -> one ``(k, *shape)`` tensor per parameter."""
    sizes = [s.numel() for s in shapes]
    chunks = V.split(sizes, dim=1)
    return [c.reshape(V.shape[0], *shape) for c, shape in zip(chunks, shapes, strict=True)]


def _batched_grad(outputs: list[torch.Tensor], inputs: list[torch.Tensor],
                  V: torch.Tensor, batch: bool) -> torch.Tensor:
    """Rows of ``V`` pulled back through ``outputs`` -> ``(k, Σ numel(inputs))``.

    ``outputs`` are first derivatives (built with ``create_graph``); outputs that
    do not depend on ``inputs`` contribute zero.  With ``batch`` the rows share
    one vmapped backward pass (``is_grads_batched``), otherwise one pass each.
    """
    shapes = [o.shape for o in outputs]
    rows = _split_rows(V, shapes)
    keep = [i for i, o in enumerate(outputs) if o.requires_grad]
    k = V.shape[0]
    if not keep:
        return V.new_zeros(k, sum(t.numel() for t in inputs))
    outs = [outputs[i] for i in keep]
    if k == 1 or not batch:
        # One backward pass per row, each flattened straight into its row of the result.
        result = V.new_empty(k, sum(t.numel() for t in inputs))
        for r in range(k):
            grads = torch.autograd.grad(outs, inputs, [rows[i][r] for i in keep],
                                        retain_graph=True, allow_unused=True,
                                        materialize_grads=True)
            torch.cat([g.reshape(-1) for g in grads], out=result[r])
        return result
    grads = torch.autograd.grad(outs, inputs, [rows[i] for i in keep], retain_graph=True,
                                allow_unused=True, materialize_grads=True, is_grads_batched=True)
    return torch.cat([g.reshape(k, -1) for g in grads], dim=1)


# ----------------------------------------------------------------------------- loss Hessian

class LossHessian(HessianOperator):
    """Hessian of the mean training loss over ``(x, y)`` with respect to the
    model's trainable parameters (in ``model.named_parameters()`` order).

    ``batch_size``: split the samples into batches of this size (the loss and
    its Hessian are the size-weighted mean over batches); ``None`` = one batch.
    ``engine``: ``"auto"`` uses the cached double-backward graph when the data
    fit in one batch and forward-over-reverse otherwise.
    ``loss_fn``: a name of :mod:`landscape.losses` or ``loss_fn(output, target)
    -> scalar mean`` over the batch (default: cross-entropy, or MSE for an
    autoencoder); weighting each batch by its size makes the Hessian that of the
    mean over all samples.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                 batch_size: int | None = None, engine: str = "auto", bn: str = "eval",
                 chunk_size: int | None = 8, batch_probes: bool | None = None,
                 loss_fn: str | LossFn | None = None):
        super().__init__(chunk_size, batch_probes)
        self.objective = Objective(model, loss_fn)
        check_choice("engine", engine, ENGINES)
        if batch_size is not None and batch_size < 1:
            raise LandscapeError(f"batch_size: must be >= 1 or None, got {batch_size}")
        if len(x) == 0:
            raise LandscapeError("x: no samples")
        if y is not None and len(y) != len(x):
            raise LandscapeError(f"y: {len(y)} labels for {len(x)} samples")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise LandscapeError("model: has no trainable parameters")
        # A private view carries the BatchNorm statistics ``bn`` asks for
        # (landscape.view); the user's model is only read.
        model = model_view(model, bn, x, batch_size)
        self.model = model
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.params = [p.detach() for _, p in named]
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.dim = sum(p.numel() for p in self.params)
        self.bn_mode = model.bn_mode  # what ``bn`` resolved to
        n = len(x)
        size = n if batch_size is None else min(batch_size, n)
        self.batches = [(x[i:i + size], None if y is None else y[i:i + size])
                        for i in range(0, n, size)]
        self.n_samples = n
        self.engine = engine
        if engine == "auto":
            self.engine = "double-backward" if len(self.batches) == 1 else "forward-over-reverse"
        self._cache: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    # -- the loss as a function of the parameters
    def _inputs(self, xb: torch.Tensor, yb: torch.Tensor | None):
        if xb.is_floating_point():
            xb = xb.to(device=self.device, dtype=self.dtype)
        if yb is not None:
            yb = yb.to(self.device)
        return xb, yb

    def _loss(self, params: dict[str, torch.Tensor], xb: torch.Tensor,
              yb: torch.Tensor | None) -> torch.Tensor:
        out = torch.func.functional_call(self.model, (params, self.buffers), (xb,))
        return self.objective(out, xb, yb)

    def loss(self) -> float:
        """The mean loss over all samples (what this operator differentiates)."""
        total = 0.0
        with torch.no_grad(), eval_mode(self.model):
            for xb, yb in self.batches:
                xb, yb = self._inputs(xb, yb)
                params = dict(zip(self.names, self.params, strict=True))
                total += float(self._loss(params, xb, yb)) * len(xb)
        return total / self.n_samples

    def gradient(self) -> torch.Tensor:
        """The flat gradient of the mean loss (one backward pass per batch)."""
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for xb, yb in self.batches:
            xb, yb = self._inputs(xb, yb)
            leaves = [p.requires_grad_(True) for p in (q.detach() for q in self.params)]
            with eval_mode(self.model):
                loss = self._loss(dict(zip(self.names, leaves, strict=True)), xb, yb)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
            total += flatten(grads) * (len(xb) / self.n_samples)
        return total

    # -- engines
    def _first_order_graph(self, xb, yb) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        leaves = [p.detach().requires_grad_(True) for p in self.params]
        with eval_mode(self.model):
            loss = self._loss(dict(zip(self.names, leaves, strict=True)), xb, yb)
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True,
                                    materialize_grads=True)
        return list(grads), leaves

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = None
        for xb, yb in self.batches:
            weight = len(xb) / self.n_samples
            if self.engine == "double-backward":
                if len(self.batches) == 1:
                    if self._cache is None:
                        self._cache = self._first_order_graph(*self._inputs(xb, yb))
                    grads, leaves = self._cache
                else:
                    grads, leaves = self._first_order_graph(*self._inputs(xb, yb))
                part = _batched_grad(grads, leaves, V, self.batched)
            else:
                part = self._forward_over_reverse(V, *self._inputs(xb, yb))
            # Accumulated in place: large fresh buffers cost page faults on every product.
            if out is None:
                out = part if weight == 1 else part.mul_(weight)
            else:
                out.add_(part, alpha=weight)
        return out

    def _forward_over_reverse(self, V: torch.Tensor, xb, yb) -> torch.Tensor:
        params = dict(zip(self.names, self.params, strict=True))
        grad_fn = torch.func.grad(lambda p: self._loss(p, xb, yb))

        def hvp(*tangent: torch.Tensor) -> torch.Tensor:
            tangents = dict(zip(self.names, tangent, strict=True))
            _, tan = torch.func.jvp(grad_fn, (params,), (tangents,))
            return flatten(tan[n] for n in self.names)

        rows = _split_rows(V, self.shapes)
        with eval_mode(self.model):
            if not self.batched:
                return torch.stack([hvp(*(r[i] for r in rows)) for i in range(V.shape[0])])
            return torch.func.vmap(hvp)(*rows)

    def release(self) -> None:
        """Free the cached first-order graph."""
        self._cache = None

    def to_parameters(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector as ``{parameter name: tensor of that parameter's shape}``."""
        sizes = [s.numel() for s in self.shapes]
        parts = zip(self.names, v.split(sizes), self.shapes, strict=True)
        return {n: c.reshape(s) for n, c, s in parts}


# ----------------------------------------------------------------------------- input Hessian

class InputHessian(HessianOperator):
    """Hessian ``∇²_x a_u(x)`` of unit ``unit`` of ``layer`` at input ``anchor``
    (shape ``model.in_shape``, or with a leading batch dimension of 1); the flat
    vector is the flattened input."""

    def __init__(self, model: nn.Module, layer: str | None, unit: int, anchor: torch.Tensor,
                 engine: str = "auto", chunk_size: int | None = 8,
                 batch_probes: bool | None = None):
        super().__init__(chunk_size, batch_probes)
        check_choice("engine", engine, ENGINES)
        p = next(model.parameters(), None)
        self.dtype = p.dtype if p is not None else anchor.dtype
        self.device = p.device if p is not None else anchor.device
        self.model = model
        self.layer = layer
        self.unit = int(unit)
        default = anchor.shape[1:] if anchor.dim() > 3 else anchor.shape
        shape = tuple(getattr(model, "in_shape", default))
        if anchor.numel() != int(torch.tensor(shape).prod()):
            raise LandscapeError(
                f"anchor: expected an input of shape {shape}, got {tuple(anchor.shape)}")
        self.shape = shape
        self.anchor = anchor.detach().reshape(-1).to(device=self.device, dtype=self.dtype)
        self.dim = self.anchor.numel()
        self.engine = "double-backward" if engine == "auto" else engine
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def activation(self, flat_x: torch.Tensor) -> torch.Tensor:
        """``a_u(x)`` for a flat input (a scalar tensor)."""
        return unit_activations(self.model, self.layer, flat_x.reshape(1, *self.shape),
                                [self.unit])[0, 0]

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self.engine == "double-backward":
            if self._cache is None:
                leaf = self.anchor.clone().requires_grad_(True)
                with eval_mode(self.model):
                    act = self.activation(leaf)
                (grad,) = torch.autograd.grad(act, leaf, create_graph=True)
                self._cache = (grad, leaf)
            grad, leaf = self._cache
            return _batched_grad([grad], [leaf], V, self.batched)
        grad_fn = torch.func.grad(self.activation)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(grad_fn, (self.anchor,), (v,))[1]

        with eval_mode(self.model):
            if not self.batched:
                return torch.stack([hvp(v) for v in V])
            return torch.func.vmap(hvp)(V)

    def release(self) -> None:
        """Free the cached first-order graph."""
        self._cache = None
