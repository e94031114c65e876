"""The built-in vision models: ``resnet18``, ``resnet18-noskip``, ``mlp``, ``cnn``
and ``autoencoder``.

``resnet18-noskip`` is torchvision's ResNet-18 with the identity/downsample
shortcut of every block removed, the "no skip connections" network of
Li et al., *Visualizing the Loss Landscape of Neural Nets* (NeurIPS 2018).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from ..errors import LandscapeError
from .registry import register

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise LandscapeError(
            f"activation: unknown value {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]()


def _resnet18(num_classes: int, in_shape, skip: bool) -> nn.Module:
    from torchvision.models.resnet import BasicBlock, ResNet

    block = BasicBlock if skip else _plain_block_class()
    model = ResNet(block, [2, 2, 2, 2], num_classes=num_classes)
    if in_shape[0] != 3:
        # Same stem, other channel count (e.g. greyscale inputs).
        model.conv1 = nn.Conv2d(in_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.default_layer = "avgpool"
    return model


def _plain_block_class():
    from torchvision.models.resnet import BasicBlock

    class PlainBlock(BasicBlock):
        """A ResNet basic block without its shortcut: out = relu(bn2(conv2(relu(bn1(conv1(x))))))."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.downsample = None  # no shortcut, so no projection either

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)))

    return PlainBlock


def _mlp(num_classes: int, in_shape, width: int = 64, depth: int = 2,
         activation: str = "relu") -> nn.Module:
    if depth < 1 or width < 1:
        raise LandscapeError(f"mlp: width and depth must be >= 1, got width={width}, depth={depth}")
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    fan_in = math.prod(in_shape)
    for i in range(1, depth + 1):
        layers += [(f"fc{i}", nn.Linear(fan_in, width)), (f"act{i}", _activation(activation))]
        fan_in = width
    layers.append(("head", nn.Linear(fan_in, num_classes)))
    model = nn.Sequential(OrderedDict(layers))
    model.default_layer = f"act{depth}"
    return model


def _cnn(num_classes: int, in_shape, width: int = 16, activation: str = "relu") -> nn.Module:
    c = in_shape[0]
    w = width
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, w, 3, padding=1)), ("act1", _activation(activation)),
        ("pool1", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv2", nn.Conv2d(w, 2 * w, 3, padding=1)), ("act2", _activation(activation)),
        ("pool2", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv3", nn.Conv2d(2 * w, 4 * w, 3, padding=1)), ("act3", _activation(activation)),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ("head", nn.Linear(4 * w, num_classes)),
    ]))
    model.default_layer = "act3"
    return model


class ConvAutoencoder(nn.Module):
    """A small convolutional autoencoder: two stride-2 convolutions down to a
    linear code, and the mirror image back up.  Its output has the input's shape."""

    def __init__(self, in_shape, width: int = 16, code: int = 32, activation: str = "relu"):
        super().__init__()
        c, h, w = in_shape
        if h % 4 or w % 4:
            raise LandscapeError(
                f"autoencoder: input height and width must be multiples of 4, got {h}x{w}"
            )
        feat = (2 * width, h // 4, w // 4)
        n_feat = feat[0] * feat[1] * feat[2]
        self.encoder = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(c, width, 3, stride=2, padding=1)), ("act1", _activation(activation)),
            ("conv2", nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)),
            ("act2", _activation(activation)),
            ("flatten", nn.Flatten()), ("code", nn.Linear(n_feat, code)),
        ]))
        self.decoder = nn.Sequential(OrderedDict([
            ("fc", nn.Linear(code, n_feat)), ("act0", _activation(activation)),
            ("unflatten", nn.Unflatten(1, feat)),
            ("deconv1", nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)),
            ("act1", _activation(activation)),
            ("deconv2", nn.ConvTranspose2d(width, c, 4, stride=2, padding=1)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _autoencoder(num_classes: int, in_shape, width: int = 16, code: int = 32,
                 activation: str = "relu") -> nn.Module:
    model = ConvAutoencoder(in_shape, width=width, code=code, activation=activation)
    model.default_layer = "encoder"
    return model


register("resnet18", lambda k, s: _resnet18(k, s, skip=True), (3, 32, 32), "classify")
register("resnet18-noskip", lambda k, s: _resnet18(k, s, skip=False), (3, 32, 32), "classify")
register("mlp", _mlp, (1, 8, 8), "classify", ("width", "depth", "activation"))
register("cnn", _cnn, (3, 32, 32), "classify", ("width", "activation"))
register("autoencoder", _autoencoder, (3, 32, 32), "reconstruct", ("width", "code", "activation"))
