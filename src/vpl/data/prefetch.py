"""Build the next batches in a background thread while the current one trains."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items` in order, up to `depth` of them produced ahead by a background thread.

    Batch building is numpy gathers, which release the GIL for their copies, so on a machine
    with a spare core the next batch is built while torch runs the current step. Everything
    `items` draws (e.g. from a shared random generator) it draws in its own order, so the
    sequence is the same as iterating `items` directly; it has finished drawing by the time
    this iterator is exhausted. An error in `items` is raised here, at its place in the
    sequence. Closing this iterator early (a `break`, an error in the consumer) stops the thread.
    """
    if depth < 1:
        yield from items
        return
    slots: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def offer(x: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not offer(x):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            offer(_Failed(e))
            return
        offer(_END)

    worker = threading.Thread(target=produce, name="vpl-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            x = slots.get()
            if x is _END:
                break
            if isinstance(x, _Failed):
                raise x.error
            yield x  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
