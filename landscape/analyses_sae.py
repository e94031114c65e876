"""The ``sae`` analysis: TopK sparse autoencoders on a model's activations, per
variant of the model and per layer, and their metrics (:mod:`landscape.sae`).

The loaded ``--samples`` are split once: the first three quarters are the
training inputs (the SAE's activations, and the training split of
``interp_auroc``), the last quarter the evaluation inputs of every metric.
The weights of every SAE are written beside the result (``OUT.sae.pt``);
``--sae FILE`` reads them back and re-analyses without training.

**Defaults by kind of model** (:data:`SAE_DEFAULTS`, :func:`resolve_defaults`):
``--samples`` and ``--batch-size`` left unset take the values of the model's
kind, *token* (a model reading byte sequences: ``--dataset`` pysource or
text:PATH, the transformer's default) or *image* (every other model);
``--epochs`` left unset is the fewest passes over the training activations
that make at least :data:`MIN_STEPS` optimiser steps, so a layer with one
vector per input gets as many updates as one with a vector per position.
The transformer at its defaults (context 64): 1 536 training windows, 98 304
activation vectors, 96 steps per epoch, 4 epochs, 384 steps.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from .analyses import (
    MAX_MEMORY_OPTION,
    MODEL_OPTIONS,
    Setup,
    _options,
    analysis,
    bn_option,
    default_dataset,
    model_from_options,
    progress_bar,
    resolve_recipe,
)
from .errors import LandscapeError

EVAL_SHARE = 0.25
# --samples and --batch-size when the command line leaves them unset, by kind of model.
SAE_DEFAULTS = {"token": {"samples": 2048, "batch_size": 1024},
                "image": {"samples": 1024, "batch_size": 256},
                # A pretrained sentence encoder (minilm): a 22.7 M-parameter forward pass.
                "sentence": {"samples": 256, "batch_size": 256}}
# --epochs left unset: the fewest passes that make at least this many optimiser steps.
MIN_STEPS = 384


def model_kind(opts: dict) -> str:
    """``"sentence"`` for a pretrained sentence encoder (task ``embed``: minilm),
    ``"token"`` when the model reads byte sequences (its ``--dataset``, or the
    model's own default, is pysource or text:PATH), else ``"image"``."""
    import torch

    from .data import is_text
    from .models import MODELS

    if MODELS.get(opts.get("model_name"), (None, None, None))[2] == "embed":
        return "sentence"

    dataset = opts.get("dataset")
    if dataset is None:
        probe = dict(opts)
        resolve_recipe(probe, {})
        try:
            with torch.device("meta"):
                dataset = default_dataset(model_from_options(probe), None)
        except Exception:  # the real build (in Setup) reports a bad model clearly
            dataset = "digits"
    return "token" if is_text(dataset) else "image"


def resolve_defaults(opts: dict) -> str:
    """Fill ``samples`` and ``batch_size`` (in place) from :data:`SAE_DEFAULTS` where
    ``opts`` leaves them ``None``; returns the model's kind.  ``epochs`` is resolved
    per layer by :func:`default_epochs`."""
    kind = model_kind(opts)
    for key, value in SAE_DEFAULTS[kind].items():
        if opts.get(key) is None:
            opts[key] = value
    return kind


def default_epochs(n_vectors: int, batch_size: int, tokens: int | None = None,
                   min_steps: int = MIN_STEPS) -> int:
    """The fewest epochs over ``n_vectors`` activations (``tokens`` of them per epoch
    when given) in batches of ``batch_size`` that make at least ``min_steps`` steps."""
    per_epoch = -(-min(n_vectors, tokens or n_vectors) // batch_size)
    return max(1, -(-min_steps // per_epoch))


def _sae_summary(ds) -> list[str]:
    lines = []
    for variant in ds.variant.values:
        for layer in ds.layer.values:
            part = ds.sel(variant=variant, layer=layer)
            if not bool(part.fvu.notnull()):
                continue
            text = (f"{variant:>14s} {layer}: fvu {float(part.fvu):.3f}, l0 {float(part.l0):.1f}, "
                    f"dead {100 * float(part.dead_frac):.0f}%, loss recovered "
                    f"{float(part.loss_recovered_mean):.3f} (mean abl.) "
                    f"{float(part.loss_recovered_zero):.3f} (zero abl.)")
            if "embedding_recovered" in part and bool(part.embedding_recovered.notnull()):
                text += (f", embedding recovered {float(part.embedding_recovered):.3f} "
                         f"({float(part.embedding_recovered_mean_ablated):.3f} mean abl.)")
            if "interp_auroc" in part:
                text += (f", interp AUROC {float(part.interp_auroc.mean()):.3f}, token entropy "
                         f"{float(part.token_entropy.mean()):.2f} bits")
            if "label_entropy" in part:
                text += f", label entropy {float(part.label_entropy.mean()):.2f} bits"
            lines.append(text)
    return lines


def _names(text: str | None, what: str) -> list:
    if text is None:
        return [None]
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise LandscapeError(f"{what}: empty list {text!r}")
    if len(set(names)) != len(names):
        raise LandscapeError(f"{what}: repeated names in {text!r}")
    return names


def weights_path(out: Path) -> Path:
    """Where the SAE weights of result ``out`` go: ``out`` with ``.sae.pt``."""
    return Path(out).with_suffix(".sae.pt")


def _save_weights(states: dict, path: Path) -> None:
    import torch

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    os.close(fd)
    try:
        torch.save({"saes": states}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path) -> dict:
    """``{"variant/layer": TopKSAE}`` from a file written by ``landscape sae``."""
    import torch

    from .sae import TopKSAE

    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"sae: no such file {str(path)!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        return {key: TopKSAE.from_state(state) for key, state in obj["saes"].items()}
    except LandscapeError:
        raise
    except Exception as exc:
        raise LandscapeError(f"sae: {str(path)!r} holds no SAE weights ({type(exc).__name__})") from None


def _variant_model(setup: Setup, name: str | None):
    """The model of variant ``name``; ``None``: the model as loaded ('trained' with a
    checkpoint, 'init' without)."""
    from .minilm import is_pretrained

    own = "trained" if setup.opts["checkpoint"] or is_pretrained(setup.model) else "init"
    if name is None or name == own:
        return own, setup.model
    if name == "trained":
        raise LandscapeError("variant: 'trained' needs --checkpoint (or a pretrained model)")
    from .variants import make_variant

    variant = make_variant(setup.model, name, recipe=setup.checkpoint_meta, seed=setup.opts["seed"])
    return name, variant.to(setup.device)


SAE_OPTIONS = _options(
    bn_option(per_sample=True),
    click.option("--variant", default=None,
                  help="Comma-separated variants of the model: trained, init, rerandomised, "
                       "rerandomised-except-embeddings, control (default: the model as loaded)."),
    click.option("--layer", default=None,
                  help="Comma-separated modules whose activations to encode (default: the one "
                       "feeding the head)."),
    click.option("--expansion", type=int, default=16, show_default=True,
                  help="Latents per activation feature."),
    click.option("--k", type=int, default=32, show_default=True, help="Active latents (TopK)."),
    click.option("--aux-k", type=int, default=None,
                  help="Dead latents in the AuxK loss (default: half the features; 0: off)."),
    click.option("--tokens", type=int, default=None,
                  help="Activations to train on per epoch (default: all of the training inputs')."),
    click.option("--epochs", type=int, default=None,
                  help=f"Passes over the training activations (default: the fewest that make "
                       f"{MIN_STEPS} optimiser steps; 4 for the default transformer)."),
    click.option("--lr", type=float, default=None,
                  help="Adam learning rate (default: 5e-3 / sqrt(latents / 2^14))."),
    click.option("--batch-size", type=int, default=None,
                  help=f"Activations per training step (default: "
                       f"{SAE_DEFAULTS['token']['batch_size']} for token models, "
                       f"{SAE_DEFAULTS['image']['batch_size']} for image models)."),
    click.option("--sae", type=click.Path(dir_okay=False), default=None,
                  help="SAE weights written by an earlier run (OUT.sae.pt): analyse without training."),
    click.option("--maxact-latents", type=int, default=8, show_default=True,
                  help="Image models: latents that get the max-activation reliability metrics "
                       "(the most frequent live ones; 0: none)."),
    MAX_MEMORY_OPTION,
)


# --samples of `sae`: the same option with a default per kind of model.
SAMPLES_OPTION = _options(click.option(
    "--samples", type=int, default=None,
    help=f"Deterministic subset of the data: three quarters train the SAE, one quarter "
         f"evaluates it (default: {SAE_DEFAULTS['token']['samples']} windows for token models, "
         f"{SAE_DEFAULTS['image']['samples']} inputs for image models)."))
SAE_MODEL_OPTIONS = [SAMPLES_OPTION[0] if p.name == "samples" else p for p in MODEL_OPTIONS]


@analysis("sae", SAE_MODEL_OPTIONS + SAE_OPTIONS, _sae_summary)
def sae_analysis(opts: dict):
    """Train (or load) an SAE per variant and layer; every metric on held-out inputs."""
    import torch
    import xarray as xr

    from .models import resolve_layer
    from .sae import layer_vectors, sae_metrics, sae_state, train_sae

    resolve_defaults(opts)
    for name in ("expansion", "k", "epochs", "batch_size"):
        if opts[name] is not None and opts[name] < 1:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 1, got {opts[name]}")
    for name in ("tokens", "aux_k", "maxact_latents"):
        if opts[name] is not None and opts[name] < 0:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 0, got {opts[name]}")
    variants = _names(opts["variant"], "variant")
    layers = _names(opts["layer"], "layer")
    saved = load_weights(opts["sae"]) if opts["sae"] else None
    setup = Setup("sae", opts)
    n = len(setup.x)
    n_eval = max(1, round(EVAL_SHARE * n))
    if n - n_eval < 1:
        raise LandscapeError(f"samples: need at least 2 (training and evaluation inputs), got {n}")
    train_x, eval_x = setup.x[:-n_eval], setup.x[-n_eval:]
    eval_y = setup.y[-n_eval:] if setup.y is not None else None
    parts, states = [], {}
    from ._state import model_view

    bn_modes = []
    for requested in variants:
        variant, model = _variant_model(setup, requested)
        # One view per variant: every activation, loss and metric of it sees the
        # same BatchNorm statistics (--bn; recompute takes them on the training inputs).
        model = model_view(model, bn=opts["bn"], data=train_x)
        bn_modes.append(f"{variant}:{model.bn_mode}")
        for layer in layers:
            layer = resolve_layer(model, layer)
            key = f"{variant}/{layer}"
            vectors, _ = layer_vectors(model, layer, train_x, max_memory=opts.get("max_memory"))
            if saved is not None:
                if key not in saved:
                    raise LandscapeError(f"sae: {opts['sae']!r} has no SAE for {key!r} (it has "
                                         f"{', '.join(sorted(saved))})")
                sae = saved[key].to(setup.device)
            else:
                epochs = opts["epochs"] or default_epochs(len(vectors), opts["batch_size"],
                                                          opts["tokens"] or None)
                sae = train_sae(vectors, expansion=opts["expansion"], k=opts["k"],
                                aux_k=opts["aux_k"], tokens=opts["tokens"] or None,
                                epochs=epochs, lr=opts["lr"], batch_size=opts["batch_size"],
                                seed=opts["seed"], device=setup.device,
                                progress=progress_bar("step"))
            states[key] = sae_state(sae, train_config=getattr(sae, "train_config", {}))
            parts.append(sae_metrics(model, sae, eval_x, eval_y, layer, train_x=train_x,
                                     train_vectors=vectors, variant=variant,
                                     maxact_latents=opts["maxact_latents"], seed=opts["seed"],
                                     max_memory=opts.get("max_memory"), dataset=opts["dataset"]))
            del vectors
            if setup.device.type == "cuda":
                torch.cuda.empty_cache()
    attrs = dict(parts[0].attrs)
    ds = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    ds.attrs = attrs
    ds.attrs["variants"] = ",".join(str(v) for v in ds.variant.values)
    ds.attrs["sae_source"] = str(opts["sae"] or "trained")
    ds.attrs["bn"] = ",".join(bn_modes)
    ds.attrs["sae_weights"] = weights_path(setup.out).name
    _save_alongside(setup, states)
    return ds, setup


def _save_alongside(setup: Setup, states: dict) -> None:
    """Make ``setup.finish`` write the SAE weights beside the result (both or neither)."""
    finish = setup.finish

    def finish_with_weights(ds):
        path = weights_path(setup.out)
        _save_weights(states, path)
        try:
            return finish(ds)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    setup.finish = finish_with_weights
