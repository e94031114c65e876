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


# A bar on a terminal redraws itself; where stderr is a file or a pipe (a batch job
# on a cluster) a line every INTERVAL seconds says how far the work has come.
INTERVAL = 30.0


class LineProgress:
    """Progress as a line on ``stream`` at most every ``interval`` seconds
    (``LANDSCAPE_PROGRESS_INTERVAL`` overrides the default of 30)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", stream=None,
                 interval: float | None = None):
        import os
        import sys
        import time

        if interval is None:
            interval = float(os.environ.get("LANDSCAPE_PROGRESS_INTERVAL", INTERVAL))
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.clock = time.monotonic
        self.start = self.last = self.clock()
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)" \
                if self.total else f"{self.n} {self.unit}"
            elapsed = int(now - self.start)
            print(f"{self.desc}: {done}, {elapsed // 60}:{elapsed % 60:02d} elapsed",
                  file=self.stream, flush=True)

    def close(self) -> None:
        pass


def stderr_bar(unit: str = "it") -> Progress:
    """A factory of bars on stderr: tqdm's on a terminal, else :class:`LineProgress`."""
    import sys

    def factory(total: int | None, desc: str):
        if not sys.stderr.isatty():
            return LineProgress(total, desc, unit)
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, unit=unit, leave=False,
                    dynamic_ncols=True)

    return factory
