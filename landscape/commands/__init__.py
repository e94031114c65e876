"""The command line's analyses and commands, one file each.

=======================  ====================================================
:mod:`.registry`         the analyses, as an explicit list (:data:`ANALYSES`)
:mod:`.options`          the shared click options (model, data, loss, BatchNorm)
:mod:`.setup`            model, checkpoint, data, device and output (:class:`Setup`)
:mod:`.slice` ...        one analysis each: ``slice``, ``hessian``, ``maxact``,
                         ``tsne``, ``sae``; its options, its run, its summary
:mod:`.train`            ``landscape train``
:mod:`.sweep`            ``landscape sweep`` and ``landscape compare``
:mod:`.report`           ``landscape report`` and ``landscape blind-score``
=======================  ====================================================

Only this package and :mod:`landscape.cli` import click.  A new analysis is one
file here defining ``ANALYSIS`` (:class:`.registry.Analysis`) and its name in
:func:`.registry._analyses`.
"""
