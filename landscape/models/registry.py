"""The registry of model families and :func:`build_model`.

Each family's file (:mod:`.zoo`, :mod:`.transformer`, :mod:`.minilm`) adds its
models with :func:`register`; a new family is one file that does the same and
one import line in :mod:`landscape.models`.  Every model built here carries
attributes that serve as defaults (any ``nn.Module`` works with every analysis:
shapes come from the data given):

``model.name``           the registry name (``"resnet18"``, ``"mlp"``, ...)
``model.in_shape``       the shape of one input, ``(C, H, W)``; ``(T,)`` token ids for
                         the token models
``model.task``           ``"classify"`` (cross-entropy on labels; for a sequence model
                         every position is classified, its label being the next token),
                         ``"reconstruct"`` (mean squared error against the input) or
                         ``"embed"`` (a sentence embedding: no training loss)
``model.default_layer``  the module whose output feeds the head; the default
                         layer of every unit-level analysis
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ..errors import LandscapeError
from .units import parse_shape
from .user import is_model_spec, user_model


class Family(NamedTuple):
    """A registered model: ``builder(num_classes, in_shape, **options)``, its
    default input shape, its task and the options its builder accepts."""

    builder: Callable[..., nn.Module]
    in_shape: tuple[int, ...]
    task: str
    options: tuple[str, ...] = ()


MODELS: dict[str, Family] = {}


def register(name: str, builder: Callable[..., nn.Module], in_shape: tuple[int, ...], task: str,
             options: tuple[str, ...] = ()) -> None:
    """Add model ``name`` to :data:`MODELS`.  ``in_shape`` of one entry (a token
    window) means the model sets its own input shape."""
    if name in MODELS:
        raise LandscapeError(f"model {name!r} is registered twice")
    MODELS[name] = Family(builder, tuple(in_shape), task, tuple(options))


def build_model(name: str, init: str = "default", bias_scale: float | None = None, seed: int = 0,
                num_classes: int = 10, in_shape=None, weight_std: float | None = None,
                model_args: dict | None = None, **options) -> nn.Module:
    """Build a model, initialised with ``init`` and seeded by ``seed``.

    ``name``: a registered model (:data:`MODELS`), or a user's factory
    ``PATH.py:FUNCTION`` / ``package.module:FUNCTION`` that returns an
    ``nn.Module`` and is called with ``model_args`` as keyword arguments (see
    :func:`user_model`).  The same arguments give bit-identical weights.
    ``options`` are a registered model's own (``width``, ``depth``,
    ``activation``, ``code``); ``None`` values are ignored.
    """
    from ..init import initialize

    options = {k: v for k, v in options.items() if v is not None}
    if name not in MODELS and is_model_spec(name):
        if options:
            raise LandscapeError(f"model {name!r}: options {', '.join(sorted(options))} belong to "
                                 "the registered models; pass a user model's arguments with "
                                 "--model-args JSON")
        return user_model(name, model_args, init=init, bias_scale=bias_scale, seed=seed,
                          weight_std=weight_std, in_shape=in_shape)
    if name not in MODELS:
        raise LandscapeError(f"model: unknown value {name!r}; choose one of {', '.join(MODELS)}, "
                             "or a factory PATH.py:FUNCTION or package.module:FUNCTION")
    if model_args:
        raise LandscapeError(f"model-args: apply to user models (PATH.py:FUNCTION), not {name!r}")
    builder, default_shape, task, accepted = MODELS[name]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise LandscapeError(f"model {name!r} takes no option {', '.join(unknown)} (its options: {allowed})")
    if len(default_shape) != 3:  # a token model: its input shape is its own
        if in_shape is not None:
            raise LandscapeError(f"model {name!r} takes no in_shape; its input is a window of "
                                 "token ids (see its --context)")
        shape = None
    else:
        shape = parse_shape(in_shape) if in_shape is not None else default_shape
    if num_classes < 1:
        raise LandscapeError(f"num_classes: must be >= 1, got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(num_classes, shape, **options)
        initialize(model, init, bias_scale=bias_scale, weight_std=weight_std)
    model.name = name
    model.in_shape = tuple(getattr(model, "in_shape", None) or shape)
    model.task = task
    model.num_classes = getattr(model, "num_classes", num_classes)
    model.init = init
    model.bias_scale = None if bias_scale is None else float(bias_scale)
    # How to draw another network of this kind (null models): every argument.
    model.recipe = dict(name=name, init=init, bias_scale=model.bias_scale,
                        weight_std=None if weight_std is None else float(weight_std), seed=seed,
                        num_classes=num_classes, in_shape=None if shape is None else list(shape),
                        **options)
    return model

