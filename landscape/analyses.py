"""The analyses the command line and sweeps run, by name: each one's options
(click parameters), the function that runs it from a dict of those options, and
the summary lines printed after it.

``landscape slice ...`` parses its arguments with the options registered here
and calls the registered function; a sweep task parses the same arguments with
the same options (:meth:`Analysis.parse`) and calls the same function, so a
sweep accepts exactly the options of the analysis it sweeps.  This module sits
below both :mod:`landscape.cli` and :mod:`landscape.sweep` and imports neither.

Every function here builds the model and data with :class:`Setup`, calls the
public API and returns ``(Dataset, Setup)``; :meth:`Setup.finish` adds the
options to the provenance and saves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
import numpy as np

from .errors import LandscapeError
from .losses import LOSSES
from .validate import SEED_MAX, THREADS_HELP, check_labels


@dataclass(frozen=True)
class Analysis:
    """One analysis: its name, options, function and summary."""

    name: str
    run: Callable[[dict], tuple]  # opts -> (xarray.Dataset, Setup)
    options: tuple[click.Parameter, ...]
    summary: Callable[[object], list[str]]

    def parse(self, args: Sequence[str], prog: str | None = None) -> dict:
        """The options dict the command ``landscape NAME ARGS`` would run with; a
        usage error is a LandscapeError starting with ``prog`` (default: the name)."""
        command = click.Command(self.name, params=list(self.options))
        try:
            ctx = command.make_context(self.name, list(args))
        except click.UsageError as exc:
            raise LandscapeError(f"{prog or self.name}: {exc.format_message()}") from None
        return dict(ctx.params)


ANALYSES: dict[str, Analysis] = {}


def analysis(name: str, options: Sequence[click.Parameter], summary=None):
    """Register ``fn(opts) -> (Dataset, Setup)`` as analysis ``name`` with its options."""

    def register(fn):
        ANALYSES[name] = Analysis(name, fn, tuple(options), summary or (lambda _ds: []))
        return fn

    return register


def get(name: str) -> Analysis:
    """The analysis called ``name``, or a LandscapeError listing the others."""
    if name not in ANALYSES:
        raise LandscapeError(f"unknown analysis {name!r}; choose one of {', '.join(sorted(ANALYSES))}")
    return ANALYSES[name]


def _options(*decorators) -> list[click.Parameter]:
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


def progress_bar(unit: str = "pt"):
    """A factory ``(total, description) -> bar on stderr``: tqdm's on a terminal, else
    a line every ~30 s (:class:`landscape.progress.LineProgress`)."""
    from .progress import stderr_bar

    return stderr_bar(unit)


def run_command(name: str, opts: dict) -> None:
    """Run analysis ``name``, print its summary and save; the last stdout line
    names the file written."""
    from .memory import use_threads

    entry = ANALYSES[name]
    use_threads(opts.get("threads"))
    ds, setup = entry.run(opts)
    for line in entry.summary(ds):
        click.echo(line)
    click.echo(str(setup.finish(ds)))


# ----------------------------------------------------------------------------- model and data

MODEL_OPTIONS = _options(
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
                 help="digits, cifar10, mnist, fashion-mnist, gaussian; pysource or text:PATH "
                      "(byte sequences); or your own: npz:FILE (arrays x, optional y) or "
                      "folder:DIR (one sub-folder of images per class, resized to --in-shape). "
                      "Default: digits, pysource for the transformer."),
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
    from .view import BN_MODES, PER_SAMPLE_BN_MODES

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


# Options a checkpoint's meta supplies unless the command line gives them, with
# the value used when neither does.
RECIPE_OPTIONS = {"init": "default", "bias_scale": None, "weight_std": None, "width": None,
                  "depth": None, "activation": None, "in_shape": None, "seed": 0, "heads": None,
                  "context": None, "tied": None}


def resolve_recipe(opts: dict, meta: dict) -> list[str]:
    """Fill ``opts`` (in place) with a checkpoint's recipe: every option of
    :data:`RECIPE_OPTIONS` the command line left unset takes the meta's value,
    else its default.  Returns the options whose command-line value differs
    from the meta's (overridden)."""
    overridden = []
    for key, default in RECIPE_OPTIONS.items():
        given = opts.get(key)
        stored = meta.get(key) if isinstance(meta, dict) else None
        if key == "in_shape" and stored is not None:
            stored = "x".join(str(int(v)) for v in stored)
        if given is None:
            # bias_scale None in a meta is a value (the init's own), as is its absence.
            opts[key] = stored if stored is not None else default
        elif (stored is not None or (key == "bias_scale" and key in meta)) and \
                str(given) != str(stored) and not (key == "in_shape" and _same_shape(given, stored)):
            overridden.append(key)
    return overridden


