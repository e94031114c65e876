"""Model registry and access to single units.

Every model built here carries attributes that serve as defaults (any
``nn.Module`` works with every analysis: shapes come from the data given):

``model.name``           the registry name (``"resnet18"``, ``"mlp"``, ...)
``model.in_shape``       the shape of one input, ``(C, H, W)``; ``(T,)`` token ids for
                         the transformer
``model.task``           ``"classify"`` (cross-entropy on labels; for a sequence model
                         every position is classified, its label being the next token)
                         or ``"reconstruct"`` (mean squared error against the input)
``model.default_layer``  the module whose output feeds the head; the default
                         layer of every unit-level analysis

``transformer`` is the byte-level decoder of :mod:`landscape.transformer`.

``resnet18-noskip`` is torchvision's ResNet-18 with the identity/downsample
shortcut of every block removed, the "no skip connections" network of
Li et al., *Visualizing the Loss Landscape of Neural Nets* (NeurIPS 2018).
"""

from __future__ import annotations

import json
import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path

import torch
from torch import nn

from .errors import LandscapeError

DEFAULT_CONTEXT = 64  # landscape.transformer.DEFAULTS["context"]

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


def _transformer(num_classes: int, in_shape, **options) -> nn.Module:
    from .transformer import build_transformer

    return build_transformer(num_classes, in_shape, **options)


# name -> (builder, default input shape, task, options the builder accepts)
MODELS: dict[str, tuple[Callable[..., nn.Module], tuple[int, ...], str, tuple[str, ...]]] = {
    "resnet18": (lambda k, s: _resnet18(k, s, skip=True), (3, 32, 32), "classify", ()),
    "resnet18-noskip": (lambda k, s: _resnet18(k, s, skip=False), (3, 32, 32), "classify", ()),
    "mlp": (_mlp, (1, 8, 8), "classify", ("width", "depth", "activation")),
    "cnn": (_cnn, (3, 32, 32), "classify", ("width", "activation")),
    "autoencoder": (_autoencoder, (3, 32, 32), "reconstruct", ("width", "code", "activation")),
    # Token windows: the input shape is (context,), set by the model itself.
    "transformer": (_transformer, (DEFAULT_CONTEXT,), "classify",
                    ("width", "depth", "heads", "context", "tied", "position")),
    # The pretrained WordPiece encoder of landscape.minilm; output: the sentence embedding.
    "minilm": (lambda k, s, **o: import_module(".minilm", __package__).build_minilm(k, s, **o),
               (64,), "embed", ("context", "position", "pretrained")),
}


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
    from .init import initialize

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


# ----------------------------------------------------------------------------- user models

def is_model_spec(name: str) -> bool:
    """Whether ``name`` reads as ``PATH.py:FUNCTION`` or ``package.module:FUNCTION``."""
    return isinstance(name, str) and ":" in name


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first_line(exc: BaseException) -> str:
    from .validate import first_line

    return first_line(exc)


