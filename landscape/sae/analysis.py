"""A model's activations as SAE training data, and the ``sae`` result.

**Activation vectors.**  A layer's output ``(N, F)`` gives one vector per
sample; ``(N, T, F)`` (a token model's residual stream) one per position;
``(N, C, H, W)`` (a convolution) one per spatial position, over the channels.
:func:`layer_vectors` caches them once (sized against the memory budget of
:mod:`landscape.memory`) and :func:`splice` puts vectors back in the layer's
own layout, so a reconstruction can replace the layer's output in the forward
pass.

**The model's loss** (for ``loss_recovered`` and ``kl``): a token model (integer
input ``(B, T)``, logits ``(B, T, V)``) is scored by the next-token
cross-entropy at every position against ``y (B, T)`` (the next tokens; without
``y``, positions ``0..T−2`` against the input shifted by one); a classifier by cross-entropy against
its labels; a ``reconstruct`` model by the mean squared error against its input.
A sentence encoder (``task == "embed"``, :mod:`landscape.models.minilm`: its output is a
normalised sentence embedding, and no language-model head ships) is scored by
*embedding recovered*: per sequence the cosine of the embedding with the layer
replaced against the clean embedding (``embedding_recovered`` for the SAE's
reconstruction, ``embedding_recovered_mean_ablated`` / ``_zero_ablated`` for the
baselines), and its loss is ``1 − cosine`` (0 when clean), so ``loss_recovered_*``
read as for any model and ``kl`` is NaN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import LandscapeError
from ..memory import memory_budget, require
from ..models import eval_mode, resolve_layer
from ..view import untouched
from .metrics import (
    N_TOKENS,
    ReconstructionStats,
    context_features,
    detection_auroc,
    explanations,
    loss_recovered,
    top_entropy,
    top_positions,
)
from .topk import TopKSAE

SCALARS = ("fvu", "cosine", "l0", "dead_frac", "dense_frac", "loss_recovered_mean",
           "loss_recovered_zero", "kl", "loss_clean", "loss_sae", "loss_mean_ablated",
           "loss_zero_ablated")
DESCRIPTIONS = {
    "fvu": "fraction of variance unexplained (variance about the mean)",
    "cosine": "mean cosine similarity of activation and reconstruction",
    "l0": "mean number of non-zero latents per activation",
    "dead_frac": "share of latents never active on the evaluation activations",
    "dense_frac": "share of latents active on more than 10% of the evaluation activations",
    "loss_recovered_mean": "(L_mean_ablated - L_sae) / (L_mean_ablated - L_clean)",
    "loss_recovered_zero": "(L_zero_ablated - L_sae) / (L_zero_ablated - L_clean)",
    "kl": "mean KL(clean || spliced) of the output distributions",
    "frequency": "share of evaluation activations on which the latent is non-zero",
    "token_entropy": "entropy (bits) of the tokens at the latent's top activations",
    "interp_auroc": "AUROC of the token/bigram explanation predicting activation (held out)",
    "interp_auroc_context": "AUROC of the token/bigram/recent-context explanation predicting "
                            "activation (held out)",
    "label_entropy": "entropy (bits) of the labels of the latent's top images",
    "embedding_recovered": "mean cosine of the sentence embedding with the SAE spliced in "
                           "against the clean embedding",
    "embedding_recovered_mean_ablated": "the same with the layer mean-ablated",
    "embedding_recovered_zero_ablated": "the same with the layer zero-ablated",
}


# ----------------------------------------------------------------------------- layout

def to_vectors(output: torch.Tensor) -> torch.Tensor:
    """A layer's output as activation vectors ``(N · positions, features)``."""
    if output.dim() == 2:
        return output
    if output.dim() == 3:
        return output.reshape(-1, output.shape[-1])
    if output.dim() == 4:
        return output.permute(0, 2, 3, 1).reshape(-1, output.shape[1])
    raise LandscapeError(f"layer output of shape {tuple(output.shape)} has no activation vectors")


