"""``landscape sae``: TopK sparse autoencoders on a model's activations, per
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

from pathlib import Path

import click
import numpy as np

from ..errors import LandscapeError
from ..results import check_writable
from ..sae.study import MIN_STEPS
from .analysis import Analysis
from .options import MAX_MEMORY_OPTION, MODEL_OPTIONS, bn_option, option_list
from .setup import Setup, default_dataset, model_from_options, progress_bar, resolve_recipe

EVAL_SHARE = 0.25
# --samples and --batch-size when the command line leaves them unset, by kind of model.
SAE_DEFAULTS = {"token": {"samples": 2048, "batch_size": 1024},
                "image": {"samples": 1024, "batch_size": 256},
                # A pretrained sentence encoder (minilm): a 22.7 M-parameter forward pass.
                "sentence": {"samples": 256, "batch_size": 256}}
DEFAULT_SAE = {"expansion": 16, "k": 32}


def model_kind(opts: dict) -> str:
    """``"sentence"`` for a pretrained sentence encoder (task ``embed``: minilm),
    ``"token"`` when the model reads byte sequences (its ``--dataset``, or the
    model's own default, is pysource or text:PATH), else ``"image"``."""
    import torch

    from ..data import is_text
    from ..models import MODELS

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


def _sae_summary(ds) -> list[str]:
    lines = []
    for variant in ds.variant.values:
        for layer in ds.layer.values:
            part = ds.sel(variant=variant, layer=layer)
            if not bool(part.fvu.notnull()):
                continue
            text = (f"{variant:>14s} {layer}: fvu {float(part.fvu):.3f}, l0 {float(part.l0):.1f}, "
                    f"dead {100 * float(part.dead_frac):.0f}%, loss recovered "
                    f"{_recovered(part, 'mean')} (mean abl.) {_recovered(part, 'zero')} (zero abl.)")
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


def _recovered(part, ablation: str) -> str:
    """loss_recovered as text; n/a, and why, when ablation's loss change is noise."""
    value = float(part[f"loss_recovered_{ablation}"])
    if np.isfinite(value):
        return f"{value:.3f}"
    return "n/a (ablation within noise)" if "loss_clean" in part else "nan"


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

    from ..results import atomic_write

    with atomic_write(path) as tmp:  # the umask's permissions, never half a file
        torch.save({"saes": states}, tmp)


def load_weights(path) -> dict:
    """``{"variant/layer": TopKSAE}`` from a file written by ``landscape sae``."""
    from ..sae import TopKSAE
    from ..validate import torch_load

    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"sae: no such file {str(path)!r}")
    obj = torch_load(path, f"sae: {str(path)!r} holds no SAE weights")
    try:
        saes = {}
        for key, state in obj["saes"].items():
            saes[key] = TopKSAE.from_state(state)
            saes[key].train_config = dict(state.get("train_config") or {})
        return saes
    except LandscapeError:
        raise
    except Exception as exc:
        raise LandscapeError(f"sae: {str(path)!r} holds no SAE weights ({type(exc).__name__})") from None