def load_factory(spec: str) -> tuple[Callable[..., nn.Module], Path | None]:
    """The function named by ``PATH.py:FUNCTION`` or ``package.module:FUNCTION``
    and the file that defines it."""
    import importlib
    import importlib.util

    source, _, function = spec.rpartition(":")
    if not source or not function.isidentifier():
        raise LandscapeError(f"model: expected PATH.py:FUNCTION or package.module:FUNCTION, "
                             f"got {spec!r}")
    if source.endswith(".py"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise LandscapeError(f"model: no such file {source!r} (from {spec!r})")
        digest = _sha256(path)
        module_name = f"landscape_user_model_{digest[:16]}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            try:
                loader_spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:  # a script's sys.exit() is its failure too
                raise LandscapeError(f"model: {source!r} fails to import ({_first_line(exc)})") from None
            sys.modules[module_name] = module  # so that workers and pickles find it again
        where = repr(source)
    else:
        if not all(part.isidentifier() for part in source.split(".")):
            raise LandscapeError(f"model: {source!r} is neither a .py file nor a module name "
                                 f"(in {spec!r})")
        try:
            module = importlib.import_module(source)
        except (Exception, SystemExit) as exc:
            raise LandscapeError(f"model: cannot import module {source!r} ({_first_line(exc)})") from None
        file = getattr(module, "__file__", None)
        path = Path(file) if file else None
        where = f"module {source!r}"
    factory = getattr(module, function, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        shown = ", ".join(names[:8]) or "none"
        raise LandscapeError(f"model: {where} has no function {function!r} (its functions: {shown})")
    return factory, path


def parse_model_args(text: str | dict | None) -> dict:
    """``--model-args`` as a dict: a JSON object (or a dict already)."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LandscapeError(f"model-args: not valid JSON ({exc.msg} at character {exc.pos}): "
                             f"{text!r}") from None
    if not isinstance(value, dict):
        raise LandscapeError(f"model-args: expected a JSON object such as '{{\"width\": 32}}', "
                             f"got {text!r}")
    return value


def user_model(spec: str, model_args: dict | str | None = None, init: str = "default",
               bias_scale: float | None = None, seed: int = 0, weight_std: float | None = None,
               in_shape=None) -> nn.Module:
    """Call the factory ``spec`` with ``model_args`` under ``seed`` and initialise
    the module it returns with ``init`` / ``bias_scale`` (``default`` keeps the
    factory's own weights).

    The module keeps every attribute it defines (``task``, ``default_layer``,
    ``in_shape``); it gains ``name`` (the spec), ``init``, ``bias_scale``,
    ``model_spec`` and ``model_sha256`` (of the file defining the factory),
    which the results' provenance records.
    """
    from .init import initialize

    args = parse_model_args(model_args)
    factory, path = load_factory(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(**args)
        except LandscapeError:
            raise
        except (Exception, SystemExit) as exc:  # user code: sys.exit() is a failure to name
            raise LandscapeError(f"model: {spec}(**{json.dumps(args)}) failed ({_first_line(exc)})") \
                from None
        if not isinstance(model, nn.Module):
            raise LandscapeError(f"model: {spec} returned {type(model).__name__}, not a "
                                 "torch.nn.Module")
        initialize(model, init, bias_scale=bias_scale, weight_std=weight_std)
    if in_shape is not None:
        model.in_shape = parse_shape(in_shape)
    model.name = spec
    model.init = init
    model.bias_scale = None if bias_scale is None else float(bias_scale)
    model.model_spec = spec
    model.model_args = args
    model.model_sha256 = _sha256(path) if path is not None and path.is_file() else ""
    # How to draw another network of this kind (null models): every argument.
    model.recipe = dict(name=spec, init=init, bias_scale=model.bias_scale,
                        weight_std=None if weight_std is None else float(weight_std), seed=seed,
                        model_args=args, in_shape=None if in_shape is None else list(model.in_shape))
    return model


# The part of a recipe that a checkpoint's meta overrides: how the weights were drawn.
INIT_KEYS = ("init", "bias_scale", "weight_std", "seed")


def adopt_meta(model: nn.Module, meta: dict) -> None:
    """Record a checkpoint's own init, bias scale, weight std and seed (its meta)
    as the model's recipe and provenance, so that null models and results
    describe the network that was trained, not the one it was loaded into."""
    recipe = getattr(model, "recipe", None)
    if not isinstance(meta, dict) or "init" not in meta or recipe is None:
        return
    for key in INIT_KEYS:
        if key in meta or key != "seed":
            recipe[key] = meta.get(key)
    model.init = recipe["init"]
    model.bias_scale = None if recipe["bias_scale"] is None else float(recipe["bias_scale"])


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a checkpoint saved by ``torch.save``: a state dict
    alone (meta ``{}``), or ``{"state_dict": ..., "meta": {...}}``."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"checkpoint: no such file {str(path)!r}")
    from .validate import torch_load

    # Pickle errors, truncated files, non-tensor objects: one line of ours.
    obj = torch_load(path, f"checkpoint {str(path)!r} cannot be read")
    meta: dict = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        meta = obj.get("meta") or {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LandscapeError(f"checkpoint {str(path)!r} holds no state dict")
    return obj, meta if isinstance(meta, dict) else {}


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a state dict saved by ``torch.save`` (alone, or under ``"state_dict"``
    with a ``"meta"`` dict beside it) into ``model``; returns the metadata.  When
    the meta names the init, the model's recipe, ``init`` and ``bias_scale``
    become the checkpoint's (:func:`adopt_meta`)."""
    path = Path(path)
    obj, meta = read_checkpoint(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(obj))
    unexpected = sorted(set(obj) - set(own))
    wrong = sorted(k for k in set(own) & set(obj) if own[k].shape != obj[k].shape)
    if missing or unexpected or wrong:
        what = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                what.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        arch = meta.get("model") if isinstance(meta, dict) else None
        hint = f" (it was saved from {arch!r})" if arch else ""
        raise LandscapeError(
            f"checkpoint {str(path)!r} does not fit model {getattr(model, 'name', '?')!r}{hint}: "
            + "; ".join(what)
        )
    model.load_state_dict(obj)
    adopt_meta(model, meta)
    return meta


# ----------------------------------------------------------------------------- units

def resolve_layer(model: nn.Module, layer: str | None) -> str:
    """The module name to read units from: ``layer``, or the model's default."""
    if layer is not None and hasattr(model, "layer_alias"):  # minilm: --layer N
        layer = model.layer_alias(layer)
    if layer is None:
        layer = getattr(model, "default_layer", None)
        if layer is None:
            raise LandscapeError("layer: this model has no default layer; name one with --layer")
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise LandscapeError(f"layer: no module named {layer!r} in this model; it has {shown}")
    return layer


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


def per_sample_loss(model: nn.Module, output: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor | None) -> torch.Tensor:
    """The model's training loss for each sample, shape ``output.shape[:-k]``.

    ``classify``: cross-entropy of the logits (last dim) against ``y``; with
    sequence targets (``y`` of shape ``(N, T)``, logits ``(N, T, V)``: the next
    token at every position) the mean over positions, the next-token loss;
    ``reconstruct``: mean squared error of the output against the input ``x``.
    Leading batch dimensions of ``output`` (e.g. grid points under ``vmap``)
    broadcast against ``x``/``y``.
    """
    if getattr(model, "task", "classify") == "reconstruct":
        err = (output - x) ** 2
        return err.flatten(err.dim() - x.dim() + 1).mean(-1)
    logp = torch.log_softmax(output, dim=-1)
    loss = -logp.gather(-1, y.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return loss.flatten(loss.dim() - y.dim() + 1).mean(-1) if y.dim() > 1 else loss


def per_sample_correct(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy of each sample's logits (the fraction of positions right for
    sequence targets), shape ``output.shape[:-k]`` as :func:`per_sample_loss`."""
    hit = (output.argmax(-1) == y).to(output.dtype)
    return hit.flatten(hit.dim() - y.dim() + 1).mean(-1) if y.dim() > 1 else hit
