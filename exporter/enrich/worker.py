"""Background threads of the enrich stage: its way to do I/O off the hot path."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
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


class LoopThread:
    """A daemon thread for a loop that runs until `stopping` is set. `stop` sets it, calls
    `interrupt` to cut short what the loop may block on (a request, a wake-up event), and
    waits for the thread at most `join_s`."""

    def __init__(
        self, run: Callable[[], None], name: str, interrupt: Callable[[], None], join_s: float
    ) -> None:
        self.stopping = threading.Event()
        self._run = run
        self._name = name
        self._interrupt = interrupt
        self._join_s = join_s
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout=self._join_s)
            self._thread = None
