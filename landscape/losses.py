"""Losses: ``loss_fn(output, target) -> scalar``, the mean over every sample (and
every token of a sequence).

Analyses built on a loss (:func:`landscape.loss_slice`,
:func:`landscape.hessian_spectrum`, :func:`landscape.top_eigenvectors`,
:func:`landscape.train`) take ``loss_fn``: one of the names below or any callable
with that signature.  They evaluate it on batches of ``n_b`` of the ``N``
samples and weight each batch by ``n_b / N``, so a loss that is a mean over the
samples of its batch gives the exact mean over all samples (for sequences, over
all tokens when every sequence has the same length).

``cross-entropy``  logits ``(..., V)`` against class indices ``(...)``: ``(B, V)``
                   with ``(B,)``, or next-token logits ``(B, T, V)`` with
                   ``(B, T)``, averaged over all ``B·T`` tokens; or against
                   class probabilities of the logits' shape
``nll``            the same on log-probabilities
``mse``            mean squared error over every element
``bce``            binary cross-entropy on logits (stable log-sum-exp form)
                   against targets in [0, 1]

``mse`` and ``bce`` take targets of the output's shape, or integer class
labels of one dimension less (turned into one-hot rows), or any targets with as
many elements as the output.  The target is the label ``y``, or the input ``x``
itself for a model whose ``task`` is ``"reconstruct"`` (the autoencoder) or
when no labels are given.  Default: ``cross-entropy``, or ``mse`` for a model
that reconstructs its input.

Example: for a linear model ``f(x) = W x`` under ``mse``, the loss Hessian is
``2/(N d) · I_d ⊗ XᵀX`` (``d`` outputs, ``N`` samples).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LandscapeError, check_choice

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _class_shapes(name: str, output: torch.Tensor, target: torch.Tensor) -> None:
    if output.dim() < 1 or tuple(target.shape) != tuple(output.shape[:-1]):
        raise LandscapeError(
            f"loss {name}: outputs of shape {tuple(output.shape)} (classes last) need class "
            f"indices of shape {tuple(output.shape[:-1])}, got targets of shape "
            f"{tuple(target.shape)}"
        )


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (classes last) against indices or probabilities."""
    classes = output.shape[-1]
    if target.is_floating_point() and target.shape == output.shape:
        return F.cross_entropy(output.reshape(-1, classes), target.reshape(-1, classes))
    _class_shapes("cross-entropy", output, target)
    return F.cross_entropy(output.reshape(-1, classes), target.reshape(-1))


def nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of log-probabilities (classes last) at the indices."""
    _class_shapes("nll", output, target)
    return F.nll_loss(output.reshape(-1, output.shape[-1]), target.reshape(-1))


def _dense_target(name: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``target`` as a float tensor of ``output``'s shape (class indices one-hot)."""
    if not target.is_floating_point() and output.dim() >= 1 \
            and tuple(target.shape) == tuple(output.shape[:-1]) and output.shape[-1] > 1:
        classes = torch.arange(output.shape[-1], device=output.device)
        return (target.unsqueeze(-1) == classes).to(output.dtype)
    if target.numel() != output.numel():
        raise LandscapeError(
            f"loss {name}: outputs of shape {tuple(output.shape)} and targets of shape "
            f"{tuple(target.shape)} do not match"
        )
    return target.reshape(output.shape).to(output.dtype)


# mse and bce are written out rather than calling F.mse_loss and
# F.binary_cross_entropy_with_logits, whose derivatives fail under forward-mode
# AD over reverse mode (the forward-over-reverse Hessian engine) in torch 2.x.

def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element."""
    return ((output - _dense_target("mse", output, target)) ** 2).mean()


def bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of logits ``z`` against targets ``t`` in [0, 1]:
    ``softplus(z) - t z``, the stable form of ``-t log σ(z) - (1-t) log(1-σ(z))``."""
    return (F.softplus(output) - output * _dense_target("bce", output, target)).mean()


LOSSES: dict[str, LossFn] = {"cross-entropy": cross_entropy, "mse": mse, "nll": nll, "bce": bce}


def default_loss(model: nn.Module) -> str:
    """``mse`` for a model that reconstructs its input, else ``cross-entropy``."""
    return "mse" if getattr(model, "task", "classify") == "reconstruct" else "cross-entropy"


def loss_name(loss_fn: str | LossFn | None, model: nn.Module | None = None) -> str:
    """What to call ``loss_fn`` in a result's provenance."""
    if loss_fn is None:
        return default_loss(model)
    if isinstance(loss_fn, str):
        return loss_fn
    return getattr(loss_fn, "__name__", type(loss_fn).__name__)


class Objective:
    """``loss_fn`` bound to a model: ``objective(output, x, y)`` is the mean loss
    of a batch, its target chosen as the module docstring says."""

    def __init__(self, model: nn.Module, loss_fn: str | LossFn | None = None):
        if loss_fn is None:
            loss_fn = default_loss(model)
        if isinstance(loss_fn, str):
            check_choice("loss", loss_fn, LOSSES)
            self.fn = LOSSES[loss_fn]
        elif callable(loss_fn):
            self.fn = loss_fn
        else:
            raise LandscapeError(f"loss_fn: expected a name ({', '.join(LOSSES)}) or a callable "
                                 f"(output, target) -> scalar, got {type(loss_fn).__name__}")
        self.name = loss_name(loss_fn, model)
        self.reconstruct = getattr(model, "task", "classify") == "reconstruct"

    def target(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return x if self.reconstruct or y is None else y

    def __call__(self, output: torch.Tensor, x: torch.Tensor,
                 y: torch.Tensor | None) -> torch.Tensor:
        loss = self.fn(output, self.target(x, y))
        if loss.dim() != 0:
            raise LandscapeError(f"loss_fn {self.name!r}: must return a scalar mean, got a tensor "
                                 f"of shape {tuple(loss.shape)}")
        return loss

    def counts(self, output: torch.Tensor, y: torch.Tensor | None) -> bool:
        """Whether ``output`` holds class scores for the labels ``y`` (so that
        accuracy means something)."""
        return (not self.reconstruct and y is not None and not y.is_floating_point()
                and output.dim() >= 1 and tuple(output.shape[:-1]) == tuple(y.shape))

    @staticmethod
    def correct(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many labels (samples, or tokens of a sequence) the top score hits."""
        return (output.argmax(-1) == y).sum()
