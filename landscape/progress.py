"""Progress reporting without a dependency: analyses take ``progress``, a
factory ``(total, description) -> bar`` whose bars have ``update(n)`` and
``close()`` (tqdm's do; ``total`` may be ``None`` when unknown in advance).
The command line passes tqdm bars on stderr; the API default shows nothing."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int | None, str], object]


class NoProgress:
    """A bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def start(factory: Progress | None, total: int | None, desc: str):
    """A bar from ``factory``, or one that shows nothing when there is none."""
    return NoProgress() if factory is None else factory(total, desc)