SAE_OPTIONS = option_list(
    bn_option(per_sample=True),
    click.option("--variant", default=None,
                  help="Comma-separated variants of the model: trained, init, rerandomised, "
                       "rerandomised-except-embeddings, control, or init:SCHEME[:S] (re-drawn with "
                       "init SCHEME and bias scale S, e.g. init:xavier:0.1; default: the model as "
                       "loaded)."),
    click.option("--layer", default=None,
                  help="Comma-separated modules whose activations to encode (default: the one "
                       "feeding the head)."),
    click.option("--expansion", type=int, default=None,
                  help=f"Latents per activation feature [{DEFAULT_SAE['expansion']}; with --sae: "
                       "the file's, which a different value is refused against]."),
    click.option("--k", type=int, default=None,
                  help=f"Active latents (TopK) [{DEFAULT_SAE['k']}; with --sae: the file's]."),
    click.option("--aux-k", type=int, default=None,
                  help="Dead latents in the AuxK loss (default: half the features; 0: off)."),
    click.option("--tokens", type=int, default=None,
                  help="Activations to train on per epoch, at least --batch-size (default: all of "
                       "the training inputs')."),
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
SAMPLES_OPTION = option_list(click.option(
    "--samples", type=int, default=None,
    help=f"Deterministic subset of the data: three quarters train the SAE, one quarter "
         f"evaluates it (default: {SAE_DEFAULTS['token']['samples']} windows for token models, "
         f"{SAE_DEFAULTS['image']['samples']} inputs for image models)."))
SAE_MODEL_OPTIONS = [SAMPLES_OPTION[0] if p.name == "samples" else p for p in MODEL_OPTIONS]


def sae_analysis(opts: dict):
    """Train (or load) an SAE per variant and layer; every metric on held-out inputs."""
    from ..sae import sae_study

    resolve_defaults(opts)
    for name in ("expansion", "k", "epochs", "batch_size"):
        if opts[name] is not None and opts[name] < 1:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 1, got {opts[name]}")
    for name in ("tokens", "aux_k", "maxact_latents"):
        if opts[name] is not None and opts[name] < 0:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 0, got {opts[name]}")
    if opts["tokens"] is not None and opts["tokens"] < opts["batch_size"]:
        raise LandscapeError(f"tokens: {opts['tokens']} activations per epoch are fewer than one "
                             f"batch (--batch-size {opts['batch_size']}); leave --tokens out to "
                             "train on all of them")
    variants = _names(opts["variant"], "variant")
    layers = _names(opts["layer"], "layer")
    saved = load_weights(opts["sae"]) if opts["sae"] else None
    if saved:
        _adopt_saved(opts, saved)
    for key, value in DEFAULT_SAE.items():
        opts[key] = value if opts[key] is None else opts[key]
    setup = Setup("sae", opts)
    # The weights go beside the result, checked before any training; --sae naming that
    # very file re-analyses it and leaves it as it is.
    weights = weights_path(setup.out)
    in_place = bool(saved) and Path(opts["sae"]).resolve() == weights.resolve()
    if not in_place:
        check_writable(weights, opts["overwrite"])
    n = len(setup.x)
    n_eval = max(1, round(EVAL_SHARE * n))
    if n - n_eval < 1:
        raise LandscapeError(f"samples: need at least 2 (training and evaluation inputs), got {n}")
    ds, states = sae_study(
        setup.model, setup.x[:-n_eval], setup.x[-n_eval:],
        setup.y[-n_eval:] if setup.y is not None else None, variants, layers,
        trained=setup.trained, recipe=setup.checkpoint_meta, seed=opts["seed"],
        expansion=opts["expansion"], k=opts["k"], aux_k=opts["aux_k"],
        tokens=opts["tokens"] or None, epochs=opts["epochs"], lr=opts["lr"],
        batch_size=opts["batch_size"], maxact_latents=opts["maxact_latents"], bn=opts["bn"],
        saved=saved, max_memory=opts.get("max_memory"), dataset=opts["dataset"],
        progress=progress_bar("step"))
    ds.attrs["sae_source"] = str(opts["sae"] or "trained")
    ds.attrs["sae_weights"] = weights.name
    if not in_place:  # written with the result: both or neither
        setup.companions.append((weights, lambda path: _save_weights(states, path)))
    return ds, setup


def _adopt_saved(opts: dict, saved: dict) -> None:
    """Record the expansion and k of the saved SAEs in ``opts`` (one number, or
    ``{"variant/layer": number}`` where they differ); refuse a value given on the
    command line that differs from theirs."""
    for name in ("expansion", "k"):
        values = {key: sae.n_latents // sae.d if name == "expansion" else sae.k
                  for key, sae in saved.items()}
        for key, value in values.items():
            if opts[name] is not None and opts[name] != value:
                raise LandscapeError(f"{name}: {opts['sae']!r} holds an SAE for {key!r} with "
                                     f"{name} {value}, not {opts[name]}; leave --{name} out with "
                                     "--sae")
        opts[name] = values.popitem()[1] if len(set(values.values())) == 1 else values


ANALYSIS = Analysis("sae", sae_analysis, tuple(SAE_MODEL_OPTIONS + SAE_OPTIONS), _sae_summary,
                    headlines=("fvu", "dead_frac", "loss_recovered_mean", "kl", "interp_auroc",
                               "token_entropy", "label_entropy"), figure="sae",
                    help=(
                    'Sparse autoencoders on activations of trained and random variants of a '
                    'model: reconstruction, loss recovered, and interpretability proxies.'))
