"""A bounded, retrying export queue: the one LogRecordProcessor provex uses.

The caller (the ring-buffer consumer) only appends to a bounded deque; a
worker thread of its own does all network I/O. Two instances run side by
side: alerts with `delay_s=0` (exported the moment they arrive, never behind
a batch timer) and raw events with a batch delay. When the collector is slow
or down, the batch in hand is retried with exponential back-off.

Two policies when the queue is full: a live source cannot wait, so the oldest
waiting record gives way (counted); a source that can wait (a replayed file)
sets `wait_when_full` and the caller waits for room instead (back-pressure).

Every record ends up counted once: provex_exported (the collector accepted
it) or provex_export_dropped{signal,cause} (queue_full, shutdown, rejected by
the collector's partial_success, or the last failure's cause after the
retries), with a rate-limited warning that carries the collector's message.
While a batch is being sent or retried, /metrics shows it
(provex_export_in_flight, provex_export_retrying).
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

from exporter.emit import outcome
from exporter.emit.metrics import (
    EXPORT_ATTEMPT_FAILURES,
    EXPORT_DROPPED,
    EXPORT_IN_FLIGHT,
    EXPORT_QUEUE,
    EXPORT_RETRIES,
    EXPORT_RETRYING,
    EXPORTED,
)
from exporter.logs import Throttle

log = logging.getLogger("provex.emit")


class DropReporter:
    """Counts drops and warns about them at most once per interval."""

    def __init__(
        self,
        signal: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        count: bool = True,
        message: str = "export dropped log records",
    ) -> None:
        self.signal = signal
        self.count = count  # False: the caller counts in its own metric
        self.interval_s = interval_s
        self.message = message
        self._pending: collections.Counter[str] = collections.Counter()
        self._details: dict[str, str] = {}  # cause -> the last message that came with it
        self._throttle = Throttle(interval_s, clock)  # one warning per interval, all causes in it
        self._lock = threading.Lock()

    def drop(self, cause: str, count: int = 1, detail: str = "") -> None:
        if count <= 0:
            return
        if self.count:
            EXPORT_DROPPED.labels(self.signal, cause).inc(count)
        with self._lock:
            self._pending[cause] += count
            if detail:
                self._details[cause] = detail[:500]
            if self._throttle.admit() is None:
                return
            summary, details = self._take()
        self._warn(summary, details)

    def flush(self) -> None:
        """Report drops not yet warned about (at shutdown)."""
        with self._lock:
            summary, details = self._take()
        if summary:
            self._warn(summary, details)

    def _take(self) -> tuple[dict[str, int], dict[str, str]]:
        summary, details = dict(self._pending), dict(self._details)
        self._pending.clear()
        self._details.clear()
        return summary, details

    def _warn(self, summary: dict[str, int], details: dict[str, str]) -> None:
        fields: dict[str, object] = {"signal": self.signal, "dropped": summary, "interval_s": self.interval_s}
        if details:
            fields["details"] = details
        log.warning(self.message, extra={"fields": fields})


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
        # A source that can wait (a file) waits for room instead of dropping.
        self.wait_when_full = False
        self.drops = DropReporter(signal, warn_interval_s)
        self._notes = DropReporter(
            signal, warn_interval_s, count=False, message="collector answered with a warning"
        )
        outcome.tap(exporter)  # see every attempt and the collector's partial_success
        self._queue: collections.deque[ReadableLogRecord] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._done_batches = 0  # progress, for a flush that waits while things move
        self._stopping = threading.Event()
        self._closed = False
        self._flush_requested = False
        self._gauge_queue = EXPORT_QUEUE.labels(signal)
        self._gauge_in_flight = EXPORT_IN_FLIGHT.labels(signal)
        self._gauge_retrying = EXPORT_RETRYING.labels(signal)
        self._thread = threading.Thread(target=self._run, name=f"provex-export-{signal}", daemon=True)
        self._thread.start()

    # -- caller side: never blocks on I/O (unless told the source can wait) -----------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        readable = ReadableLogRecord(
            log_record=log_record.log_record,
            resource=log_record.resource,  # type: ignore[arg-type]
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        full = False
        with self._cond:
            if self.wait_when_full:
                while len(self._queue) >= self.max_queue and not self._closed:
                    self._cond.notify_all()  # a full queue is a full batch: let the worker take it
                    self._cond.wait(0.5)
            if self._closed:
                self.drops.drop("shutdown")
                return
            # Full: the oldest waiting record makes room. After an outage the
            # newest alerts are the ones a responder needs first.
            full = len(self._queue) >= self.max_queue
            if full:
                self._queue.popleft()
            self._queue.append(readable)
            self._gauge_queue.set(len(self._queue))
            # Alerts wake the worker at once; events only when a batch is full.
            if self.delay_s <= 0 or len(self._queue) >= self.max_batch:
                self._cond.notify_all()
        if full:
            self.drops.drop("queue_full")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until everything queued was exported or dropped. The timeout bounds a
        wait without progress when the source can wait, else the whole wait."""
        timeout_s = timeout_millis / 1000
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            progress = self._done_batches
            while self._queue or self._in_flight:
                if self.wait_when_full and self._done_batches != progress:
                    progress = self._done_batches
                    deadline = time.monotonic() + timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            self._flush_requested = False
        return True

    def stop(self, timeout_millis: int = 5000) -> None:
        """Flush (bounded), stop the worker and count what is left; the exporter stays open."""
        if self._closed:
            return
        self.force_flush(timeout_millis)
        with self._cond:
            self._closed = True
            self._stopping.set()
            left = len(self._queue)
            self._queue.clear()
            self._gauge_queue.set(0)
            self._cond.notify_all()
        self.drops.drop("shutdown", left)
        self._thread.join(timeout_millis / 1000)
        self.drops.flush()
        self._notes.flush()

    def shutdown(self, timeout_millis: int = 5000) -> None:
        self.stop(timeout_millis)
        self.exporter.shutdown()

    # -- worker side ----------------------------------------------------------

    def _take(self) -> list[ReadableLogRecord]:
        with self._cond:
            if self.delay_s <= 0:
                while not self._queue and not self._stopping.is_set():
                    self._cond.wait()
            else:
                deadline = time.monotonic() + self.delay_s
                while len(self._queue) < self.max_batch and not self._stopping.is_set():
                    if (self._flush_requested and self._queue) or len(self._queue) >= self.max_queue:
                        break  # asked to flush, or a full queue holds a caller back
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._in_flight = len(batch)
            self._gauge_queue.set(len(self._queue))
            self._gauge_in_flight.set(len(batch))
            self._cond.notify_all()  # room in the queue for a caller that waits
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
                    self._done_batches += 1
                    self._gauge_in_flight.set(0)
                    self._cond.notify_all()
        finally:
            detach(token)

    def _export(self, batch: Sequence[ReadableLogRecord]) -> None:
        size = len(batch)

        def attempt_failed(cause: str) -> None:
            EXPORT_ATTEMPT_FAILURES.labels(self.signal, cause).inc()
            self._gauge_retrying.set(size)

        backoff = self.backoff_initial_s
        last = outcome.Outcome()
        try:
            for attempt in range(1, self.max_attempts + 1):
                last = outcome.begin(on_failure=attempt_failed)
                try:
                    result = self.exporter.export(batch)
                except Exception as exc:  # an exporter bug must not kill the worker
                    log.exception("exporter raised", extra={"fields": {"signal": self.signal}})
                    outcome.attempt_failed("exporter_error", f"{type(exc).__name__}: {exc}")
                    result = LogRecordExportResult.FAILURE
                if result == LogRecordExportResult.SUCCESS:
                    self._accepted(size, last)
                    return
                if not last.failed_attempts:  # the exporter said FAILURE without telling why
                    outcome.attempt_failed("export_failed", "")
                if attempt == self.max_attempts or self._stopping.wait(backoff):
                    break
                EXPORT_RETRIES.labels(self.signal).inc()
                backoff = min(backoff * 2, self.backoff_max_s)
            self.drops.drop(last.cause or "export_failed", size, detail=last.detail)
        finally:
            self._gauge_retrying.set(0)

    def _accepted(self, size: int, answer: outcome.Outcome) -> None:
        rejected = min(max(answer.rejected, 0), size)
        EXPORTED.labels(self.signal).inc(size - rejected)
        if rejected:
            self.drops.drop("rejected", rejected, detail=answer.message or "no message from the collector")
        elif answer.message:
            # partial_success with nothing rejected: the collector's warning, passed on.
            self._notes.drop("collector_warning", 1, detail=answer.message)
