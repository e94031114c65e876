"""Variants of a trained network: the controls of Heap et al. (2025), *Sparse
Autoencoders Can Interpret Randomly Initialized Transformers* (arXiv 2501.17727),
and initialisations of our own.

``make_variant(model, variant, recipe, seed)`` returns a new model and never
modifies ``model`` (the trained network: its parameters, buffers,
``requires_grad`` flags and train/eval flags are left as they were):

* ``trained``       a copy of the checkpoint.
* ``init``          the checkpoint's own recipe (model, options, init, bias scale)
                    and seed, untrained: the network at step 0.
* ``rerandomised``  every parameter tensor re-drawn i.i.d. from N(m, s²), m and s
                    that tensor's own mean and standard deviation (a tensor of one
                    element keeps its value).  Buffers (BatchNorm's running
                    statistics) are kept: they are statistics, not weights, and a
                    Gaussian variance could come out negative.
* ``rerandomised-except-embeddings``
                    the same, except the parameters of embedding tables (the
                    transformer's ``embed`` and ``pos``; a tied output head is the
                    token embedding and is kept with it).  Heap et al.'s
                    "re-randomised" network.
* ``control``       the trained network whose token embedding (``embed``) is
                    replaced by Gaussian noise of the same scale, N(m, s²) with the
                    table's own mean and standard deviation; everything else is
                    trained.  A tied head keeps the trained table (the variant is
                    untied), so only the input is noise, as in Heap et al.'s
                    control.  Only models with a token embedding have it.
* ``init:SCHEME`` or ``init:SCHEME:S``
                    the checkpoint's architecture and seed, untrained, initialised
                    with ``SCHEME`` (any of :data:`landscape.init.INITS`) and bias
                    scale ``S`` (default: what the scheme's reference does), e.g.
                    ``init:xavier:0.1``: the initialisations and bias scales that
                    Heap et al. left unstudied.

Every random draw comes from a generator seeded by ``seed``, tensor by tensor
in the order of ``model.named_parameters()``, so a variant is reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import LandscapeError

VARIANTS = ("trained", "init", "rerandomised", "rerandomised-except-embeddings", "control")


def parse_variants(spec: str | Sequence[str]) -> list[str]:
    """``"trained,init,init:xavier:0.1"`` (or a list) -> validated variant names, in order."""
    names = [v.strip() for v in spec.split(",")] if isinstance(spec, str) else [str(v) for v in spec]
    names = [v for v in names if v]
    if not names:
        raise LandscapeError("variant: give at least one of " + ", ".join(VARIANTS) + " or init:SCHEME[:S]")
    for name in names:
        _parse(name)
    if len(set(names)) != len(names):
        raise LandscapeError(f"variant: each variant once, got {','.join(names)}")
    return names


def _parse(variant: str) -> tuple[str, str | None, float | None]:
    """``variant`` -> (kind, init scheme, bias scale); one clear error when malformed."""
    from ..init import INITS

    if variant in VARIANTS:
        return variant, None, None
    if variant.startswith("init:"):
        parts = variant.split(":")
        if len(parts) in (2, 3) and parts[1] in INITS:
            scale = None
            if len(parts) == 3:
                try:
                    scale = float(parts[2])
                except ValueError:
                    scale = -1.0
                if not scale >= 0:
                    raise LandscapeError(f"variant {variant!r}: the bias scale must be a number >= 0")
            return "init", parts[1], scale
        raise LandscapeError(f"variant {variant!r}: expected init:SCHEME or init:SCHEME:BIAS_SCALE "
                             f"with SCHEME one of {', '.join(INITS)}")
    raise LandscapeError(f"variant: unknown value {variant!r}; choose from {', '.join(VARIANTS)} "
                         "or init:SCHEME[:BIAS_SCALE]")


def make_variant(model: nn.Module, variant: str, recipe: dict | None = None,
                 seed: int = 0) -> nn.Module:
    """The network ``variant`` of the trained ``model`` (module docstring).

    ``recipe``: the checkpoint's metadata (as ``landscape train`` writes it);
    its ``init``, ``bias_scale``, ``weight_std`` and ``seed`` override those of
    ``model.recipe`` (what :func:`landscape.build_model` recorded and
    :func:`landscape.load_checkpoint` already completed from the same meta).  It
    serves ``init`` and ``init:...`` only.  ``seed`` drives the random draws of
    ``rerandomised*`` and ``control``.  The result carries ``variant``.
    """
    kind, scheme, scale = _parse(variant)
    if kind == "init":
        out = _rebuild(model, recipe or {}, scheme, scale, plain=scheme is None)
    else:
        out = copy.deepcopy(model)
        gen = torch.Generator().manual_seed(int(seed))
        if kind == "rerandomised":
            _redraw(out, gen, keep=set())
        elif kind == "rerandomised-except-embeddings":
            _redraw(out, gen, keep=_embedding_tensors(out))
        elif kind == "control":
            _control(out, gen)
    flags = {k: p.requires_grad for k, p in model.named_parameters(remove_duplicate=False)}
    for k, p in out.named_parameters(remove_duplicate=False):
        p.requires_grad_(flags.get(k, True))
    modes = {k: m.training for k, m in model.named_modules()}
    for k, m in out.named_modules():
        m.training = modes.get(k, m.training)
    out.variant = variant
    return out


def _gaussian_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """i.i.d. N(mean(t), std(t)²) of t's shape (t itself when it has one element)."""
    if t.numel() < 2:
        return t.detach().clone()
    src = t.detach().double()
    noise = torch.randn(t.shape, generator=gen, dtype=torch.float64)
    return (src.mean() + src.std() * noise).to(device=t.device, dtype=t.dtype)


