"""What every command needs before its analysis runs: the model (registered, a
user's factory, or a checkpoint's recipe), the data, the device, the output
file, checked in that order so that bad input fails before any work
(:class:`Setup`); and the provenance added when the result is saved."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from ..errors import LandscapeError
from ..validate import check_labels


def progress_bar(unit: str = "pt"):
    """A factory ``(total, description) -> bar on stderr``: tqdm's on a terminal, else
    a line every ~30 s (:class:`landscape.progress.LineProgress`)."""
    from ..progress import stderr_bar

    return stderr_bar(unit)


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


def _same_shape(a, b) -> bool:
    from ..models import parse_shape

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


def output_path(out, overwrite: bool, command: str, model: str, init: str,
                suffix: str = ".nc", stamp: bool = True) -> Path:
    """Where the result goes; checked before any work so bad paths fail fast.
    Unnamed: ``COMMAND_MODEL_INIT_TIME.nc``, a new file; without ``stamp``
    ``MODEL_INIT.pt`` (a checkpoint), replaced only with ``overwrite``."""
    if out is None and not stamp:
        out = f"{safe_name(model)}_{safe_name(init)}{suffix}"
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{command}_{safe_name(model)}_{safe_name(init)}_{stamp}"
        path, k = Path(f"{base}{suffix}"), 1
        while path.exists():
            k += 1
            path = Path(f"{base}-{k}{suffix}")
        return path
    return check_output(Path(out), suffix, overwrite)


def check_output(path: Path, suffix: str, overwrite: bool) -> Path:
    """``path`` if it names a ``suffix`` file that may be written: its folder
    exists, and it does not or ``overwrite`` is given."""
    from ..results import check_writable

    if path.suffix != suffix:
        raise LandscapeError(f"out: expected a {suffix} file name, got {str(path)!r}")
    return check_writable(path, overwrite)


def model_from_options(opts: dict):
    """The model the model options describe (registered, or a user's factory)."""
    from ..models import build_model

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
    """The model, data and bookkeeping one command needs.

    ``load_data=False`` stops after the model (``train`` loads its two splits
    itself); ``suffix`` is the output file's (``.nc`` for results), ``stamp``
    whether an unnamed one gets a time stamp (see :func:`output_path`).
    """

    def __init__(self, command: str, opts: dict, load_data: bool = True, suffix: str = ".nc",
                 stamp: bool = True):
        import torch

        from ..data import load_dataset
        from ..models import INIT_KEYS, adopt_meta, input_view, load_checkpoint, read_checkpoint
        from ..validate import probe_model

        self.opts = opts
        self.device = pick_device(opts["device"])
        meta = read_checkpoint(opts["checkpoint"])[1] if opts["checkpoint"] else {}
        self.overridden = resolve_recipe(opts, meta)
        self.out = output_path(opts["out"], opts["overwrite"], command, opts["model_name"],
                               opts["init"], suffix, stamp)
        if opts.get("samples") is not None and opts["samples"] < 1:
            raise LandscapeError(f"samples: must be >= 1, got {opts['samples']}")
        model = model_from_options(opts)
        opts["dataset"] = default_dataset(model, opts["dataset"])
        self.checkpoint_meta = {}
        self.companions: list = []  # (path, write) of files saved beside the result
        if opts["checkpoint"]:
            self.checkpoint_meta = load_checkpoint(model, opts["checkpoint"])
            # The recipe as finally chosen: the meta's, with the command line's overrides.
            adopt_meta(model, {key: opts[key] for key in INIT_KEYS})
        self.model = model.to(self.device)
        self.note_layer()
        if not load_data:
            return
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

    def note_layer(self) -> None:
        """Say on stderr which layer a model without ``default_layer`` gets when
        the command's ``--layer`` is left out (:func:`landscape.models.inferred_layer`)."""
        if "layer" not in self.opts or self.opts["layer"] is not None \
                or self.opts.get("space") == "loss":
            return
        if getattr(self.model, "default_layer", None) is not None:
            return
        from ..models import inferred_layer

        try:
            layer, head = inferred_layer(self.model)
        except LandscapeError:
            return  # the analysis reports it, if it needs a layer
        import click

        click.echo(f"landscape: layer: the model names no default layer; using {layer!r}, the "
                   f"module before its head {head!r} (choose another with --layer)", err=True)

    @property
    def trained(self) -> bool:
        """A checkpoint's weights, or a pretrained model's own."""
        from ..models.minilm import is_pretrained

        return bool(self.opts["checkpoint"]) or is_pretrained(self.model)

    def finish(self, ds, headlines=(), figure: str | None = None, companions=()) -> Path:
        """Add the command line's own options, the headline variables and the
        figure kind to the result's attrs and save it.  ``companions``: ``(path,
        write)`` pairs of files written beside the result, before it; all are
        removed again if saving the result fails, so a run leaves both or neither."""
        import torch

        from ..results import config_of, save, to_json

        config = config_of(ds)
        config.update({k: v for k, v in self.opts.items() if k not in config and k != "overwrite"})
        config["state"] = "trained" if self.trained else "random"
        config["overridden"] = self.overridden
        config["threads"] = ds.attrs["threads"] = torch.get_num_threads()
        ds.attrs["config"] = to_json(config)
        ds.attrs["overridden"] = to_json(self.overridden)
        ds.attrs["state"] = config["state"]
        ds.attrs["checkpoint"] = str(self.opts["checkpoint"] or "")
        if headlines:
            ds.attrs["headlines"] = to_json(list(headlines))
        if figure:
            ds.attrs["figure"] = figure
        written = []
        try:
            for path, write in [*self.companions, *companions]:
                write(path)
                written.append(Path(path))
            return save(ds, self.out, overwrite=self.opts["overwrite"])
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise


def check_anchors(opts: dict, used: bool) -> None:
    """The anchors are the first ``--anchors`` of the ``--samples`` data points:
    refuse more anchors than samples rather than silently use fewer."""
    if opts["anchors"] < 1:
        raise LandscapeError(f"anchors: must be >= 1, got {opts['anchors']}")
    if used and opts["samples"] is not None and opts["anchors"] > opts["samples"]:
        raise LandscapeError(f"anchors: {opts['anchors']} anchors are taken from the data, but "
                             f"--samples is {opts['samples']}; lower --anchors or raise --samples")


def json_or_text(value: str, key: str) -> str:
    """``value[key]`` when ``value`` is a JSON object (a merged slice's per-space
    attribute), else ``value``."""
    import json

    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return value
    return str(parsed.get(key, "")) if isinstance(parsed, dict) else value