def _check_size(_ctx, _param, value):
    if value is None:
        return None
    from .memory import parse_size

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


def _same_shape(a, b) -> bool:
    from .models import parse_shape

    try:
        return parse_shape(a) == parse_shape(b)
    except LandscapeError:
        return False


def pick_device(name: str):
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N`` as a torch device."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LandscapeError(f"device: unknown value {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LandscapeError(f"device: {name!r} asked for but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise LandscapeError(f"device: unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def safe_name(text: str) -> str:
    """``text`` fit for a file name (a model spec such as ``nets/a.py:build``
    becomes ``nets-a.py-build``)."""
    return re.sub(r"[^A-Za-z0-9.+-]", "-", str(text))


def output_path(out, overwrite: bool, command: str, model: str, init: str) -> Path:
    """Where the result goes; checked before any work so bad paths fail fast."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{command}_{safe_name(model)}_{safe_name(init)}_{stamp}"
        path, k = Path(f"{base}.nc"), 1
        while path.exists():
            k += 1
            path = Path(f"{base}-{k}.nc")
        return path
    return check_output(Path(out), ".nc", overwrite)


def check_output(path: Path, suffix: str, overwrite: bool) -> Path:
    """``path`` if it names a ``suffix`` file that may be written: its folder
    exists, and it does not or ``overwrite`` is given."""
    from .results import check_writable

    if path.suffix != suffix:
        raise LandscapeError(f"out: expected a {suffix} file name, got {str(path)!r}")
    return check_writable(path, overwrite)


def model_from_options(opts: dict):
    """The model the model options describe (registered, or a user's factory)."""
    from .models import build_model

    return build_model(opts["model_name"], init=opts["init"], bias_scale=opts["bias_scale"],
                       seed=opts["seed"], in_shape=opts["in_shape"], weight_std=opts["weight_std"],
                       model_args=opts.get("model_args"), width=opts["width"], depth=opts["depth"],
                       activation=opts["activation"], heads=opts.get("heads"),
                       context=opts.get("context"), tied=opts.get("tied"),
                       position=opts.get("position"))


def default_dataset(model, dataset: str | None) -> str:
    """``dataset``, or the model's own default (``pysource`` for the transformer,
    else ``digits``)."""
    return dataset or getattr(model, "default_dataset", "digits")


def check_model(opts: dict) -> None:
    """Build the model the options describe on the meta device (no memory, no
    work): an unknown model, init or option, a bad bias scale or a user factory
    that fails is a LandscapeError now rather than when a task runs."""
    import torch

    try:
        with torch.device("meta"):
            model_from_options(opts)
    except LandscapeError:
        raise
    except Exception:  # code that needs real tensors (e.g. .item()): build it for real
        model_from_options(opts)


def input_shape(model, opts: dict):
    """The shape data are converted to: ``--in-shape``, else the model's own (if any)."""
    return opts["in_shape"] if opts["in_shape"] is not None else getattr(model, "in_shape", None)


class Setup:
    """The model, data and bookkeeping one analysis command needs."""

    def __init__(self, command: str, opts: dict):
        import torch

        from .data import load_dataset
        from .models import INIT_KEYS, adopt_meta, input_view, load_checkpoint, read_checkpoint
        from .validate import probe_model

        self.opts = opts
        self.device = pick_device(opts["device"])
        meta = read_checkpoint(opts["checkpoint"])[1] if opts["checkpoint"] else {}
        self.overridden = resolve_recipe(opts, meta)
        self.out = output_path(opts["out"], opts["overwrite"], command, opts["model_name"],
                               opts["init"])
        if opts["samples"] is not None and opts["samples"] < 1:
            raise LandscapeError(f"samples: must be >= 1, got {opts['samples']}")
        model = model_from_options(opts)
        opts["dataset"] = default_dataset(model, opts["dataset"])
        self.checkpoint_meta = {}
        if opts["checkpoint"]:
            self.checkpoint_meta = load_checkpoint(model, opts["checkpoint"])
            # The recipe as finally chosen: the meta's, with the command line's overrides.
            adopt_meta(model, {key: opts[key] for key in INIT_KEYS})
        self.model = model.to(self.device)
        x, y = load_dataset(opts["dataset"], root=opts["data_root"], n=opts["samples"],
                            split=opts["split"], seed=opts["seed"], in_shape=input_shape(model, opts),
                            download=opts["download"], tokenizer=getattr(model, "tokenizer", None))
        check_labels(model, y, opts["dataset"])
        probe_model(model, x[:2].to(self.device), y, opts["dataset"], opts.get("loss"))
        self.x = x.to(self.device)
        self.y = None if y is None else y.to(self.device)
        # Input-space analyses move through token embeddings for a token model.
        self.input_model, self.input_x = input_view(self.model, self.x)
        self.labels = self.y if self.y is not None and self.y.dim() == 1 else None  # per sample
        torch.manual_seed(opts["seed"])

    def finish(self, ds) -> Path:
        """Add the command line's own options to the provenance and save."""
        import torch

        from .results import config_of, save, to_json

        config = config_of(ds)
        config.update({k: v for k, v in self.opts.items() if k not in config and k != "overwrite"})
        from .models.minilm import is_pretrained

        trained = self.opts["checkpoint"] or is_pretrained(self.model)
        config["state"] = "trained" if trained else "random"
        config["overridden"] = self.overridden
        config["threads"] = ds.attrs["threads"] = torch.get_num_threads()
        ds.attrs["config"] = to_json(config)
        ds.attrs["overridden"] = to_json(self.overridden)
        ds.attrs["state"] = config["state"]
        ds.attrs["checkpoint"] = str(self.opts["checkpoint"] or "")
        return save(ds, self.out, overwrite=self.opts["overwrite"])



LOSS_OPTIONS = _options(
    click.option("--loss", type=click.Choice(sorted(LOSSES)), default=None,
                 help="Loss over the outputs: cross-entropy (logits, classes last; (B, T, V) "
                      "sequences too), nll (log-probabilities), mse, bce (logits). Default: "
                      "cross-entropy, mse for the autoencoder."),
)


def check_anchors(opts: dict, used: bool) -> None:
    """The anchors are the first ``--anchors`` of the ``--samples`` data points:
    refuse more anchors than samples rather than silently use fewer."""
    if opts["anchors"] < 1:
        raise LandscapeError(f"anchors: must be >= 1, got {opts['anchors']}")
    if used and opts["samples"] is not None and opts["anchors"] > opts["samples"]:
        raise LandscapeError(f"anchors: {opts['anchors']} anchors are taken from the data, but "
                             f"--samples is {opts['samples']}; lower --anchors or raise --samples")


# ----------------------------------------------------------------------------- slice

SLICE_OPTIONS = _options(
    click.option("--space", type=click.Choice(["loss", "input", "both"]), default="both",
                  show_default=True, help="Slice the loss over parameters, units over their input, or both."),
    click.option("--directions", default=None,
                  help="random, filter, layer, hessian (loss space); random, pca (input space). "
                       "Applies to each space that has it. Default: filter / random."),
    click.option("--dims", type=click.IntRange(1, 2), default=None,
                  help="1 (curves) or 2 (surfaces). Default: 2 for the loss, 1 for the input."),
    click.option("--grid", default="-1:1:21", show_default=True, help="start:stop:num of alpha (and beta)."),
    click.option("--layer", default=None, help="Module whose units to slice (default: the one feeding "
                                                "the head)."),
    click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer."),
    click.option("--anchors", type=int, default=8, show_default=True,
                  help="Data points the input slices pass through."),
    click.option("--include-bias", is_flag=True, help="Give biases and norm layers a direction too."),
    click.option("--orthogonal", is_flag=True, help="Orthogonalise the loss-space directions."),
    bn_option(both_by_default=True),
    click.option("--engine", type=click.Choice(["auto", "vmap", "loop"]), default="auto",
                  show_default=True, help="How grid points of the loss slice are batched."),
    click.option("--batch-size", type=int, default=None,
                  help="Data batch size of the loss (default: up to 512) and of --bn recompute; grid "
                       "points per forward pass of the input slices (default: what memory allows)."),
    click.option("--tol", type=float, default=1e-3, show_default=True,
                  help="Relative tolerance of the convexity verdicts."),
    MAX_MEMORY_OPTION,
    click.option("--trajectory", type=click.Path(file_okay=False), default=None,
                  help="Folder of step_NNN.pt checkpoints (`landscape train --save-trajectory`): "
                       "--directions pca then slices the loss along its principal directions, centred "
                       "at its last checkpoint unless --checkpoint is given."),
    click.option("--scheduler", default=None,
                 help="Shard the grid points over Dask workers: local:N (N worker processes here) "
                      "or a scheduler's address (tcp://host:8786). Same result as one process."),
)


def _slice_summary(ds) -> list[str]:
    from .results import BN_MEANINGS

    lines = []
    if "loss" in ds:
        modes = [str(m) for m in ds.bn.values] if "bn" in ds.loss.dims else [None]
        for mode in modes:
            loss = ds.loss if mode is None else ds.loss.sel(bn=mode)
            prefix = "loss_" if mode is None else f"loss_{mode}_"
            centre = loss.sel(alpha=0, method="nearest")
            if "beta" in loss.dims:
                centre = centre.sel(beta=0, method="nearest")
            used = mode or json_or_text(ds.attrs.get("bn", ""), "loss")
            named = ("no BatchNorm" if not int(ds.attrs.get("batch_norm_layers", 1))
                     else f"BatchNorm {used}: {BN_MEANINGS.get(used, used)}")
            lines.append(f"loss ({named}) at the centre {float(centre):.4g}, range "
                         f"[{float(loss.min()):.4g}, {float(loss.max()):.4g}]; quasi-convex "
                         f"{100 * ds.attrs[prefix + 'frac_quasi_convex']:.0f}% of lines, constant "
                         f"{100 * ds.attrs[prefix + 'frac_constant']:.0f}%")
    if "activation" in ds:
        lines.append(f"{ds.sizes['unit']} units x {ds.sizes['anchor']} anchors: quasi-convex "
                     f"{100 * ds.attrs['activation_frac_quasi_convex']:.0f}%, quasi-concave "
                     f"{100 * ds.attrs['activation_frac_quasi_concave']:.0f}%, either "
                     f"{100 * ds.attrs['activation_frac_either']:.0f}% of the curves that are not "
                     f"constant; constant {100 * ds.attrs['activation_frac_constant']:.0f}%")
    return lines


@analysis("slice", MODEL_OPTIONS + LOSS_OPTIONS + SLICE_OPTIONS, _slice_summary)
def slice_analysis(opts: dict):
    """Loss and/or input slices as the `slice` command's options say."""
    from .directions import INPUT_DIRECTIONS, PARAMETER_DIRECTIONS
    from .slicing import parse_grid, sharding

    parse_grid(opts["grid"])  # fail on a malformed grid before any work
    space, chosen = opts["space"], opts["directions"]
    spaces = ("loss", "input") if space == "both" else (space,)
    if chosen is not None:
        valid = [s for s in spaces if chosen in (PARAMETER_DIRECTIONS if s == "loss" else INPUT_DIRECTIONS)]
        if not valid:
            allowed = sorted(set(PARAMETER_DIRECTIONS if "loss" in spaces else ()) |
                             set(INPUT_DIRECTIONS if "input" in spaces else ()))
            raise LandscapeError(f"directions: unknown value {chosen!r} for --space {space}; "
                                 f"choose one of {', '.join(allowed)}")
    check_anchors(opts, "input" in spaces)
    trajectory = opts.get("trajectory")
    loss_pca = "loss" in spaces and chosen == "pca"
    if loss_pca and not trajectory:
        raise LandscapeError("directions: 'pca' in the loss space needs --trajectory DIR (checkpoints "
                             "written by `landscape train --save-trajectory`)")
    if trajectory and not loss_pca:
        raise LandscapeError("trajectory: --trajectory serves --directions pca with --space loss or both")
    if trajectory:
        from .trajectory import trajectory_files

        if not opts["checkpoint"]:  # centre the slice at the trajectory's end
            opts = {**opts, "checkpoint": str(trajectory_files(trajectory)[-1])}
    if "input" in spaces:
        from .view import check_per_sample

        check_per_sample(opts["bn"] or "auto", "the input space (use --space loss)")
    if opts["batch_size"] is not None and opts["batch_size"] < 1:
        raise LandscapeError(f"batch-size: must be >= 1, got {opts['batch_size']}")
    shards = sharding(opts.get("scheduler"))  # a malformed --scheduler fails here
    setup = Setup("slice", opts)
    # One choice of BatchNorm statistics for every part of the result; unless --bn is
    # given, the loss of a BatchNorm network also under batch statistics, side by side.
    if "loss" in spaces and getattr(setup.model, "no_loss", None):  # minilm
        raise LandscapeError(f"slice --space loss: {setup.model.no_loss}")
    bn = _resolve_bn(setup, opts["bn"] or "auto")
    loss_bn = bn
    if opts["bn"] is None and bn != "batch":
        from .view import batch_norms

        loss_bn = (bn, "batch") if batch_norms(setup.model) else bn
    with shards as client:
        ds = _slices(opts, setup, bn, loss_bn, spaces, chosen, loss_pca, trajectory, client)
    if client is not None:
        ds.attrs["scheduler"] = str(opts["scheduler"])
    return ds, setup


def _slices(opts, setup, bn, loss_bn, spaces, chosen, loss_pca, trajectory, client):
    """The loss and/or input slices of :func:`slice_analysis`, merged."""
    import xarray as xr

    from .directions import INPUT_DIRECTIONS, PARAMETER_DIRECTIONS
    from .slicing import input_slice, loss_slice

    parts = []
    if "loss" in spaces:
        kind = chosen if chosen in PARAMETER_DIRECTIONS else "filter"
        dims = opts["dims"] or 2
        if loss_pca:
            from .trajectory import load_trajectory, trajectory_dataset, trajectory_directions

            steps, states = load_trajectory(trajectory)
            pcs, projections = trajectory_directions(setup.model, states, n=dims)
            kind = pcs
        part = loss_slice(
            setup.model, setup.x, setup.y, directions=kind, dims=dims, grid=opts["grid"],
            include_bias=opts["include_bias"], orthogonal=opts["orthogonal"], bn=loss_bn,
            batch_size=opts["batch_size"], engine=opts["engine"], seed=opts["seed"], tol=opts["tol"],
            dataset=opts["dataset"], progress=progress_bar(), loss_fn=opts["loss"],
            max_memory=opts["max_memory"], scheduler=client,
            hessian_options={"batch_size": opts["batch_size"]} if kind == "hessian" else None)
        if loss_pca:
            part = part.merge(trajectory_dataset(setup.model, states, steps, pcs, projections))
            part.attrs["directions"] = "pca"
            part.attrs["trajectory"] = str(trajectory)
        parts.append(part)
    if "input" in spaces:
        kind = chosen if chosen in INPUT_DIRECTIONS else "random"
        n_anchor = opts["anchors"]
        parts.append(input_slice(
            setup.input_model, opts["layer"], opts["units"], setup.input_x[:n_anchor],
            directions=kind, dims=opts["dims"] or 1, grid=opts["grid"], data=setup.input_x,
            anchor_labels=None if setup.labels is None else setup.labels[:n_anchor],
            bn=bn, batch_size=opts["batch_size"], seed=opts["seed"], tol=opts["tol"],
            dataset=opts["dataset"], progress=progress_bar(), max_memory=opts["max_memory"],
            scheduler=client))
    return parts[0] if len(parts) == 1 else _merge_slices(parts, xr)


def json_or_text(value: str, key: str) -> str:
    """``value[key]`` when ``value`` is a JSON object (a merged slice's per-space
    attribute), else ``value``."""
    import json

    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return value
    return str(parsed.get(key, "")) if isinstance(parsed, dict) else value


def _resolve_bn(setup, bn: str) -> str:
    from .view import resolve_bn

    return resolve_bn(setup.model, bn)


def _merge_slices(parts, xr):
    """One Dataset holding the loss and input slices (same grid, so same alpha)."""
    attrs = dict(parts[0].attrs)
    merged = xr.merge(parts, compat="override", combine_attrs="drop")
    from .results import config_of, to_json

    attrs["config"] = to_json({p.attrs["space"]: config_of(p) for p in parts})
    attrs.update({k: v for k, v in parts[1].attrs.items() if k not in attrs})
    attrs["space"] = "both"
    attrs["directions"] = to_json({p.attrs["space"]: p.attrs["directions"] for p in parts})
    modes = {p.attrs["space"]: p.attrs["bn"] for p in parts}
    # One mode for both parts stays one word; the loss under several modes names each part's.
    attrs["bn"] = modes["loss"] if len(set(modes.values())) == 1 else to_json(modes)
    merged.attrs = attrs
    return merged


# ----------------------------------------------------------------------------- hessian

HESSIAN_OPTIONS = _options(
    click.option("--space", type=click.Choice(["loss", "input"]), default="loss", show_default=True,
                  help="Curvature of the loss over parameters, or of units over their input."),
    click.option("--top-k", type=int, default=5, show_default=True, help="Largest eigenvalues."),
    click.option("--bottom-k", type=int, default=0, show_default=True, help="Smallest eigenvalues."),
    click.option("--density", is_flag=True, help="Spectral density by stochastic Lanczos quadrature."),
    click.option("--trace", is_flag=True, help="Trace by Hutch++, with its standard error."),
    click.option("--tol", type=float, default=1e-4, show_default=True,
                  help="Relative residual at which an eigenpair has converged."),
    click.option("--method", type=click.Choice(["auto", "dense", "lanczos"]), default="auto",
                 show_default=True, help="dense: exact, from the whole Hessian and eigh; lanczos: "
                 "Lanczos, SLQ, Hutch++; auto: dense below the crossover in cost."),
    click.option("--max-steps", type=int, default=None, help="Cap on Lanczos steps (HVPs)."),
    click.option("--density-runs", type=int, default=8, show_default=True),
    click.option("--density-steps", type=int, default=80, show_default=True),
    click.option("--trace-probes", type=int, default=99, show_default=True),
    click.option("--zero-tol", type=float, default=0.03, show_default=True,
                 help="Half-width of the zero mass, as a fraction of the spectral range."),
    click.option("--block-size", type=int, default=None,
                 help="Lanczos block, fixed [2, widened where a converged cluster may hide "
                 "copies of a wanted eigenvalue]."),
    MAX_MEMORY_OPTION,
    click.option("--engine", type=click.Choice(["auto", "double-backward", "forward-over-reverse"]),
                  default="auto", show_default=True, help="How Hessian-vector products are taken."),
    bn_option(),
    click.option("--batch-size", type=int, default=None,
                  help="Data batch size of the loss (loss space) and of --bn recompute."),
    click.option("--layer", default=None, help="Module whose units to take (input space)."),
    click.option("--units", type=int, default=8, show_default=True, help="First N units (input space)."),
    click.option("--anchors", type=int, default=4, show_default=True,
                  help="Data points at which each unit's input Hessian is taken (input space)."),
)


def _hessian_summary(ds) -> list[str]:
    eig = ds["eigenvalue"]
    if ds.attrs["kind"] == "input_hessian":
        top = eig.where(eig.which == "top").max("eig").mean("anchor")
        return [f"{ds.sizes['unit']} units x {ds.sizes['anchor']} anchors: mean top eigenvalue "
                f"{float(top.mean()):.4g}; {int(ds.attrs.get('n_hvp', 0))} Hessian-vector products"]
    lines = []
    if eig.size:
        values = ", ".join(f"{v:.4g}" for v in eig.values)
        lines.append(f"eigenvalues ({', '.join(str(w) for w in eig.which.values)}): {values}")
        unconverged = ~ds["converged"].values.astype(bool)
        if unconverged.any():
            worst = float(np.max(ds["residual"].values[unconverged]
                                 / np.abs(eig.values[unconverged]).clip(1e-300)))
            lines.append(f"not converged: {int(unconverged.sum())} of {eig.size} eigenvalues "
                         f"(relative residual up to {worst:.2g}); raise --max-steps, or "
                         f"--max-memory for a larger basis")
    if np.isfinite(float(ds["trace"])):
        lines.append(f"trace {float(ds['trace']):.4g} ± {float(ds['trace_stderr']):.2g}")
    if np.isfinite(float(ds["negative_mass"])):
        lines.append(f"mass below/within/above ±{ds.attrs['zero_eps']:.3g}: "
                     + " / ".join(f"{float(ds[n]):.4f}"
                                  for n in ("negative_mass", "zero_mass", "positive_mass")))
    exact = " (dense Hessian: exact values)" if ds.attrs.get("method") == "dense" else ""
    lines.append(f"{int(ds.attrs.get('n_hvp', 0))} Hessian-vector products{exact}")
    return lines


@analysis("hessian", MODEL_OPTIONS + LOSS_OPTIONS + HESSIAN_OPTIONS, _hessian_summary)
def hessian_analysis(opts: dict):
    """Loss or input Hessian spectrum as the `hessian` command's options say."""
    from .hessian import hessian_spectrum, input_hessian_spectrum

    for key in ("top_k", "bottom_k"):
        if opts[key] < 0:
            raise LandscapeError(f"{key.replace('_', '-')}: must be >= 0, got {opts[key]}")
    if opts["top_k"] + opts["bottom_k"] == 0 and not opts["density"] and not opts["trace"]:
        raise LandscapeError("nothing to compute: give --top-k/--bottom-k > 0, --density or --trace")
    check_anchors(opts, opts["space"] == "input")
    if opts["space"] == "input":
        from .view import check_per_sample

        check_per_sample(opts["bn"], "the input space (use --space loss)")
    if opts["batch_size"] is not None and opts["batch_size"] < 1:
        raise LandscapeError(f"batch-size: must be >= 1, got {opts['batch_size']}")
    setup = Setup("hessian", opts)
    if opts["space"] == "loss" and getattr(setup.model, "no_loss", None):  # minilm
        raise LandscapeError(f"hessian --space loss: {setup.model.no_loss}")
    common = dict(top_k=opts["top_k"], bottom_k=opts["bottom_k"], density=opts["density"],
                  trace=opts["trace"], tol=opts["tol"], max_steps=opts["max_steps"],
                  engine=opts["engine"], density_runs=opts["density_runs"],
                  density_steps=opts["density_steps"], trace_probes=opts["trace_probes"],
                  zero_tol=opts["zero_tol"], block_size=opts["block_size"],
                  max_memory=opts["max_memory"], seed=opts["seed"], dataset=opts["dataset"],
                  method=opts["method"])
    if opts["space"] == "loss":
        ds = hessian_spectrum(setup.model, setup.x, setup.y, batch_size=opts["batch_size"],
                              bn=opts["bn"], loss_fn=opts["loss"], progress=progress_bar("hvp"),
                              **common)
    else:
        ds = input_hessian_spectrum(setup.input_model, opts["layer"], opts["units"],
                                    setup.input_x[:opts["anchors"]], progress=progress_bar("op"),
                                    bn=opts["bn"], data=setup.input_x, batch_size=opts["batch_size"],
                                    **common)
    return ds, setup


# ----------------------------------------------------------------------------- maxact

MAXACT_OPTIONS = _options(
    bn_option(per_sample=True),
    click.option("--layer", default=None, help="Module whose units to study (default: the one "
                                                "feeding the head)."),
    click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer."),
    click.option("--top-k", type=int, default=9, show_default=True, help="Dataset top examples per unit."),
    click.option("--restarts", type=int, default=16, show_default=True,
                  help="Random starts of gradient ascent per unit (the top-k start too)."),
    click.option("--steps", type=int, default=200, show_default=True, help="Ascent steps."),
    click.option("--lr", type=float, default=0.05, show_default=True,
                  help="Ascent step: a fraction of each feature's data range (box), of the "
                       "region's diameter (ball, data)."),
    click.option("--region", type=click.Choice(["data", "ball", "box"]), default="data",
                  show_default=True,
                  help="Where maxima are sought: data = convex combinations of a start's "
                       "--region-k nearest examples; ball = within --radius of the data mean; "
                       "box = each feature within its data range."),
    click.option("--region-k", type=int, default=16, show_default=True,
                  help="Nearest examples whose blends form the data region."),
    click.option("--radius", type=float, default=None,
                  help="Radius of the ball region (default: the largest distance of an "
                       "example to the data mean)."),
    click.option("--null", type=int, default=0, show_default=True,
                  help="Re-initialised copies of the architecture for z-scores."),
    click.option("--relate/--no-relate", default=False, show_default=True,
                  help="Add input-slice quasi-convexity and input-Hessian statistics per unit, "
                       "and their rank correlations with the metrics."),
    MAX_MEMORY_OPTION,
)


def _maxact_summary(ds) -> list[str]:
    def mean(name: str) -> str:
        return f"{float(ds[name].mean()):.3g}"

    line = (f"{ds.sizes['unit']} units of {ds.attrs['layer']}, maxima sought in the "
            f"{ds.attrs.get('region', 'box')} region: mean rho {mean('rho')}, "
            f"p_hit {mean('p_hit')}, n_maxima {mean('n_maxima')}, dist_to_data "
            f"{mean('dist_to_data')}, Moran's I {mean('morans_i')}")
    lines = [line]
    if "rho_z" in ds:
        lines.append(f"against {ds.attrs.get('null_models', '')} null model(s): mean z of rho "
                     f"{mean('rho_z')}, of Moran's I {mean('morans_i_z')}")
    return lines


@analysis("maxact", MODEL_OPTIONS + MAXACT_OPTIONS, _maxact_summary)
def maxact_analysis(opts: dict):
    """Dataset top-k, gradient-ascent maxima and reliability metrics."""
    from .maxact import maxact

    for name in ("units", "top_k", "restarts", "steps", "region_k"):
        if opts[name] < 1:
            raise LandscapeError(f"{name.replace('_', '-')}: must be >= 1, got {opts[name]}")
    if opts["null"] < 0:
        raise LandscapeError(f"null: must be >= 0, got {opts['null']}")
    setup = Setup("maxact", opts)
    ds = maxact(setup.input_model, opts["layer"], opts["units"], setup.input_x, top_k=opts["top_k"],
                restarts=opts["restarts"], steps=opts["steps"], lr=opts["lr"],
                region=opts["region"], region_k=opts["region_k"], radius=opts["radius"],
                null_models=opts["null"], seed=opts["seed"],
                relation=opts["relate"], bn=opts["bn"], progress=progress_bar(),
                dataset=opts["dataset"], max_memory=opts["max_memory"])
    return ds, setup


# ----------------------------------------------------------------------------- tsne

TSNE_OPTIONS = _options(
    bn_option(per_sample=True),
    click.option("--layer", default=None, help="Module whose units colour the map (default: the "
                                                "one feeding the head)."),
    click.option("--units", type=int, default=16, show_default=True, help="First N units of the layer."),
    click.option("--space", type=click.Choice(["input", "features"]), default="input",
                  show_default=True,
                  help="What the map is fitted to: the inputs (one map for every network), or "
                       "the layer's own output, flattened."),
    click.option("--feature-layer", default=None,
                  help="With --space features: the module whose output is mapped (default: "
                       "--layer)."),
    click.option("--perplexity", type=float, default=30.0, show_default=True),
    click.option("--n-iter", type=int, default=500, show_default=True,
                  help="t-SNE iterations after the early exaggeration phase."),
    click.option("--pca-dims", type=int, default=50, show_default=True,
                  help="PCA components fed to t-SNE (0: no PCA)."),
    click.option("--gradient", type=click.Choice(["auto", "bh", "fft"]), default="auto",
                  show_default=True,
                  help="t-SNE repulsive forces: Barnes-Hut, FFT interpolation, or 'auto' "
                       "(Barnes-Hut below 10 000 points)."),
    click.option("--region-level", type=float, default=0.2, show_default=True,
                  help="High set of a heatmap: at this share of the climb from its median to "
                       "its maximum (n_regions, second_region)."),
    click.option("--region-min-size", type=int, default=10, show_default=True,
                  help="Points a high region needs to count."),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                  help="Keep fitted maps here and reuse them."),
    click.option("--maxact", "maxact", type=click.Path(dir_okay=False), default=None,
                  help="A maxact result on the same data: place its top-k and maxima on the map."),
    MAX_MEMORY_OPTION,
)


def _tsne_summary(ds) -> list[str]:
    regions = ds["n_regions"].values
    return [f"t-SNE map of {ds.sizes['sample']} samples ({ds.attrs['features']} features); "
            f"heatmaps of {ds.sizes['unit']} units of {ds.attrs['layer']}",
            f"{int((regions >= 2).sum())} of {len(regions)} units respond in two or more separate "
            f"regions of the map (n_regions, at level {ds.attrs['region_level']})"]


@analysis("tsne", MODEL_OPTIONS + TSNE_OPTIONS, _tsne_summary)
def tsne_analysis(opts: dict):
    """A t-SNE map of the data coloured by each unit's activation."""
    from .embedding import tsne_heatmaps
    from .results import load

    if opts["units"] < 1:
        raise LandscapeError(f"units: must be >= 1, got {opts['units']}")
    ma = load(opts["maxact"], kind="maxact") if opts.get("maxact") else None
    setup = Setup("tsne", opts)
    if ma is not None and int(ma["topk_index"].max()) >= len(setup.x):
        raise LandscapeError(f"maxact: {opts['maxact']!r} was made on more samples than "
                             f"--samples {opts['samples']}; use the same data options")
    ds = tsne_heatmaps(setup.input_model, opts["layer"], opts["units"], setup.input_x, setup.labels,
                       space=opts["space"], feature_layer=opts["feature_layer"],
                       region_level=opts["region_level"],
                       region_min_size=opts["region_min_size"], perplexity=opts["perplexity"],
                       pca_dims=opts["pca_dims"], n_iter=opts["n_iter"], seed=opts["seed"],
                       gradient=opts["gradient"], cache_dir=opts["cache_dir"],
                       maxact=ma, bn=opts["bn"], dataset=opts["dataset"],
                       progress=progress_bar("it"), max_memory=opts["max_memory"])
    return ds, setup
