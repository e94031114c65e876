"""Where the ranges of a grid's points run: in this process, one after the other
or on several CPU streams at once, or sharded over Dask workers
(:mod:`landscape.sweep.shard`).

A loss surface of a convolutional network on the CPU is hundreds of forward
passes, one per grid point (the ``loop`` engine of :mod:`landscape.slicing`).
Torch spreads each operation of one pass over its intra-op threads, and the small
feature maps of a network's later layers leave those threads waiting on each
other: on 2 cores a Xavier ResNet-18 forward pass of 256 digits takes 112 ms with
two intra-op threads and 177 ms with one.  Two passes side by side, each on one
thread, take 88 ms a pass (bench/RESULTS.md, "main job").  So on the CPU the
points are shared out over ``streams`` Python threads, each with its own copy of
the grid (its own copy of the model, written in place point by point) and
``threads // streams`` intra-op threads; torch releases the GIL inside its
operations.  A point is evaluated by the same code wherever it runs, and its
value does not depend on which stream took it: it is that of a pass on
``threads // streams`` intra-op threads (one by default, as with ``--threads 1``
and on the single-threaded workers of a sharded run; an operation whose sums
split over threads, such as a training-mode BatchNorm's batch statistics, rounds
differently on two).

Only grids whose evaluation touches no shared state may run here: the ``loop``
engine's private model copies qualify; ``vmap``'s functional calls, which swap
the parameters of the one shared module, do not.
"""

from __future__ import annotations

import copy
import queue
import threading

import torch

from .errors import LandscapeError
from .memory import require
from .progress import start as start_progress

# Ranges per stream, so that the streams finish together (a range is a few points).
RANGES_PER_STREAM = 8


def stream_count(streams: int | None, how: str, device: torch.device, scheduler,
                 per_point: int, room: int, n_points: int) -> int:
    """The streams of a loss grid: ``streams`` as given, or by default on a CPU for
    the ``loop`` engine one per intra-op thread (at most one per two points and as
    many as hold a grid point each in ``room`` bytes), else 1.  Given streams are
    checked: a ``loop`` engine in this process (not sharded by ``scheduler``) and
    ``per_point`` bytes each within ``room``."""
    if streams is None:
        if device.type != "cpu" or how != "loop" or scheduler is not None:
            return 1
        return int(max(1, min(torch.get_num_threads(), n_points // 2, room // max(per_point, 1))))
    if streams < 1:
        raise LandscapeError(f"streams: must be >= 1, got {streams}")
    if streams > 1 and (how != "loop" or scheduler is not None):
        raise LandscapeError(f"streams: only the loop engine in this process runs on several "
                             f"streams, not {how if how != 'loop' else 'a sharded grid'}")
    require(streams * per_point, room, f"loss slice on {streams} streams: a grid point each",
            "use fewer streams or raise --max-memory")
    return int(streams)


def split_ranges(ranges: list[tuple[int, int]], streams: int) -> list[tuple[int, int]]:
    """``ranges`` cut into pieces of at most ``n / (RANGES_PER_STREAM * streams)``
    points, in order (one stream: unchanged)."""
    if streams <= 1 or not ranges:
        return ranges
    n = ranges[-1][1] - ranges[0][0]
    size = max(1, -(-n // (RANGES_PER_STREAM * streams)))
    return [(s, min(s + size, stop)) for start, stop in ranges for s in range(start, stop, size)]


def evaluate_on_streams(grid, ranges: list[tuple[int, int]], streams: int, bar) -> list:
    """``grid.evaluate(start, stop)`` of every range, in order, on ``streams``
    threads each holding a copy of ``grid``; ``bar`` (a progress bar) advances by
    the points of each finished range.  Torch's intra-op threads are divided among
    the streams for the call and restored after it; the first error of any stream
    stops the others and is raised here."""
    threads = torch.get_num_threads()
    work: queue.SimpleQueue = queue.SimpleQueue()
    for item in enumerate(ranges):
        work.put(item)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    results: list = [None] * len(ranges)
    errors: list[BaseException] = []
    stop = threading.Event()

    def stream() -> None:
        own = copy.copy(grid)  # its own lazily built state (model copy, batched calls)
        try:
            while not stop.is_set():
                try:
                    i, (start, end) = work.get_nowait()
                except queue.Empty:
                    return
                results[i] = own.evaluate(start, end)
                finished.put(end - start)
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            errors.append(error)
            stop.set()
        finally:
            finished.put(0)

    # A new thread takes torch's thread count when it first runs an operation.
    torch.set_num_threads(max(1, threads // streams))
    running = [threading.Thread(target=stream, daemon=True, name=f"landscape-stream-{i}")
               for i in range(streams)]
    try:
        for t in running:
            t.start()
        while any(t.is_alive() for t in running) or not finished.empty():
            try:
                bar.update(finished.get(timeout=0.2))
            except queue.Empty:
                pass
    finally:
        stop.set()
        for t in running:
            t.join()
        torch.set_num_threads(threads)
    if errors:
        raise errors[0]
    return results


def evaluate_ranges(grid, ranges: list[tuple[int, int]], progress, desc: str,
                    scheduler=None, streams: int = 1) -> list:
    """``grid.evaluate(start, stop)`` for every range, in order: here (on ``streams``
    threads, see :mod:`landscape.streams`), or sharded over the Dask workers of
    ``scheduler`` (see :func:`landscape.sweep.shard.evaluate_sharded`)."""
    bar = start_progress(progress, ranges[-1][1] if ranges else 0, desc)
    try:
        if scheduler is not None:
            from .sweep.shard import evaluate_sharded

            return evaluate_sharded(grid, ranges, scheduler, bar)
        if streams > 1:
            return evaluate_on_streams(grid, ranges, streams, bar)
        out = []
        for start, stop in ranges:
            out.append(grid.evaluate(start, stop))
            bar.update(stop - start)
        return out
    finally:
        bar.close()
