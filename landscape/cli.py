"""The ``landscape`` command line: parse, call the API, save, say where results went.

Bad input ends in one line on stderr (``landscape: error: ...``) and a non-zero
exit status, with no traceback and no output file.  Set ``LANDSCAPE_DEBUG=1``
to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import os
import sys

import click

from .memory import thread_defaults

# Before anything loads torch: its OpenMP runtime reads the wait policy once, at load.
THREAD_DEFAULTS = thread_defaults()

from .commands.analysis import command  # noqa: E402
from .commands.registry import ANALYSES  # noqa: E402
from .commands.report import blind_score_command, report_command  # noqa: E402
from .commands.sweep import compare_command, sweep_command  # noqa: E402
from .commands.train import train_command  # noqa: E402
from .errors import LandscapeError  # noqa: E402

EXIT_ERROR = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    message = " ".join(str(message).split())  # always one line
    click.echo(f"landscape: error: {message}", err=True)
    sys.exit(code)


class LandscapeGroup(click.Group):
    """A click group whose errors are one line on stderr, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name or "landscape",
                              complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(exc.format_message() + hint, EXIT_USAGE)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code or EXIT_ERROR)
        except click.exceptions.Abort:
            _fail("aborted", 130)
        except KeyboardInterrupt:
            _fail("interrupted; no result was written", 130)
        except LandscapeError as exc:
            _fail(str(exc))
        except Exception as exc:  # a bug: still one line unless asked for more
            if os.environ.get("LANDSCAPE_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set LANDSCAPE_DEBUG=1 for the traceback)")
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
        if standalone_mode:
            sys.exit(0)
        return rv


@click.group(cls=LandscapeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="landscape", prog_name="landscape")
def cli() -> None:
    """Geometry of neural-network landscapes: slices of loss and input-response
    surfaces, their quasi-convexity, and Hessian spectra, for random and trained
    networks.  Every command writes an xarray Dataset as netCDF; `landscape plot`
    draws it."""


def main() -> None:
    cli.main()


# ----------------------------------------------------------------------------- info

@cli.command()
def info() -> None:
    """Versions, device, models, inits, datasets and directions."""
    import numpy
    import torch
    import torchvision
    import xarray

    from . import __version__
    from .data import DATASETS, USER_DATASETS
    from .directions import INPUT_DIRECTIONS, PARAMETER_DIRECTIONS
    from .init import INITS
    from .losses import LOSSES
    from .memory import describe_threads
    from .models import MODELS

    click.echo(f"landscape {__version__}")
    click.echo(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision "
               f"{torchvision.__version__}, xarray {xarray.__version__}, numpy {numpy.__version__}")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        click.echo(f"device: cuda ({names}); --device auto uses it")
    else:
        click.echo("device: cpu; no CUDA device")
    click.echo(f"cpu threads: {describe_threads()}")
    click.echo("models:")
    for name, (_, shape, task, options) in MODELS.items():
        extra = f", options: {', '.join(options)}" if options else ""
        click.echo(f"  {name:16s} input {'x'.join(map(str, shape))}, {task}{extra}")
    click.echo("  your own: PATH.py:FUNCTION or package.module:FUNCTION (--model-args JSON)")
    click.echo(f"inits: {', '.join(INITS)}")
    click.echo(f"datasets: {', '.join(DATASETS)}, text:PATH (bytes of a file or folder); your own: "
               f"{', '.join(kind + (':DIR' if kind == 'folder' else ':FILE') for kind in USER_DATASETS)}")
    from .shapes import PIXEL_PURITY, PURITY_SAMPLE

    click.echo(f"shapes: pixel 9-NN class purity {PIXEL_PURITY:.3f} (chance 0.100), measured "
               f"on its first {PURITY_SAMPLE} training images; the tests recompute it")
    click.echo(f"losses: {', '.join(LOSSES)} (--loss)")
    click.echo(f"directions: loss space {', '.join(PARAMETER_DIRECTIONS)}; "
               f"input space {', '.join(INPUT_DIRECTIONS)}")


# ----------------------------------------------------------------------------- plot

@cli.command("plot")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the PNG files (default: FILE's name with _figures, beside it).")
def plot_command(file: str, out_dir: str | None) -> None:
    """Draw every figure of a saved result (PNG files named after FILE)."""
    from .plot import plot_file

    paths = plot_file(file, out_dir)
    for p in paths:
        click.echo(str(p))


for _analysis in ANALYSES.values():  # slice, hessian, maxact, tsne, sae
    cli.add_command(command(_analysis))
for _command in (train_command, sweep_command, compare_command, report_command,
                 blind_score_command):
    cli.add_command(_command)
