"""SAEs over variants of a model and over layers: one TopK autoencoder per
``(variant, layer)``, trained on the training inputs' activations (or taken
from saved ones) and measured on held-out inputs, merged into one Dataset
along ``variant`` and ``layer`` (:func:`sae_study`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import xarray as xr
from torch import nn

from ..errors import LandscapeError

# Training steps when the epochs are left unset: the fewest passes that make at least this many.
MIN_STEPS = 384


def default_epochs(n_vectors: int, batch_size: int, tokens: int | None = None,
                   min_steps: int = MIN_STEPS) -> int:
    """The fewest epochs over ``n_vectors`` activations (``tokens`` of them per epoch
    when given) in batches of ``batch_size`` that make at least ``min_steps`` steps."""
    per_epoch = -(-min(n_vectors, tokens or n_vectors) // batch_size)
    return max(1, -(-min_steps // per_epoch))


def variant_model(model: nn.Module, name: str | None, trained: bool, recipe: dict | None = None,
                  seed: int = 0) -> tuple[str, nn.Module]:
    """``(name, model)`` of variant ``name`` (:mod:`landscape.models.variants`);
    ``None`` or the model's own kind (``trained`` when its weights were learned,
    else ``init``) is the model itself."""
    own = "trained" if trained else "init"
    if name is None or name == own:
        return own, model
    if name == "trained":
        raise LandscapeError("variant: 'trained' needs --checkpoint (or a pretrained model)")
    from ..models.variants import make_variant

    p = next(model.parameters())
    return name, make_variant(model, name, recipe=recipe, seed=seed).to(p.device)


def sae_study(model: nn.Module, train_x: torch.Tensor, eval_x: torch.Tensor,
              eval_y: torch.Tensor | None = None, variants: Sequence[str | None] = (None,),
              layers: Sequence[str | None] = (None,), *, trained: bool = False,
              recipe: dict | None = None, seed: int = 0, expansion: int = 16, k: int = 32,
              aux_k: int | None = None, tokens: int | None = None, epochs: int | None = None,
              lr: float | None = None, batch_size: int = 256, maxact_latents: int = 8,
              bn: str = "auto", saved: dict | None = None, max_memory=None,
              dataset: str = "", progress: Callable | None = None) -> tuple[xr.Dataset, dict]:
    """Train (or take from ``saved``, keyed ``"variant/layer"``) an SAE per variant
    and layer and measure each on ``eval_x`` (:func:`landscape.sae.sae_metrics`).

    Every activation, loss and metric of a variant sees the same BatchNorm
    statistics (``bn``; ``recompute`` takes them on ``train_x``).  Returns the
    merged Dataset and ``{"variant/layer": state}`` of the SAEs
    (:func:`landscape.sae.sae_state`).  ``model`` is left untouched.
    """
    from ..models import resolve_layer
    from ..view import model_view
    from .analysis import layer_vectors, sae_metrics
    from .topk import sae_state, train_sae

    parts, states, bn_modes = [], {}, []
    device = train_x.device
    for requested in variants:
        variant, net = variant_model(model, requested, trained, recipe, seed)
        net = model_view(net, bn=bn, data=train_x)
        bn_modes.append(f"{variant}:{net.bn_mode}")
        for layer in layers:
            layer = resolve_layer(net, layer)
            key = f"{variant}/{layer}"
            vectors, _ = layer_vectors(net, layer, train_x, max_memory=max_memory)
            if saved is not None:
                if key not in saved:
                    raise LandscapeError(f"sae: the saved SAEs have none for {key!r} (they have "
                                         f"{', '.join(sorted(saved))})")
                sae = saved[key].to(device)
            else:
                sae = train_sae(vectors, expansion=expansion, k=k, aux_k=aux_k, tokens=tokens,
                                epochs=epochs or default_epochs(len(vectors), batch_size, tokens),
                                lr=lr, batch_size=batch_size, seed=seed, device=device,
                                progress=progress)
            states[key] = sae_state(sae, train_config=getattr(sae, "train_config", {}))
            parts.append(sae_metrics(net, sae, eval_x, eval_y, layer, train_x=train_x,
                                     train_vectors=vectors, variant=variant,
                                     maxact_latents=maxact_latents, seed=seed,
                                     max_memory=max_memory, dataset=dataset))
            del vectors
            if device.type == "cuda":
                torch.cuda.empty_cache()
    attrs = dict(parts[0].attrs)
    ds = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    ds.attrs = attrs
    for ablation in ("mean", "zero"):  # per-part reasons do not survive the merge
        name = f"loss_recovered_{ablation}"
        if ds[name].isnull().any():
            ds[name].attrs["reason"] = (f"NaN where {ablation} ablation changes the loss within "
                                        f"noise (2 x loss_{ablation}_gap_stderr)")
    ds.attrs["variants"] = ",".join(str(v) for v in ds.variant.values)
    ds.attrs["bn"] = ",".join(bn_modes)
    return ds, states
