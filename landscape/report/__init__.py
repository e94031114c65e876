"""Saved results in the browser: a static site (:func:`build_report`) and a
blind test of trained against random units (:func:`build_blind`,
:func:`score_answers`, :func:`purity_observer`).  Pages open from disk and
need no network."""

from .blind import build_blind, purity_observer, read_answers, read_key, score_answers, score_lines
from .site import build_report

__all__ = ["build_blind", "build_report", "purity_observer", "read_answers", "read_key",
           "score_answers", "score_lines"]
