"""The ``report`` and ``blind-score`` commands: a static site of saved results,
a blind test page, and its score (see :mod:`landscape.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import LandscapeError


@click.command("report")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for the site (must not exist or be empty, unless --overwrite).")
@click.option("--blind", is_flag=True,
              help="Build a blind test of two maxact results (one trained, one random).")
@click.option("--cards", "n_cards", type=click.IntRange(min=2), default=40, show_default=True,
              help="With --blind: number of cards, half from each result.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="With --blind: seed of the draw and the order of the cards.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report in --out.")
def report_command(inputs: tuple[str, ...], out_dir: str, blind: bool, n_cards: int, seed: int,
                   overwrite: bool) -> None:
    """A static site of saved results (RESULT.nc files or folders of them):
    an index table and one page per result; open OUT/index.html in a browser.
    With --blind A.nc B.nc: a blind test page OUT/blind.html and its key
    OUT/key.json (keep the key from the observers)."""
    from ..report import build_blind, build_report

    if blind:
        if len(inputs) != 2:
            raise LandscapeError(f"blind: give exactly two results (A.nc B.nc), got {len(inputs)}")
        path = build_blind(inputs[0], inputs[1], out_dir, n=n_cards, seed=seed, overwrite=overwrite)
    else:
        path = build_report(inputs, out_dir, overwrite=overwrite)
    click.echo(str(path))


@click.command("blind-score")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--observer", type=click.Choice(["purity"]), default=None,
              help="Score the scripted label-purity observer instead of a person: give KEY only.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="The result file (kind blind; default blind_OBSERVER.nc).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=2000,
              show_default=True, help="Resamples of the AUROC's bootstrap interval.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def blind_score_command(files: tuple[str, ...], observer: str | None, out: str | None,
                        n_boot: int, overwrite: bool) -> None:
    """Score ANSWERS.json (exported by a blind page) against BLIND/key.json:
    accuracy, AUROC with a bootstrap 95 % interval, binomial p against chance.
    Writes a result of kind blind that `report` and `compare` read."""
    from ..report import purity_observer, read_answers, read_key, score_answers, score_lines
    from ..results import check_writable, save

    if observer:
        if len(files) != 1:
            raise LandscapeError("blind-score --observer: give the key only (BLIND/key.json)")
        key = read_key(files[0])
        answers = purity_observer(key)
    else:
        if len(files) != 2:
            raise LandscapeError(f"blind-score: give ANSWERS.json and KEY.json, got {len(files)} files")
        answers, key = read_answers(files[0]), read_key(files[1])
    ds = score_answers(answers, key, n_boot=n_boot)
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in ds.attrs["observer"])
    path = Path(out) if out else Path(f"blind_{name}.nc")
    check_writable(path, overwrite)
    for line in score_lines(ds):
        click.echo(line)
    save(ds, path, overwrite=overwrite)
    click.echo(str(path))
