"""The OpenTelemetry sink: mapped documents as OTLP log records.

One LoggerProvider with the agent's Resource. Two loggers (instrumentation
scopes `provex.alerts` and `provex.events`) feed two export queues: alerts
leave at once on their own thread, raw events in batches. Each record's body
is the mapped document as a structured map (AnyValue kvlist), and its
attributes carry what collectors route on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource

from exporter.emit.bounded import BoundedQueue
from exporter.emit.jsonlines import printable
from exporter.emit.metrics import MAP_SKIPPED, OUTPUT_ESCAPED
from exporter.emit.processor import DropReporter, ExportQueueProcessor
from exporter.mapping import Document, Mapper
from exporter.model import Alert, Event

log = logging.getLogger("provex.emit")
# Rate-limited warnings for records the mapping failed on (counted per record).
_map_errors = DropReporter("mapping", interval_s=10.0, count=False)
_encoder = msgspec.json.Encoder()

ALERT_SCOPE = "provex.alerts"
EVENT_SCOPE = "provex.events"

# Sigma level -> OTel severity (the log data model's ranges: INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24).
SEVERITY = {
    "informational": (SeverityNumber.INFO, "informational"),
    "low": (SeverityNumber.INFO4, "low"),
    "medium": (SeverityNumber.WARN, "medium"),
    "high": (SeverityNumber.ERROR, "high"),
    "critical": (SeverityNumber.FATAL, "critical"),
}


def map_or_count(mapper: Mapper, record: Event | Alert) -> Document | None:
    """Map one record; a record the mapping cannot handle is counted and skipped."""
    try:
        doc = mapper.map(record)
    except Exception:  # a bad record must not stop the consumer
        MAP_SKIPPED.labels("error").inc()
        _map_errors.drop("error")
        log.debug("mapping failed", exc_info=True, extra={"fields": {"record_id": record.id}})
        return None
    if doc is None:
        MAP_SKIPPED.labels("no_kind").inc()
    return doc


def routing_attributes(record: Event | Alert, doc: Document, schema: str) -> dict[str, Any]:
    """What collectors route and index on, independent of the body's schema."""
    event = record.event if isinstance(record, Alert) else record
    attrs: dict[str, Any] = {"event.name": f"provex.{doc.kind}", "provex.schema": schema}
    container = event.container if event is not None else None
    if container is not None:
        attrs["container.id"] = container.id
        if container.pod is not None:
            for key, value in (
                ("k8s.namespace.name", container.pod.namespace),
                ("k8s.pod.name", container.pod.name),
                ("k8s.pod.uid", container.pod.uid),
            ):
                if value:
                    attrs[key] = value
    if isinstance(record, Alert):
        attrs["provex.rule.id"] = record.rule_id
    return attrs


class _ByScope(LogRecordProcessor):
    """Sends each record to the processor of its instrumentation scope."""

    def __init__(self, processors: Mapping[str, LogRecordProcessor]) -> None:
        self._processors = dict(processors)
        self._unique = list({id(p): p for p in processors.values()}.values())

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        scope = log_record.instrumentation_scope
        self._processors[scope.name if scope else EVENT_SCOPE].on_emit(log_record)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all([p.force_flush(timeout_millis) for p in self._unique])

    def set_wait_when_full(self, wait: bool) -> None:
        for processor in self._unique:
            if isinstance(processor, ExportQueueProcessor):
                processor.wait_when_full = wait

    def shutdown(self) -> None:
        # Stop every queue before closing any exporter: the alert and event queues
        # may share one (the OTLP-JSON file), which must stay open until both are done.
        exporters = []
        for processor in self._unique:
            if isinstance(processor, ExportQueueProcessor):
                processor.stop()
                if all(processor.exporter is not e for e in exporters):
                    exporters.append(processor.exporter)
            else:
                processor.shutdown()
        for exporter in exporters:
            exporter.shutdown()


