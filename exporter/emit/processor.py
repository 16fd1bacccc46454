"""A bounded, retrying export queue: the one LogRecordProcessor provex uses.

The caller (the ring-buffer consumer) only appends to a bounded deque; a
worker thread of its own does all network I/O. Two instances run side by
side: alerts with `delay_s=0` (exported the moment they arrive, never behind
a batch timer) and raw events with a batch delay. When the collector is slow
or down, the batch in hand is retried with exponential back-off; the queue
stays bounded (when full, the oldest waiting record gives way) and whatever
cannot be kept is counted in
provex_export_dropped{signal,cause} and reported by a rate-limited warning.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from exporter.emit.metrics import EXPORT_DROPPED, EXPORT_QUEUE, EXPORT_RETRIES, EXPORTED

log = logging.getLogger("provex.emit")


class DropReporter:
    """Counts drops and warns about them at most once per interval."""

    def __init__(
        self,
        signal: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        count: bool = True,
    ) -> None:
        self.signal = signal
        self.count = count  # False: the caller counts in its own metric
        self.interval_s = interval_s
        self._clock = clock
        self._pending: collections.Counter[str] = collections.Counter()
        self._last_warning = -float("inf")
        self._lock = threading.Lock()

    def drop(self, cause: str, count: int = 1) -> None:
        if count <= 0:
            return
        if self.count:
            EXPORT_DROPPED.labels(self.signal, cause).inc(count)
        with self._lock:
            self._pending[cause] += count
            now = self._clock()
            if now - self._last_warning < self.interval_s:
                return
            self._last_warning = now
            summary = dict(self._pending)
            self._pending.clear()
        self._warn(summary)

    def flush(self) -> None:
        """Report drops not yet warned about (at shutdown)."""
        with self._lock:
            summary = dict(self._pending)
            self._pending.clear()
        if summary:
            self._warn(summary)

    def _warn(self, summary: dict[str, int]) -> None:
        log.warning(
            "export dropped log records" if self.count else "mapping skipped records",
            extra={"fields": {"signal": self.signal, "dropped": summary, "interval_s": self.interval_s}},
        )


class ExportQueueProcessor(LogRecordProcessor):
    def __init__(
        self,
        exporter: LogRecordExporter,
        signal: str,
        max_queue: int = 20000,
        max_batch: int = 512,
        delay_s: float = 1.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        warn_interval_s: float = 10.0,
    ) -> None:
        if max_queue < 1 or max_batch < 1 or max_attempts < 1:
            raise ValueError("max_queue, max_batch and max_attempts must be >= 1")
        self.exporter = exporter
        self.signal = signal
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.drops = DropReporter(signal, warn_interval_s)
        self._queue: collections.deque[ReadableLogRecord] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._closed = False
        self._flush_requested = False
        self._thread = threading.Thread(target=self._run, name=f"provex-export-{signal}", daemon=True)
        self._thread.start()

    # -- caller side: never blocks on I/O -------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        readable = ReadableLogRecord(
            log_record=log_record.log_record,
            resource=log_record.resource,  # type: ignore[arg-type]
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        with self._cond:
            if self._closed:
                self.drops.drop("shutdown")
                return
            # Full: the oldest waiting record makes room. After an outage the
            # newest alerts are the ones a responder needs first.
            full = len(self._queue) >= self.max_queue
            if full:
                self._queue.popleft()
            self._queue.append(readable)
            EXPORT_QUEUE.labels(self.signal).set(len(self._queue))
            # Alerts wake the worker at once; events only when a batch is full.
            if self.delay_s <= 0 or len(self._queue) >= self.max_batch:
                self._cond.notify()
        if full:
            self.drops.drop("queue_full")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            self._flush_requested = False
        return True

    def shutdown(self, timeout_millis: int = 5000) -> None:
        if self._closed:
            return
        self.force_flush(timeout_millis)
        with self._cond:
            self._closed = True
            self._stopping.set()
            left = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self.drops.drop("shutdown", left)
        self._thread.join(timeout_millis / 1000)
        self.exporter.shutdown()
        self.drops.flush()

    # -- worker side ----------------------------------------------------------

    def _take(self) -> list[ReadableLogRecord]:
        with self._cond:
            if self.delay_s <= 0:
                while not self._queue and not self._stopping.is_set():
                    self._cond.wait()
            else:
                deadline = time.monotonic() + self.delay_s
                while len(self._queue) < self.max_batch and not self._stopping.is_set():
                    if self._flush_requested and self._queue:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._in_flight = len(batch)
            EXPORT_QUEUE.labels(self.signal).set(len(self._queue))
            return batch

    def _run(self) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while not self._stopping.is_set():
                batch = self._take()
                if batch:
                    self._export(batch)
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
        finally:
            detach(token)

    def _export(self, batch: Sequence[ReadableLogRecord]) -> None:
        backoff = self.backoff_initial_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = self.exporter.export(batch)
            except Exception:  # an exporter bug must not kill the worker
                log.exception("exporter raised", extra={"fields": {"signal": self.signal}})
                result = LogRecordExportResult.FAILURE
            if result == LogRecordExportResult.SUCCESS:
                EXPORTED.labels(self.signal).inc(len(batch))
                return
            if attempt == self.max_attempts or self._stopping.wait(backoff):
                break
            EXPORT_RETRIES.labels(self.signal).inc()
            backoff = min(backoff * 2, self.backoff_max_s)
        self.drops.drop("export_failed", len(batch))
