"""The one exception type that means "the user asked for something we cannot do".

Analysis code raises :class:`LandscapeError` with a single-line message that
names the argument, the value received and what is allowed; the command line
prints that line and exits non-zero.  Any other exception is a bug.
"""

from __future__ import annotations


class LandscapeError(ValueError):
    """Bad input: an unknown name, a malformed value, a missing or corrupt file."""


def check_choice(argument: str, value, allowed) -> None:
    """Raise a LandscapeError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise LandscapeError(
            f"{argument}: unknown value {value!r}; choose one of {', '.join(map(str, allowed))}"
        )