class OtlpSink:
    """Sink (exporter.agent.pipeline.Sink) that ships ECS/OCSF documents as OTLP logs.

    `alert_processor` and `event_processor` own the transport (see
    exporter.emit.factory.build_sink); this class maps and emits.
    """

    def __init__(
        self,
        mapper: Mapper,
        resource: Resource,
        alert_processor: LogRecordProcessor,
        event_processor: LogRecordProcessor,
        raw_events: bool = True,
        raw_queue_size: int = 20000,
        drop_warning_interval_s: float = 10.0,
    ) -> None:
        self.mapper = mapper
        self.schema = mapper.schema
        self.raw_events = raw_events
        self.provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self._processors = _ByScope({ALERT_SCOPE: alert_processor, EVENT_SCOPE: event_processor})
        self.provider.add_log_record_processor(self._processors)
        # The Elasticsearch exporter picks its mapping mode per scope: an ECS
        # body is indexed verbatim as the document ("bodymap").
        scope_attrs = {"elastic.mapping.mode": "bodymap"} if self.schema == "ecs" else None
        version = mapper.agent["version"]
        self._alerts = self.provider.get_logger(ALERT_SCOPE, version, attributes=scope_attrs)
        self._events = self.provider.get_logger(EVENT_SCOPE, version, attributes=scope_attrs)
        # Raw events are mapped and encoded on a thread of their own (tens of microseconds
        # each): on the consumer's thread they held every alert behind a busy batch.
        # Bounded like the export queues (queue_full when full, or the source waits).
        self._deferred: BoundedQueue[Event] | None = (
            BoundedQueue(
                raw_queue_size,
                self._emit_events,
                DropReporter("events", drop_warning_interval_s).drop,
                name="provex-raw-events",
            )
            if raw_events
            else None
        )

    def emit_event(self, event: Event) -> None:
        if self._deferred is not None:
            self._deferred.put(event)

    def _emit_events(self, events: Sequence[Event]) -> None:
        for event in events:
            self._emit(self._events, event, event.ts_ns, (SeverityNumber.INFO, "info"))

    def emit_alert(self, alert: Alert) -> None:
        severity = SEVERITY.get(alert.level, (SeverityNumber.UNSPECIFIED, alert.level))
        self._emit(self._alerts, alert, alert.decisive_ts_ns, severity)

    def _emit(
        self, logger: Any, record: Event | Alert, ts_ns: int, severity: tuple[SeverityNumber, str]
    ) -> None:
        doc = map_or_count(self.mapper, record)
        if doc is None:
            return
        body = doc.body
        try:
            _encoder.encode(body)  # cheap next to the mapping; the exporters' encoders refuse
        except UnicodeEncodeError:  # text that is not UTF-8 (a whole batch would be lost)
            OUTPUT_ESCAPED.labels("alerts" if isinstance(record, Alert) else "events").inc()
            body = printable(body)
        logger.emit(
            LogRecord(
                timestamp=ts_ns or None,
                observed_timestamp=time.time_ns(),
                severity_number=severity[0],
                severity_text=severity[1],
                body=body,
                attributes=routing_attributes(record, doc, self.schema),
                event_name=f"provex.{doc.kind}",
            )
        )

    def wait_when_full(self) -> None:
        """The source can wait (a replayed file): a full export queue holds the caller
        back instead of dropping the oldest record."""
        self._processors.set_wait_when_full(True)
        if self._deferred is not None:
            self._deferred.wait_when_full = True

    def batch_done(self) -> None:
        pass  # the export queues ship on their own schedule; never wait on the collector here

    def flush(self, timeout_s: float = 10.0) -> None:
        if self._deferred is not None:
            self._deferred.wait_idle(timeout_s)
        self.provider.force_flush(int(timeout_s * 1000))

    def close(self, timeout_s: float = 5.0) -> None:
        # Bounded: a dead collector must not hold the agent's shutdown.
        if self._deferred is not None:
            self._deferred.wait_idle(timeout_s)
            self._deferred.close(timeout_s)
        self.provider.force_flush(int(timeout_s * 1000))
        self.provider.shutdown()
