"""The bounded queue between a producer that must not block and one worker thread.

The export queues (exporter.emit.processor: records mapped, encoded and sent to the
output off the consumer's thread) hand work to a thread of their own this way, with
one policy:

- full: a live source cannot wait, so the oldest waiting item gives way (counted
  as `queue_full`; with `keep`, the oldest one not kept, e.g. an event before an
  alert); a source that can wait (a replayed file) sets
  `wait_when_full` and the producer waits for room instead (back-pressure);
- the worker takes up to `max_batch` items at once, after at most `linger_s`
  (at once when the batch is full, the queue is full or someone flushes);
- `wait_idle` waits until everything put has been handed on; `close` ends the
  worker: what is still queued is dropped as `shutdown`, and an item put after it
  is dropped as `shutdown` too.

Every item ends either handed to the worker or passed to `drop(cause, count)` (or,
with `drop_items`, to `drop_items(cause, items)`, for a caller that counts by kind).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("provex.emit")

T = TypeVar("T")


class _Settable(Protocol):
    def set(self, value: float) -> None: ...


class BoundedQueue(Generic[T]):
    """Items from producers to `handle`, on a worker thread of its own (see above)."""

    def __init__(
        self,
        max_items: int,
        handle: Callable[[Sequence[T]], None],
        drop: Callable[[str, int], object],
        name: str,
        max_batch: int | None = None,
        linger_s: float = 0.0,
        depth_gauge: _Settable | None = None,
        in_flight_gauge: _Settable | None = None,
        on_start: Callable[[], None] | None = None,
        keep: Callable[[T], bool] | None = None,
        drop_items: Callable[[str, list[T]], object] | None = None,
    ) -> None:
        if max_items < 1 or (max_batch is not None and max_batch < 1):
            raise ValueError("max_items and max_batch must be >= 1")
        self.max_items = max_items
        self.max_batch = max_batch or max_items  # no limit: all that waits
        self.linger_s = linger_s
        # A source that can wait (a file) waits for room instead of dropping.
        self.wait_when_full = False
        self._handle = handle
        self._drop = drop  # how a lost item is counted: drop(cause, count)
        self._drop_items, self._keep = drop_items, keep
        self._depth_gauge, self._in_flight_gauge = depth_gauge, in_flight_gauge
        self._on_start = on_start  # run first on the worker thread
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._handled_batches = 0  # progress, for a wait that goes on while things move
        self._flushing = 0  # callers in wait_idle: the worker does not linger for them
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """Something is queued or in the worker's hands (a glance, without the lock)."""
        return bool(self._items) or self._in_flight > 0

    # -- producer side -----------------------------------------------------------------

    def put(self, item: T) -> None:
        """Queue one item; never blocks unless `wait_when_full`."""
        dropped: T | None = None
        cause = "queue_full"
        with self._cond:
            if self.wait_when_full:
                while len(self._items) >= self.max_items and not self._closed:
                    self._cond.notify_all()  # a full queue is a full batch: let the worker take it
                    self._cond.wait(0.5)
            if self._closed:
                dropped, cause = item, "shutdown"
            else:
                # Full: the oldest waiting item makes room. After an outage the
                # newest records are the ones a responder needs first.
                if len(self._items) >= self.max_items:
                    dropped = self._give_way()
                self._items.append(item)
                self._set_depth()
                # Wake the worker only when it has something to do now, not per item.
                if self._worth_taking():
                    self._cond.notify_all()
        if dropped is not None:
            self._lose(cause, [dropped])

    def wait_idle(self, timeout_s: float) -> bool:
        """Until everything put has been handed on (False: timed out). The timeout bounds
        the whole wait or, when the source can wait, a wait without progress."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                progress = self._handled_batches
                while self._items or self._in_flight:
                    if self.wait_when_full and self._handled_batches != progress:
                        progress = self._handled_batches
                        deadline = time.monotonic() + timeout_s
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.05))
            finally:
                self._flushing -= 1
        return True

    def discard(self) -> list[T]:
        """Take everything still queued away from the worker (the caller accounts for it)."""
        with self._cond:
            return self._remove_all()

    def close(self, timeout_s: float) -> None:
        """No more items. What is queued is dropped as `shutdown`; then the worker ends
        (joined for at most `timeout_s`)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            left = self._remove_all()
            self._cond.notify_all()  # the worker, and producers waiting for room
        if left:
            self._lose("shutdown", left)
        self._thread.join(timeout_s)

    def _give_way(self) -> T:
        """The item that makes room in a full queue (called with the lock held)."""
        if self._keep is not None:
            for index, waiting in enumerate(self._items):
                if not self._keep(waiting):
                    del self._items[index]
                    return waiting
        return self._items.popleft()

    def _lose(self, cause: str, items: list[T]) -> None:
        if self._drop_items is not None:
            self._drop_items(cause, items)
        else:
            self._drop(cause, len(items))

    # -- worker side ---------------------------------------------------------------------

    def _remove_all(self) -> list[T]:
        left = list(self._items)
        self._items.clear()
        self._set_depth()
        self._cond.notify_all()  # room for a producer that waits
        return left

    def _set_depth(self) -> None:
        if self._depth_gauge is not None:
            self._depth_gauge.set(len(self._items))

    def _set_in_flight(self, count: int) -> None:
        self._in_flight = count
        if self._in_flight_gauge is not None:
            self._in_flight_gauge.set(count)

    def _worth_taking(self) -> bool:
        """A batch to take now, without waiting for the linger time to run out."""
        waiting = len(self._items)
        if waiting >= self.max_batch or waiting >= self.max_items:
            return True  # a full batch, or a full queue that holds a producer back
        return waiting > 0 and (self.linger_s <= 0 or self._flushing > 0)

    def _next_batch(self) -> list[T] | None:
        """The next batch (empty when the linger time ran out on an empty queue); None once
        closed and nothing is left."""
        with self._cond:
            deadline = time.monotonic() + self.linger_s
            while not self._closed and not self._worth_taking():
                if self.linger_s <= 0:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._closed and not self._items:
                return None
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self._set_in_flight(len(batch))
            self._set_depth()
            self._cond.notify_all()  # room in the queue for a producer that waits
            return batch

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while (batch := self._next_batch()) is not None:
            try:
                if batch:
                    self._handle(batch)
            except Exception:  # a bug in one batch must not stop the worker
                log.exception("queue worker failed", extra={"fields": {"thread": self._thread.name}})
                self._lose("worker_error", batch)
            with self._cond:
                self._set_in_flight(0)
                self._handled_batches += 1
                self._cond.notify_all()