def from_vectors(vectors: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_vectors` for an output shaped like ``like``."""
    if like.dim() == 4:
        n, c, h, w = like.shape
        return vectors.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return vectors.reshape(like.shape)


@contextlib.contextmanager
def splice(model: nn.Module, layer: str, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Within the block, ``layer``'s output is ``from_vectors(replace(vectors))``."""
    module = dict(model.named_modules())[layer]

    def hook(_module, _inputs, output):
        rest = None
        if isinstance(output, tuple):
            output, rest = output[0], output[1:]
        new = from_vectors(replace(to_vectors(output)).to(output.dtype), output)
        return new if rest is None else (new, *rest)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class _Stop(Exception):
    pass


def _batches(x: torch.Tensor, batch_size: int):
    for begin in range(0, len(x), batch_size):
        yield x[begin:begin + batch_size]


@untouched
def layer_vectors(model: nn.Module, layer: str, x: torch.Tensor, *, batch_size: int = 64,
                  max_memory=None) -> tuple[torch.Tensor, int]:
    """``layer``'s activation vectors on the inputs ``x`` as one float32 tensor
    ``(N · P, d)`` on the CPU (``P`` positions per input), and ``P``.  The whole
    cache is checked against the memory budget before it is allocated."""
    module = dict(model.named_modules())[layer]
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    handle = module.register_forward_hook(hook)
    cache = None
    try:
        with torch.no_grad(), eval_mode(model):
            row = 0
            for xb in _batches(x, batch_size):
                captured.clear()
                try:
                    model(xb)
                except _Stop:
                    pass
                if not captured:
                    raise LandscapeError(f"layer: module {layer!r} is not used in the forward pass")
                vec = to_vectors(captured[0]).float().cpu()
                if cache is None:
                    per_input = vec.shape[0] // xb.shape[0]
                    total = per_input * len(x)
                    require(total * vec.shape[1] * 4, memory_budget("cpu", max_memory),
                            f"the activation cache of layer {layer!r} ({total} vectors of "
                            f"{vec.shape[1]})", "use fewer --samples or raise --max-memory")
                    cache = torch.empty(total, vec.shape[1])
                cache[row:row + len(vec)] = vec
                row += len(vec)
    finally:
        handle.remove()
    return cache, per_input


# ----------------------------------------------------------------------------- loss

def _loss_parts(model: nn.Module, output: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None):
    """Per-prediction losses and log-probabilities (None for regression) of ``output``."""
    if output.dim() == 3 and not torch.is_floating_point(x):  # next-token prediction
        if y is not None and y.shape == x.shape:  # y holds each position's next token
            logits, target = output.reshape(-1, output.shape[-1]).float(), y.reshape(-1)
        else:
            logits = output[:, :-1].reshape(-1, output.shape[-1]).float()
            target = x[:, 1:].reshape(-1)
        logp = torch.log_softmax(logits, dim=-1)
        return -logp.gather(1, target[:, None]).squeeze(1), logp
    if getattr(model, "task", "classify") == "reconstruct":
        return (output - x).pow(2).flatten(1).mean(1), None
    if y is None:
        raise LandscapeError("y: a classifier's loss needs labels")
    logp = torch.log_softmax(output.float(), dim=-1)
    return -logp.gather(1, y[:, None]).squeeze(1), logp


def spliced_losses(model: nn.Module, layer: str, sae: TopKSAE, x: torch.Tensor,
                   y: torch.Tensor | None, mean: torch.Tensor, batch_size: int = 64) -> dict:
    """The model's mean loss clean, with the SAE's reconstruction spliced in, and with
    the layer mean- and zero-ablated; the mean KL(clean ‖ spliced)."""
    if getattr(model, "task", None) == "embed":
        return _embedding_losses(model, layer, sae, x, mean, batch_size)
    sums = dict(clean=0.0, sae=0.0, mean=0.0, zero=0.0, kl=0.0, mean_sq=0.0, zero_sq=0.0,
                mean_gap=0.0, zero_gap=0.0)
    count = 0
    replacements = {"sae": lambda v: sae(v.float()),
                    "mean": lambda v: mean.to(v).expand_as(v),
                    "zero": torch.zeros_like}
    with torch.no_grad(), eval_mode(model):
        for begin in range(0, len(x), batch_size):
            xb = x[begin:begin + batch_size]
            yb = None if y is None else y[begin:begin + batch_size]
            clean, logp_clean = _loss_parts(model, model(xb), xb, yb)
            sums["clean"] += float(clean.double().sum())
            count += len(clean)
            for name, fn in replacements.items():
                with splice(model, layer, fn):
                    loss, logp = _loss_parts(model, model(xb), xb, yb)
                sums[name] += float(loss.double().sum())
                if name != "sae":  # the spread of ablation's per-prediction change
                    gap = (loss - clean).double()
                    sums[f"{name}_gap"] += float(gap.sum())
                    sums[f"{name}_sq"] += float(gap.pow(2).sum())
                if name == "sae" and logp_clean is not None:
                    kl = (logp_clean.exp() * (logp_clean - logp)).sum(-1)
                    sums["kl"] += float(kl.double().sum())
    out = {k: v / count for k, v in sums.items()}
    for name in ("mean", "zero"):  # standard error of the mean change
        var = max(0.0, out.pop(f"{name}_sq") - out.pop(f"{name}_gap") ** 2)
        out[f"{name}_stderr"] = (var / max(1, count - 1)) ** 0.5
    if logp_clean is None:
        out["kl"] = float("nan")
    return out


def _embedding_losses(model: nn.Module, layer: str, sae: TopKSAE, x: torch.Tensor,
                      mean: torch.Tensor, batch_size: int) -> dict:
    """A sentence encoder's :func:`spliced_losses` (module docstring): loss ``1 − cos``."""
    replacements = {"sae": lambda v: sae(v.float()),
                    "mean": lambda v: mean.to(v).expand_as(v),
                    "zero": torch.zeros_like}
    per_input = {name: [] for name in replacements}
    with torch.no_grad(), eval_mode(model):
        for begin in range(0, len(x), batch_size):
            xb = x[begin:begin + batch_size]
            clean = model(xb)
            for name, fn in replacements.items():
                with splice(model, layer, fn):
                    per_input[name].append(torch.cosine_similarity(model(xb), clean, dim=-1)
                                           .double().cpu())
    per_input = {k: torch.cat(v) for k, v in per_input.items()}
    cos = {k: float(v.mean()) for k, v in per_input.items()}
    # The standard error of an ablation's loss change 1 − cos, over the inputs.
    stderr = {f"{k}_stderr": float(v.std() / len(v) ** 0.5) if len(v) > 1 else float("nan")
              for k, v in per_input.items() if k != "sae"}
    return dict(clean=0.0, sae=1 - cos["sae"], mean=1 - cos["mean"], zero=1 - cos["zero"],
                kl=float("nan"), embedding_recovered=cos["sae"],
                embedding_recovered_mean_ablated=cos["mean"],
                embedding_recovered_zero_ablated=cos["zero"], **stderr)


# ----------------------------------------------------------------------------- the result

def _encode_all(sae: TopKSAE, vectors: torch.Tensor, batch_size: int):
    """Top-k values and indices of every row, as numpy arrays, and quality statistics."""
    stats = ReconstructionStats(sae.n_latents, sae.d)
    vals, idx = [], []
    with torch.no_grad():
        device = sae.W_dec.device
        for xb in _batches(vectors, batch_size):
            xb = xb.to(device)
            v, i = sae.encode_sparse(xb)
            stats.update(xb, sae.decode_sparse(v, i), v, i)
            vals.append(v.cpu())
            idx.append(i.cpu())
    return torch.cat(vals).numpy(), torch.cat(idx).numpy(), stats.result()


def _previous_tokens(x: torch.Tensor, vocab: int = N_TOKENS) -> np.ndarray:
    prev = torch.full_like(x, vocab)
    prev[:, 1:] = x[:, :-1]
    return prev.reshape(-1).cpu().numpy()


@untouched
def sae_metrics(model: nn.Module, sae: TopKSAE, x: torch.Tensor, y: torch.Tensor | None = None,
                layer: str | None = None, *, train_x: torch.Tensor | None = None,
                train_vectors: torch.Tensor | None = None, variant: str = "model",
                top_n: int = 32, contexts: int = 8,
                context_window: tuple[int, int] = (12, 3), explanation_size: int = 5,
                interp_bins: int = 5, interp_per_bin: int = 20, interp_lookback: int = 32,
                maxact_latents: int = 0,
                maxact_options: dict | None = None, batch_size: int = 64, seed: int = 0,
                max_memory=None, dataset: str | None = None) -> xr.Dataset:
    """Every metric of :mod:`landscape.sae.metrics` for ``sae`` on ``layer`` of ``model``.

    ``x`` (and labels ``y``) are the evaluation inputs; ``train_x`` the inputs
    the SAE was trained on, the training split of ``interp_auroc`` and
    ``interp_auroc_context`` (token models only; without it both are NaN);
    ``interp_lookback`` is how many positions back the context features of
    ``interp_auroc_context`` look (capped at the sequence length − 1; 0 leaves
    the variable out); ``train_vectors``, when given, its
    activation vectors already cached by :func:`layer_vectors`.  ``maxact_latents`` > 0 also runs
    the max-activation reliability metrics (:func:`landscape.maxact.reliability_metrics`)
    on that many live latents of an image model (a latent's unit function is its
    ReLU pre-activation averaged over positions).  The model is not changed.

    Returns a Dataset of kind ``sae`` with dims ``variant`` (``[variant]``),
    ``layer`` and ``latent``; see :data:`SCALARS` and :data:`DESCRIPTIONS`.
    """
    from ..results import provenance

    layer = resolve_layer(model, layer)
    vectors, per_input = layer_vectors(model, layer, x, batch_size=batch_size, max_memory=max_memory)
    if vectors.shape[1] != sae.d:
        raise LandscapeError(f"sae: it was trained on {sae.d} features but layer {layer!r} has "
                             f"{vectors.shape[1]}")
    vals, idx, quality = _encode_all(sae, vectors, 4096)
    mean = vectors.double().mean(dim=0).float()
    losses = spliced_losses(model, layer, sae, x, y, mean, batch_size)
    m = sae.n_latents
    scalars = dict(fvu=quality["fvu"], cosine=quality["cosine"], l0=quality["l0"],
                   dead_frac=quality["dead_frac"], dense_frac=quality["dense_frac"],
                   loss_recovered_mean=loss_recovered(losses["clean"], losses["sae"], losses["mean"],
                                                      losses["mean_stderr"]),
                   loss_recovered_zero=loss_recovered(losses["clean"], losses["sae"], losses["zero"],
                                                      losses["zero_stderr"]),
                   kl=losses["kl"], loss_clean=losses["clean"], loss_sae=losses["sae"],
                   loss_mean_ablated=losses["mean"], loss_zero_ablated=losses["zero"])
    scalars.update({k: v for k, v in losses.items() if k.startswith("embedding_recovered")})
    data = {name: ((), float(value), {"long_name": DESCRIPTIONS.get(name, name)})
            for name, value in scalars.items()}
    for name in ("mean", "zero"):
        gap, se = losses[name] - losses["clean"], losses[f"{name}_stderr"]
        data[f"loss_{name}_gap_stderr"] = ((), se, {"long_name": f"standard error of {name} "
                                                    "ablation's mean per-prediction loss change"})
        if not np.isfinite(scalars[f"loss_recovered_{name}"]):
            data[f"loss_recovered_{name}"][2]["reason"] = (
                f"{name} ablation changes the loss by {gap:.3g}, within noise (standard error "
                f"{se:.2g})")
    data["frequency"] = ("latent", quality["frequency"], {"long_name": DESCRIPTIONS["frequency"]})
    tokens_model = not torch.is_floating_point(x) and x.dim() == 2 and per_input == x.shape[1]
    where, top_act = top_positions(vals, idx, m, max(top_n, contexts))
    if tokens_model:
        tokens = x.reshape(-1).cpu().numpy()
        vocab = int(getattr(model, "vocab_size", N_TOKENS))  # bytes, or minilm's WordPiece
        previous = _previous_tokens(x, vocab)
        safe = np.where(where[:, :top_n] >= 0, where[:, :top_n], 0)
        ent = np.array([_entropy_row(tokens[safe[j]][where[j, :top_n] >= 0]) for j in range(m)])
        data["token_entropy"] = ("latent", ent, {"long_name": DESCRIPTIONS["token_entropy"]})
        auc = np.full(m, np.nan)
        lookback = max(0, min(interp_lookback, x.shape[1] - 1))
        auc_context = np.full(m, np.nan)
        if train_x is not None:
            tv = train_vectors
            if tv is None:
                tv, _ = layer_vectors(model, layer, train_x, batch_size=batch_size,
                                      max_memory=max_memory)
            tvals, tidx, _ = _encode_all(sae, tv, 4096)
            feats, enrich = explanations(tvals, tidx, train_x.reshape(-1).cpu().numpy(),
                                         _previous_tokens(train_x, vocab), m,
                                         size=explanation_size, vocab=vocab)
            auc = detection_auroc(vals, idx, tokens, previous, feats, enrich, vocab=vocab,
                                  bins=interp_bins, per_bin=interp_per_bin, seed=seed)
            data["explanation"] = (("latent", "feature"), feats, {
                "long_name": f"explanation: token id t, or {vocab} + {vocab} t_prev + t"})
            if lookback:
                ctx_train = context_features(train_x.cpu().numpy(), lookback, vocab)
                feats, enrich = explanations(tvals, tidx, train_x.reshape(-1).cpu().numpy(),
                                             _previous_tokens(train_x, vocab), m,
                                             size=explanation_size, context=ctx_train, vocab=vocab)
                auc_context = detection_auroc(vals, idx, tokens, previous, feats, enrich,
                                              bins=interp_bins, per_bin=interp_per_bin, seed=seed,
                                              context=context_features(x.cpu().numpy(), lookback,
                                                                       vocab), vocab=vocab)
        data["interp_auroc"] = ("latent", auc, {"long_name": DESCRIPTIONS["interp_auroc"]})
        if lookback:
            data["interp_auroc_context"] = ("latent", auc_context,
                                            {"long_name": DESCRIPTIONS["interp_auroc_context"],
                                             "lookback": lookback})
        seq_len = x.shape[1]
        top = where[:, :contexts]
        data["top_sequence"] = (("latent", "rank"), np.where(top >= 0, top // seq_len, -1))
        data["top_position"] = (("latent", "rank"), np.where(top >= 0, top % seq_len, -1))
        data["top_activation"] = (("latent", "rank"), top_act[:, :contexts])
        data["top_context"] = (("latent", "rank", "offset"),
                               _contexts(x, top, seq_len, context_window))
    else:
        # Image-level latent values: the mean over each input's positions (as for units).
        per_image = np.zeros((len(x), m))
        pos, slot = np.nonzero(vals > 0)
        np.add.at(per_image, (pos // per_input, idx[pos, slot]), vals[pos, slot])
        per_image /= per_input
        order = np.argsort(-per_image, axis=0, kind="stable")[:contexts].T
        top = np.where(np.take_along_axis(per_image, order.T, 0).T > 0, order, -1)
        # Fewer inputs than ranks: the missing ranks are -1, as for a latent that never fires.
        top = np.pad(top, ((0, 0), (0, contexts - top.shape[1])), constant_values=-1)
        data["top_image"] = (("latent", "rank"), top)
        if y is not None:
            ent = top_entropy(per_image, y.cpu().numpy(), top_n)
            data["label_entropy"] = ("latent", ent, {"long_name": DESCRIPTIONS["label_entropy"]})
        if maxact_latents:
            data.update(_maxact_of_latents(model, layer, sae, x, quality["frequency"],
                                           maxact_latents, seed, maxact_options or {}))
    coords = {"latent": np.arange(m), "rank": np.arange(contexts)}
    if tokens_model:
        coords["offset"] = np.arange(-context_window[0], context_window[1] + 1)
    ds = xr.Dataset(data, coords=coords)
    ds = ds.expand_dims(variant=[variant], layer=[layer])
    config = dict(layer=layer, n_samples=int(len(x)), positions=int(per_input), top_n=top_n,
                  contexts=contexts, explanation_size=explanation_size, interp_bins=interp_bins,
                  interp_per_bin=interp_per_bin, interp_lookback=interp_lookback,
                  maxact_latents=maxact_latents, seed=seed,
                  sae=getattr(sae, "train_config", {}))
    ds.attrs.update(provenance(model, dataset=dataset, seed=seed, device=x.device, config=config))
    ds.attrs.update(kind="sae", n_latents=m, k=sae.k, d=sae.d,
                    modality="tokens" if tokens_model else "images",
                    tokens="wordpiece" if hasattr(model, "tokenizer") else "bytes")
    return ds


def _entropy_row(values: np.ndarray) -> float:
    from .metrics import entropy_bits

    return entropy_bits(values) if values.size else float("nan")


def _contexts(x: torch.Tensor, top: np.ndarray, seq_len: int, window: tuple[int, int]) -> np.ndarray:
    """Token ids around each top position, ``(M, rank, offset)``; −1 outside the sequence."""
    before, after = window
    offsets = np.arange(-before, after + 1)
    seq = np.where(top >= 0, top // seq_len, 0)
    pos = np.where(top >= 0, top % seq_len, 0)[..., None] + offsets
    inside = (pos >= 0) & (pos < seq_len) & (top[..., None] >= 0)
    tokens = x.cpu().numpy()
    out = tokens[seq[..., None], np.clip(pos, 0, seq_len - 1)].astype(np.int16)
    return np.where(inside, out, -1)


def _maxact_of_latents(model, layer, sae, x, frequency, n, seed, options) -> dict:
    """The max-activation reliability metrics of the ``n`` most frequent live latents,
    each as a unit: ``z ↦ mean over positions of ReLU(W_enc (x̃ − b_dec) + b_enc)_j``."""
    from ..maxact import METRICS, reliability_metrics

    live = np.nonzero(frequency > 0)[0]
    chosen = live[np.argsort(-frequency[live], kind="stable")][:n]
    if chosen.size == 0:
        return {}
    module = dict(model.named_modules())[layer]
    in_shape = tuple(x.shape[1:])
    index = torch.as_tensor(chosen, device=sae.W_dec.device)

    def f(z: torch.Tensor) -> torch.Tensor:
        captured = []
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out) or None)
        try:
            model(z.view(-1, *in_shape))
        finally:
            handle.remove()
        out = captured[0]
        pre = sae.preacts(to_vectors(out) / sae.scale)[:, index]
        return pre.reshape(z.shape[0], -1, len(chosen)).mean(dim=1)

    defaults = dict(top_k=5, restarts=8, steps=100)
    defaults.update(options)
    with eval_mode(model):
        res = reliability_metrics(f, x.flatten(1), seed=seed, **defaults)
    out = {}
    for name in METRICS:
        full = np.full(len(frequency), np.nan)
        full[chosen] = res[name]
        out[name] = ("latent", full)
    return out
