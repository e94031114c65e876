"""Weight initialisation schemes and the bias scale.

``initialize(model, init, bias_scale)`` re-draws the weight of every linear,
convolutional, transposed-convolutional and embedding layer with ``init`` and
then sets the biases:

* ``default``        PyTorch's (or torchvision's) own initialisation, untouched;
* ``xavier``         Glorot & Bengio (2010), uniform, gain 1;
* ``xavier-normal``  the same, normal;
* ``kaiming``        He et al. (2015), normal, fan-in, ReLU gain;
* ``kaiming-uniform`` the same, uniform;
* ``orthogonal``     Saxe et al. (2014), gain 1;
* ``normal``         N(0, weight_std²), ``weight_std`` default 0.02.

Bias scale S: every bias, and the shift of every normalisation layer, is drawn
from N(0, S²) after the weight init (S = 0: zero biases).  ``bias_scale=None``
keeps what the init's reference does: zero biases for every named scheme,
PyTorch's own biases for ``default``.  Normalisation layers' scales (LayerNorm
included) are reset to 1 by every named scheme, as their references do.

An embedding table ``(num, dim)`` is drawn as the linear map from one-hot
inputs that it is, whose weight is its transpose: fan-in ``num``, fan-out
``dim`` (xavier: U(±sqrt(6 / (num + dim))); kaiming: N(0, 2 / num); normal:
N(0, weight_std²), GPT-2's 0.02 by default).  A tensor shared by two layers (a
transformer's tied embedding and output head) is drawn once, by the first
layer that holds it (the embedding).  Embeddings are weights, not biases: the
bias scale leaves them alone.  For the transformer (:mod:`landscape.models.transformer`)
``default`` is its own GPT-2 initialisation; each named scheme re-draws the
token and position tables, the attention's ``qkv`` and ``proj`` and the MLP's
``fc`` and ``proj`` (without GPT-2's 1/sqrt(2 depth) on the projections),
zeroes the biases and sets LayerNorms to weight 1, shift 0.

Randomness comes from the global generator, which :func:`landscape.build_model`
seeds inside ``torch.random.fork_rng`` so the caller's state is untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import LandscapeError

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                 nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm)

DEFAULT_WEIGHT_STD = 0.02


def _normal(weight_std):
    std = DEFAULT_WEIGHT_STD if weight_std is None else float(weight_std)
    if not std > 0:
        raise LandscapeError(f"weight_std: must be > 0, got {weight_std}")
    return lambda w: nn.init.normal_(w, 0.0, std)


INITS = {
    "default": None,
    "xavier": lambda w: nn.init.xavier_uniform_(w),
    "xavier-normal": lambda w: nn.init.xavier_normal_(w),
    "kaiming": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    "kaiming-uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
    "orthogonal": lambda w: nn.init.orthogonal_(w),
    "normal": "normal",
}


def bias_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Biases of weight layers and shifts of normalisation layers."""
    out = []
    for m in model.modules():
        if isinstance(m, WEIGHT_LAYERS + NORM_LAYERS) and getattr(m, "bias", None) is not None:
            out.append(m.bias)
    return out


@torch.no_grad()
def initialize(model: nn.Module, init: str = "default", bias_scale: float | None = None,
               weight_std: float | None = None) -> nn.Module:
    """Initialise ``model`` in place (see the module docstring) and return it."""
    if init not in INITS:
        raise LandscapeError(f"init: unknown value {init!r}; choose one of {', '.join(INITS)}")
    if bias_scale is not None:
        bias_scale = float(bias_scale)
        if not bias_scale >= 0:
            raise LandscapeError(f"bias_scale: must be >= 0, got {bias_scale}")
    if weight_std is not None and init != "normal":
        raise LandscapeError(f"weight_std applies to init 'normal' only, not {init!r}")
    rule = _normal(weight_std) if init == "normal" else INITS[init]
    if rule is not None:
        drawn: set[int] = set()  # a tensor shared by two layers (tied embeddings) is drawn once
        for m in model.modules():
            if isinstance(m, WEIGHT_LAYERS + (nn.Embedding,)):
                if id(m.weight) not in drawn:
                    drawn.add(id(m.weight))
                    # An embedding table (num, dim) is the linear map from one-hot inputs
                    # whose weight is its transpose: fan-in num, fan-out dim.
                    rule(m.weight.t() if isinstance(m, nn.Embedding) else m.weight)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
            elif isinstance(m, NORM_LAYERS):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
    if bias_scale is not None:
        for b in bias_tensors(model):
            if bias_scale == 0:
                b.zero_()
            else:
                b.normal_(0.0, bias_scale)
    return model
