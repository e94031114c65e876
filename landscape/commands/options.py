"""The command line's shared options, as lists of click parameters: the model and
data options every analysis takes, ``--loss``, ``--bn`` and ``--max-memory``.
Each analysis's own options live in its file (:mod:`landscape.commands.slice`, ...).
This package is the only place that imports click, with :mod:`landscape.cli`."""

from __future__ import annotations

from collections.abc import Sequence

import click

from ..errors import LandscapeError
from ..losses import LOSSES
from ..validate import SEED_MAX, THREADS_HELP


def option_list(*decorators) -> list[click.Parameter]:
    """The parameters that ``click.option(...)`` decorators would add, in order."""

    def target():
        pass

    for decorate in reversed(decorators):
        target = decorate(target)
    return list(reversed(target.__click_params__))


def with_options(params: Sequence[click.Parameter]):
    """Decorator: give a click command function ``params``, listed before the
    options declared below the decorator."""

    def decorate(f):
        f.__click_params__ = [*getattr(f, "__click_params__", []), *reversed(params)]
        return f

    return decorate


MODEL_OPTIONS = option_list(
    click.option("--model", "model_name", default="resnet18", show_default=True,
                 help="Registered model (see `landscape info`), or your own: PATH.py:FUNCTION or "
                      "package.module:FUNCTION, a function returning an nn.Module."),
    click.option("--model-args", default=None,
                 help="JSON object of keyword arguments for your model's FUNCTION, "
                      "e.g. '{\"hidden\": 32}'."),
    click.option("--init", default=None,
                 help="Weight initialisation scheme. Default: the checkpoint's, else "
                      "'default' (PyTorch's own)."),
    click.option("--bias-scale", type=float, default=None,
                 help="Draw biases and norm-layer shifts from N(0, S^2) after the init "
                      "(0: zero biases). Default: what the init's reference does."),
    click.option("--weight-std", type=float, default=None, help="Std of init 'normal'."),
    click.option("--width", type=int, default=None,
                 help="Width of mlp/cnn/autoencoder/transformer."),
    click.option("--depth", type=int, default=None, help="Hidden layers of mlp, blocks of "
                                                         "transformer."),
    click.option("--heads", type=int, default=None, help="Attention heads of transformer."),
    click.option("--context", type=int, default=None,
                 help="Window length in bytes of transformer (its input shape), in WordPiece "
                      "tokens of minilm."),
    click.option("--tied/--untied", "tied", default=None,
                 help="Transformer: output head shares the token embedding (default tied)."),
    click.option("--position", type=int, default=None,
                 help="Transformer: the position whose features are the units (default -1, "
                      "the last)."),
    click.option("--activation", default=None, help="relu, tanh, gelu or sigmoid (mlp, cnn, "
                                                    "autoencoder)."),
    click.option("--in-shape", default=None, help="Input shape C x H x W, e.g. 1x8x8 "
                                                  "(default: the model's own)."),
    click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                 help="State dict (torch.save) to load into the model. Its meta's init, bias "
                      "scale, weight std, model options and seed apply unless given here."),
    click.option("--dataset", default=None,
                 help="Images: digits, shapes, shapes64 (procedural; pixels near chance), "
                      "mnist5k (real MNIST, the data extra), cifar10, mnist, fashion-mnist, "
                      "gaussian. Text: pysource, english or text:PATH. Your own: npz:FILE "
                      "(arrays x, optional y) or folder:DIR (one sub-folder of images per "
                      "class, resized to --in-shape). Default: digits; pysource for the "
                      "transformer, english for minilm. See `landscape info`."),
    click.option("--data-root", type=click.Path(file_okay=False), default=None,
                 help="Folder holding torchvision's copy of cifar10/mnist/fashion-mnist."),
    click.option("--download", is_flag=True, help="Download the dataset into --data-root."),
    click.option("--split", default="train", show_default=True, help="train or test."),
    click.option("--samples", type=int, default=256, show_default=True,
                 help="Deterministic subset of the data to use."),
    click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None,
                 help="Seeds the weights, the data subset and the directions. Default: the "
                      "checkpoint's, else 0."),
    click.option("--device", default="auto", show_default=True,
                 help="auto (CUDA when present), cpu, cuda or cuda:N."),
    click.option("--out", type=click.Path(dir_okay=False), default=None,
                 help="netCDF file to write (default: a new file in the current folder)."),
    click.option("--overwrite", is_flag=True, help="Replace --out if it exists."),
    click.option("--threads", type=click.IntRange(min=1), default=None, help=THREADS_HELP),
)


def bn_option(per_sample: bool = False, both_by_default: bool = False):
    """``--bn``: the BatchNorm statistics of every part of one result; ``per_sample``
    leaves out ``batch`` (commands about a unit's response to its own input);
    ``both_by_default``: unset unless given (``slice``: a loss surface of a BatchNorm
    network under ``auto`` and ``batch`` side by side)."""
    from ..view import BN_MODES, PER_SAMPLE_BN_MODES

    batch = "" if per_sample else ", batch (each batch's own; loss space only)"
    default = ("Default: the loss of a BatchNorm network under both auto and batch, side by "
               "side (dimension bn), everything else auto." if both_by_default else "")
    return click.option(
        "--bn", type=click.Choice(PER_SAMPLE_BN_MODES if per_sample else BN_MODES),
        default=None if both_by_default else "auto", show_default=not both_by_default,
        help=f"BatchNorm statistics: eval (running statistics as stored){batch}, recompute "
             "(running statistics recomputed on the data, weights frozen), auto (eval once the "
             "statistics were ever updated, as in a trained checkpoint; recompute for a random "
             f"network). {default}".rstrip())


def _check_size(_ctx, _param, value):
    if value is None:
        return None
    from ..memory import parse_size

    try:
        parse_size(value)
    except LandscapeError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


# ``--max-memory``: the memory budget of an analysis's buffers (see
# :mod:`landscape.memory`), checked as a size before any work.
MAX_MEMORY_OPTION = click.option(
    "--max-memory", default=None, callback=_check_size,
    help="Memory the analysis may fill, e.g. 6GB (default: half of what is available; also "
         "LANDSCAPE_MAX_MEMORY).")


LOSS_OPTIONS = option_list(
    click.option("--loss", type=click.Choice(sorted(LOSSES)), default=None,
                 help="Loss over the outputs: cross-entropy (logits, classes last; (B, T, V) "
                      "sequences too), nll (log-probabilities), mse, bce (logits). Default: "
                      "cross-entropy, mse for the autoencoder."),
)
