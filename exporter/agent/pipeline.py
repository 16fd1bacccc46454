"""The event path after the source: enrich -> correlate -> emit.

Stages are optional so that `provex record` (no correlation) and tests can
build only what they need. Everything here runs on the consumer's thread and
never waits on I/O: enrichment answers from its cache, sinks queue.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import Counter, Histogram

from exporter.metrics import REGISTRY
from exporter.model import Alert, Event

CHUNK = 4096  # events correlated before their raw records ship (a ring-buffer drain is smaller)

EVENTS_BY_TYPE = Counter(
    "provex_events", "Events that reached the pipeline, by type", ["type"], registry=REGISTRY
)
ALERTS_BY_RULE = Counter("provex_alerts", "Alerts raised, by rule", ["rule"], registry=REGISTRY)
ALERT_DELAY = Histogram(
    "provex_alert_delay_seconds",
    "From the decisive syscall (kernel time) to the alert handed to the output, in the agent",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


class Sink(Protocol):
    """Where events and alerts leave the agent (exporter.emit builds them)."""

    # What /readyz calls the output ("collector", "output") when it reports it degraded.
    dependency: str
    # True for a sink that wants each event before the alerts it caused (one stream for a
    # reader); others get a drain's alerts first.
    in_order: bool

    def emit_event(self, event: Event) -> None: ...
    def emit_alert(self, alert: Alert) -> None: ...
    # A drain of the ring buffer ended: make what was written visible, if that
    # costs no waiting (a file buffer, yes; an export to a collector, never).
    def batch_done(self) -> None: ...
    # The source can wait (a replayed file): a full queue holds the caller back
    # instead of dropping the oldest record.
    def wait_when_full(self) -> None: ...
    # None while the output takes what it is given; else why not (a collector that
    # fails, a full disk), for /readyz.
    def degraded(self) -> str | None: ...
    def flush(self) -> None: ...  # end of stream: everything out, may wait (bounded)
    def close(self) -> None: ...


class Correlator(Protocol):
    def process(self, event: Event) -> list[Alert]: ...
    def flush(self, now_ns: int) -> list[Alert]: ...
    def drain(self) -> list[Alert]: ...


class Enricher(Protocol):
    def push(self, event: Event, now_ns: int) -> None: ...
    def pop_ready(self, now_ns: int) -> list[Event]: ...
    def drain(self) -> list[Event]: ...


class Pipeline:
    def __init__(
        self,
        sink: Sink,
        enricher: Enricher | None = None,
        correlator: Correlator | None = None,
        emit_events: bool = True,
        observers: Iterable[Callable[[Event], None]] = (),
        idle: threading.Event | None = None,
    ) -> None:
        self.sink = sink
        self.enricher = enricher
        self.correlator = correlator
        self.emit_events = emit_events
        # Called with every enriched and correlated event (e.g. to widen the kernel's path filter).
        self.observers = list(observers)
        # Cleared while a drain is processed: work that can wait (raw events) waits for it.
        self.idle = idle
        self._counts: dict = {}  # event type -> its labelled counter

    def feed(self, events: Iterable[Event], now_ns: int) -> None:
        """Take a batch from the source; pass on whatever enrichment has ready."""
        with self._busy():
            if self.enricher is None:
                self._forward(events)
            else:
                for event in events:
                    self.enricher.push(event, now_ns)
                self._forward(self.enricher.pop_ready(now_ns))
        self.sink.batch_done()

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        if self.idle is None:
            yield
            return
        self.idle.clear()
        try:
            yield
        finally:
            self.idle.set()

    def tick(self, now_ns: int) -> None:
        """Called when the source is idle: release events whose wait expired,
        and de-duplication follow-ups whose window closed."""
        with self._busy():
            if self.enricher is not None:
                self._forward(self.enricher.pop_ready(now_ns))
            if self.correlator is not None:
                self._alerts(self.correlator.flush(now_ns))
        # What was released is visible now, not at the next drain; and what waits for a
        # retry (a full disk) is retried while the node is quiet too.
        self.sink.batch_done()

    def finish(self) -> None:
        """End of stream: release everything still parked, close every window, flush."""
        if self.enricher is not None:
            self._forward(self.enricher.drain())
        if self.correlator is not None:
            self._alerts(self.correlator.drain())
        self.sink.flush()

    def _forward(self, events: Iterable[Event]) -> None:
        # A replay feeds a whole file: take it in chunks so memory stays bounded.
        source = iter(events)
        while batch := list(itertools.islice(source, CHUNK)):
            self._forward_chunk(batch)

    def _forward_chunk(self, batch: list[Event]) -> None:
        # Correlate the chunk before shipping its raw events: an alert must not wait
        # behind the mapping of the raw events that came before it in the same drain.
        # A sink that writes one stream for a reader (JSON lines, text) takes each event
        # before the alerts it caused instead: encoding a line costs about a microsecond.
        in_order = self.emit_events and self.sink.in_order
        counts = self._counts
        for event in batch:
            counter = counts.get(event.type)
            if counter is None:
                counter = counts[event.type] = EVENTS_BY_TYPE.labels(event.type.value)
            counter.inc()
            alerts = self.correlator.process(event) if self.correlator is not None else ()
            if in_order:
                self.sink.emit_event(event)
            self._alerts(alerts)
            for observe in self.observers:  # after the graph: they see resolved paths
                observe(event)
        if self.emit_events and not in_order:
            for event in batch:
                self.sink.emit_event(event)

    def _alerts(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            ALERTS_BY_RULE.labels(alert.rule_id).inc()
            if not alert.followup_of:  # a follow-up leaves when its window closes, by design
                ALERT_DELAY.observe(max(0, time.time_ns() - alert.decisive_ts_ns) / 1e9)
            self.sink.emit_alert(alert)