@torch.no_grad()
def _redraw(model: nn.Module, gen: torch.Generator, keep: set[int]) -> None:
    for _, p in model.named_parameters():  # shared (tied) tensors come once
        if id(p) not in keep:
            p.copy_(_gaussian_like(p, gen))


def _embedding_tensors(model: nn.Module) -> set[int]:
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}


@torch.no_grad()
def _control(model: nn.Module, gen: torch.Generator) -> None:
    embed = getattr(model, "embed", None)
    if not isinstance(embed, nn.Embedding):
        raise LandscapeError(f"variant 'control' replaces a token embedding; model "
                             f"{getattr(model, 'name', type(model).__name__)!r} has none")
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear) and head.weight is embed.weight:
        model.tied = False  # the head keeps the trained table: only the embedding gets a new one
    embed.weight = nn.Parameter(_gaussian_like(embed.weight, gen))


def _rebuild(model: nn.Module, meta: dict, scheme: str | None, scale: float | None,
             plain: bool) -> nn.Module:
    """The untrained network of ``model``'s recipe (``model.recipe``, as
    :func:`landscape.build_model` records it, with the init, bias scale, weight
    std and seed of ``meta`` where it names them), initialised with ``scheme``
    and bias ``scale`` unless ``plain``."""
    from .checkpoints import INIT_KEYS
    from .registry import build_model

    recipe = getattr(model, "recipe", None)
    if recipe is None:
        raise LandscapeError("variant 'init' needs the model's recipe: build it with "
                             "landscape.build_model (a checkpoint's meta then completes it)")
    recipe = dict(recipe)
    recipe.update({k: meta[k] for k in INIT_KEYS if k in meta})
    if not plain:
        recipe.update(init=scheme, bias_scale=scale)
        if scheme != "normal":
            recipe["weight_std"] = None
    if getattr(model, "pretrained", False):  # minilm: the architecture's own init, not the weights
        recipe["pretrained"] = False
    out = build_model(**recipe)
    mine, theirs = out.state_dict(), model.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise LandscapeError(f"variant 'init': the recipe of model {recipe.get('name')!r} does not "
                             "rebuild this network's tensors")
    if hasattr(model, "unit_position"):
        out.unit_position = model.unit_position
    p = next(model.parameters(), None)
    return out.to(device=p.device, dtype=p.dtype) if p is not None else out
