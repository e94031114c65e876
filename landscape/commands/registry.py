"""The analyses, by name, as an explicit list: each one's options (click
parameters), the function that runs it from a dict of those options, the
summary lines printed after it, its headline variables and its figure kind.

``landscape slice ...`` parses its arguments with these options and calls the
function; a sweep task calls the same function with an options dict built from
the same options (:meth:`Analysis.parse`), so a sweep accepts exactly the
options of the analysis it sweeps.  A new analysis is one file in this package
that defines ``ANALYSIS``, and its line in :data:`ANALYSES`.
"""

from __future__ import annotations

from .analysis import Analysis


def _analyses() -> dict[str, Analysis]:
    from . import hessian, maxact, sae, tsne
    from . import slice as slice_

    return {m.ANALYSIS.name: m.ANALYSIS for m in (slice_, hessian, maxact, tsne, sae)}


ANALYSES: dict[str, Analysis] = _analyses()
