"""Sinks for deterministic tests (the Sink exporter.agent.pipeline declares): `TestSink`,
the protocol's quiet defaults for a test's own sink; `MemorySink`, which maps synchronously
and keeps everything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.emit.otlp import SEVERITY, map_or_count, routing_attributes
from exporter.mapping import Document, Mapper
from exporter.model import Alert, Event


@dataclass
class Emitted:
    signal: str  # "alerts" | "events"
    record: Event | Alert
    document: Document
    attributes: dict[str, Any]
    severity_text: str


class TestSink:
    """Every Sink method, doing nothing: a test's sink overrides what it watches."""

    __test__ = False  # not a pytest test class
    dependency = "memory"
    in_order = False

    def emit_event(self, event: Event) -> None:
        pass

    def emit_alert(self, alert: Alert) -> None:
        pass

    def batch_done(self) -> None:
        pass

    def wait_when_full(self) -> None:
        pass  # it is never full

    def degraded(self) -> str | None:
        return None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemorySink(TestSink):
    def __init__(self, mapper: Mapper, raw_events: bool = True) -> None:
        self.mapper = mapper
        self.raw_events = raw_events
        self.emitted: list[Emitted] = []
        self.flushes = 0
        self.batches = 0
        self.closed = False

    def emit_event(self, event: Event) -> None:
        if self.raw_events:
            self._keep("events", event, "info")

    def emit_alert(self, alert: Alert) -> None:
        self._keep("alerts", alert, SEVERITY.get(alert.level, (None, alert.level))[1])

    def _keep(self, signal: str, record: Event | Alert, severity: str) -> None:
        doc = map_or_count(self.mapper, record)
        if doc is None:
            return
        attrs = routing_attributes(record, doc, self.mapper.schema)
        self.emitted.append(Emitted(signal, record, doc, attrs, severity))

    def documents(self, signal: str | None = None) -> list[dict[str, Any]]:
        return [e.document.body for e in self.emitted if signal in (None, e.signal)]

    def batch_done(self) -> None:
        self.batches += 1

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True
