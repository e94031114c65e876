"""Your own network: a factory ``PATH.py:FUNCTION`` or ``package.module:FUNCTION``
that returns an ``nn.Module``, called with ``--model-args`` and initialised as
the registered models are."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import LandscapeError
from .units import parse_shape


def is_model_spec(name: str) -> bool:
    """Whether ``name`` reads as ``PATH.py:FUNCTION`` or ``package.module:FUNCTION``."""
    return isinstance(name, str) and ":" in name


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first_line(exc: BaseException) -> str:
    from ..validate import first_line

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
    from ..init import initialize

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
