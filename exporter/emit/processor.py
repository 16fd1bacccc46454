"""A bounded, retrying export queue: how records leave the agent for an OTLP output.

The caller (the ring-buffer consumer) only appends to a bounded queue; a worker thread of
its own maps and encodes a batch (`encoder`) and does all the I/O. Two run side by side:
alerts with `delay_s=0` (exported the moment they arrive, never behind a batch timer) and
raw events with a batch delay. The raw-event queue `defer_to`s the alert path: it encodes a
chunk of records at a time, each once the alert queue (and, in the live agent, the consumer's
drain) has nothing to do, or after DEFER_MAX_S: in one interpreter a busy raw-event thread
would otherwise take the interpreter lock from the alert path half of the time.

A failed export is retried with exponential back-off, at most `max_attempts` times. Alerts
(`hold_while_down`) are held instead while the failure is one that passes (the collector
down or overloaded, a full disk: `TRANSIENT`), retried until the output takes them: the
alert queue is their reserve, which raw events never share, and only a newer alert pushes
an older one out of it (counted as queue_full).

Two policies when a queue is full: a live source cannot wait, so the oldest waiting record
gives way (counted); a source that can wait (a replayed file) sets `wait_when_full` and the
caller waits for room instead (back-pressure).

Every record ends up counted once: provex_exported (the output accepted it),
provex_map_skipped (no document for it) or provex_export_dropped{signal,cause}
(queue_full, shutdown, rejected by the collector's partial_success, or the last failure's
cause), with a rate-limited warning that carries the collector's message. While a batch is
being sent or retried, /metrics shows it (provex_export_in_flight, provex_export_retrying).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from exporter.backoff import Backoff
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
from exporter.emit.sdkcompat import instrumentation_suppressed
from exporter.logs import Throttle

log = logging.getLogger("provex.emit")

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

# Failures that pass: OTLP's retryable gRPC codes and HTTP statuses (the OTLP specification,
# "Failures"), a connection that fails, and a file system that is full or failing.
TRANSIENT = frozenset(
    {
        "cancelled",
        "deadline_exceeded",
        "resource_exhausted",
        "aborted",
        "out_of_range",
        "unavailable",
        "data_loss",
        "http_429",
        "http_502",
        "http_503",
        "http_504",
        "connection",
        "no_space",
        "quota",
        "io_error",
    }
)


class Exporter(Protocol):
    """Where a queue's requests go: a collector (exporter.emit.sdkcompat) or OTLP-JSON lines
    (exporter.emit.otlpjson). Reports each failed attempt and the collector's answer to
    exporter.emit.outcome; True when the output took the request."""

    encoding: str  # "protobuf" | "json": the encoder its requests are written by
    name: str  # what /readyz calls it ("collector http://...:4317 (grpc)", "output FILE")

    def export(self, request: bytes, records: int, signal: str) -> bool: ...
    def shutdown(self) -> None: ...


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


class Encoder(Protocol[T_contra]):
    """Records -> the bytes of each (what cannot be mapped or encoded is counted and left
    out), and a batch of those -> one request."""

    def records(self, batch: Sequence[T_contra]) -> list[bytes]: ...
    def request(self, records: Sequence[bytes]) -> bytes: ...


CHUNK = 8  # records encoded at a time by a queue that defers (~0.5 ms of CPU)
DEFER_MAX_S = 0.05  # how long such a chunk waits at most: raw events still move under load


class ExportQueue(Generic[T]):
    def __init__(
        self,
        exporter: Exporter,
        signal: str,
        encoder: Encoder[T],
        max_queue: int = 20000,
        max_batch: int = 512,
        delay_s: float = 1.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        warn_interval_s: float = 10.0,
        hold_while_down: bool = False,
        defer_to: Sequence[Callable[[float], object]] = (),
        on_start: Callable[[], None] | None = None,
    ) -> None:
        if max_queue < 1 or max_batch < 1 or max_attempts < 1:
            raise ValueError("max_queue, max_batch and max_attempts must be >= 1")
        self.exporter = exporter
        self.signal = signal
        self.max_attempts = max_attempts
        self.hold_while_down = hold_while_down
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.drops = DropReporter(signal, warn_interval_s)
        self._notes = DropReporter(
            signal, warn_interval_s, count=False, message="collector answered with a warning"
        )
        self._encoder = encoder
        self._defer_to = list(defer_to)
        self._on_start = on_start
        # (cause, detail, since) while exports fail, until one succeeds: for /readyz.
        self.failing: tuple[str, str, float] | None = None
        self._stopping = threading.Event()  # cuts a retry's back-off short at stop
        self._gauge_retrying = EXPORT_RETRYING.labels(signal)
        self._exported = EXPORTED.labels(signal)
        # Alerts (delay_s=0) leave the moment they arrive; events wait for a full batch
        # or delay_s, whichever comes first.
        self._queue: BoundedQueue[T] = BoundedQueue(
            max_queue,
            self._export,
            self.drops.drop,
            name=f"provex-export-{signal}",
            max_batch=max_batch,
            linger_s=delay_s,
            depth_gauge=EXPORT_QUEUE.labels(signal),
            in_flight_gauge=EXPORT_IN_FLIGHT.labels(signal),
            on_start=on_start,
        )

    @property
    def wait_when_full(self) -> bool:
        return self._queue.wait_when_full

    @wait_when_full.setter
    def wait_when_full(self, wait: bool) -> None:
        self._queue.wait_when_full = wait

    # -- caller side: never blocks on I/O (unless told the source can wait) -----------

    def put(self, item: T) -> None:
        self._queue.put(item)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued was exported or dropped. The timeout bounds a
        wait without progress when the source can wait, else the whole wait."""
        return self._queue.wait_idle(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush (bounded), stop the worker and count what is left; the exporter stays open."""
        if self._queue.closed:
            return
        self.flush(timeout_s)
        self._stopping.set()
        self._queue.close(timeout_s)
        self.drops.flush()
        self._notes.flush()

    def degraded(self) -> str | None:
        """Why the output is not taking this queue's records (None: it is, or nothing was
        tried since it last did)."""
        if self.failing is None:
            return None
        cause, detail, since = self.failing
        said = f": {detail[:200]}" if detail else ""
        return f"{self.signal} failing for {time.monotonic() - since:.0f} s ({cause}{said})"

    # -- worker side ----------------------------------------------------------

    def idle(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until nothing is queued or being exported."""
        return not self._queue.busy or self._queue.wait_idle(timeout_s)

    def _export(self, batch: Sequence[T]) -> None:
        if not self._defer_to:
            records = self._encoder.records(batch)
        else:  # a chunk at a time, each once the work it defers to is done (alerts go first)
            records = []
            for start in range(0, len(batch), CHUNK):
                for wait in self._defer_to:
                    wait(DEFER_MAX_S)
                records += self._encoder.records(batch[start : start + CHUNK])
        if records:
            with instrumentation_suppressed():
                self._send(self._encoder.request(records), len(records))

    def _send(self, request: bytes, size: int) -> None:
        def attempt_failed(cause: str, detail: str) -> None:
            EXPORT_ATTEMPT_FAILURES.labels(self.signal, cause).inc()
            self._gauge_retrying.set(size)
            if self.failing is None or self.failing[0] != cause:
                self.failing = (cause, detail, self.failing[2] if self.failing else time.monotonic())

        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s, self._stopping)
        last = outcome.Outcome()
        try:
            attempt = 0
            while True:
                attempt += 1
                last = outcome.begin(on_failure=attempt_failed)
                try:
                    accepted = self.exporter.export(request, size, self.signal)
                except Exception as exc:  # an exporter bug must not kill the worker
                    log.exception("exporter raised", extra={"fields": {"signal": self.signal}})
                    outcome.attempt_failed("exporter_error", f"{type(exc).__name__}: {exc}")
                    accepted = False
                if accepted:
                    self._accepted(size, last)
                    return
                if not last.failed_attempts:  # the exporter said it failed without telling why
                    outcome.attempt_failed("export_failed", "")
                held = self.hold_while_down and last.cause in TRANSIENT
                if (attempt >= self.max_attempts and not held) or not backoff.wait():
                    break
                EXPORT_RETRIES.labels(self.signal).inc()
            self.drops.drop(last.cause or "export_failed", size, detail=last.detail)
        finally:
            self._gauge_retrying.set(0)

    def _accepted(self, size: int, answer: outcome.Outcome) -> None:
        self.failing = None
        rejected = min(max(answer.rejected, 0), size)
        self._exported.inc(size - rejected)
        if rejected:
            self.drops.drop("rejected", rejected, detail=answer.message or "no message from the collector")
        elif answer.message:
            # partial_success with nothing rejected: the collector's warning, passed on.
            self._notes.drop("collector_warning", 1, detail=answer.message)
