"""The ``maxact``, ``tsne`` and ``sae`` commands: max-activation reliability and t-SNE
activation heatmaps of single units (see :mod:`landscape.maxact` and
:mod:`landscape.embedding`).

``--samples`` (default 256, shared with every analysis) is the dataset these
analyses search and map; the metrics grow more reliable with more data (e.g.
``--samples 2000``), at the cost of the kNN graph and the t-SNE fit.
"""

from __future__ import annotations

import click

from . import analyses_sae  # noqa: F401  (registers sae)
from .analyses import ANALYSES, run_command, with_options


@click.command("maxact")
@with_options(ANALYSES["maxact"].options)
def maxact_command(**opts) -> None:
    """Max-activating examples vs gradient-ascent maxima: how reliable is the
    dataset's top example as a portrait of each unit?"""
    run_command("maxact", opts)


@click.command("tsne")
@with_options(ANALYSES["tsne"].options)
def tsne_command(**opts) -> None:
    """t-SNE map of the whole dataset with each unit's activation as a heatmap."""
    run_command("tsne", opts)


@click.command("sae")
@with_options(ANALYSES["sae"].options)
def sae_command(**opts) -> None:
    """Sparse autoencoders on activations of trained and random variants of a
    model: reconstruction, loss recovered, and interpretability proxies."""
    run_command("sae", opts)
