"""A bounded, retrying export queue: the one LogRecordProcessor provex uses.

The caller (the ring-buffer consumer) only appends to a bounded queue; a
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
from exporter.emit.bounded import BoundedQueue
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
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.drops = DropReporter(signal, warn_interval_s)
        self._notes = DropReporter(
            signal, warn_interval_s, count=False, message="collector answered with a warning"
        )
        outcome.tap(exporter)  # see every attempt and the collector's partial_success
        self._stopping = threading.Event()  # cuts a retry's back-off short at stop
        self._gauge_retrying = EXPORT_RETRYING.labels(signal)
        # Alerts (delay_s=0) leave the moment they arrive; events wait for a full batch
        # or delay_s, whichever comes first.
        self._queue: BoundedQueue[ReadableLogRecord] = BoundedQueue(
            max_queue,
            self._export,
            self.drops.drop,
            name=f"provex-export-{signal}",
            max_batch=max_batch,
            linger_s=delay_s,
            depth_gauge=EXPORT_QUEUE.labels(signal),
            in_flight_gauge=EXPORT_IN_FLIGHT.labels(signal),
        )

    @property
    def wait_when_full(self) -> bool:
        return self._queue.wait_when_full

    @wait_when_full.setter
    def wait_when_full(self, wait: bool) -> None:
        self._queue.wait_when_full = wait

    # -- caller side: never blocks on I/O (unless told the source can wait) -----------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        readable = ReadableLogRecord(
            log_record=log_record.log_record,
            resource=log_record.resource,  # type: ignore[arg-type]
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        self._queue.put(readable)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until everything queued was exported or dropped. The timeout bounds a
        wait without progress when the source can wait, else the whole wait."""
        return self._queue.wait_idle(timeout_millis / 1000)

    def stop(self, timeout_millis: int = 5000) -> None:
        """Flush (bounded), stop the worker and count what is left; the exporter stays open."""
        if self._queue.closed:
            return
        self.force_flush(timeout_millis)
        self._stopping.set()
        self._queue.close(timeout_millis / 1000)
        self.drops.flush()
        self._notes.flush()

    def shutdown(self, timeout_millis: int = 5000) -> None:
        self.stop(timeout_millis)
        self.exporter.shutdown()

    # -- worker side ----------------------------------------------------------

    def _export(self, batch: Sequence[ReadableLogRecord]) -> None:
        # The exporter's own HTTP/gRPC calls must not be traced into the export again.
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            self._export_batch(batch)
        finally:
            detach(token)

    def _export_batch(self, batch: Sequence[ReadableLogRecord]) -> None:
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
