"""One background thread fed by a queue: the enrich stage's way to do I/O off the hot path."""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class QueueWorker(Generic[Item]):
    """`submit` queues an item for `handle`, on a daemon thread once started; before
    `start` (tests, replays) it is handled at once, in the caller's thread."""

    thread_name = "provex-worker"

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def handle(self, item: Item) -> None:
        raise NotImplementedError

    def submit(self, item: Item) -> None:
        if self._thread is None:
            self.handle(item)
        else:
            self._queue.put(item)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self.handle(item)
