"""One analysis of the command line (:class:`Analysis`): its options, the function
that runs it from a dict of them, its summary, headline variables and figure;
and the click command that runs it (:func:`command`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import click

from ..errors import LandscapeError


@dataclass(frozen=True)
class Analysis:
    """One analysis: its name, options, function and summary; ``headlines``:
    the variables (fnmatch patterns) that sweeps and compare tables show;
    ``figure``: the kind of figure ``landscape plot`` draws of its result."""

    name: str
    run: Callable[[dict], tuple]  # opts -> (xarray.Dataset, Setup)
    options: tuple[click.Parameter, ...]
    summary: Callable[[object], list[str]] = field(default=lambda _ds: [])
    headlines: tuple[str, ...] = ()
    figure: str | None = None
    help: str = ""  # the command's --help text
    kinds: tuple[str, ...] = ()  # the result kinds it writes (default: its name)

    def __post_init__(self):
        from ..results import register_kind

        for kind in self.kinds or (self.name,):
            register_kind(kind)

    def parse(self, args: Sequence[str], prog: str | None = None) -> dict:
        """The options dict the command ``landscape NAME ARGS`` would run with; a
        usage error is a LandscapeError starting with ``prog`` (default: the name)."""
        command = click.Command(self.name, params=list(self.options))
        try:
            ctx = command.make_context(self.name, list(args))
        except click.UsageError as exc:
            raise LandscapeError(f"{prog or self.name}: {exc.format_message()}") from None
        return dict(ctx.params)

    def save(self, ds, setup):
        """Write the result with its provenance, headlines and figure kind."""
        return setup.finish(ds, headlines=self.headlines, figure=self.figure or self.name)


def run_command(entry: Analysis, opts: dict) -> None:
    """Run ``entry``, print its summary and save; the last stdout line names the
    file written."""
    from ..memory import use_threads

    use_threads(opts.get("threads"))
    ds, setup = entry.run(opts)
    for line in entry.summary(ds):
        click.echo(line)
    click.echo(str(entry.save(ds, setup)))


def command(entry: Analysis) -> click.Command:
    """The click command ``landscape NAME`` of ``entry``."""

    def callback(**opts) -> None:
        run_command(entry, opts)

    return click.Command(entry.name, callback=callback, params=list(entry.options),
                         help=entry.help)
