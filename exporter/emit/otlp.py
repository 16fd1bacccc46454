"""The OpenTelemetry sink: mapped documents as OTLP log records.

Two export queues (exporter.emit.processor), one per instrumentation scope: `provex.alerts`
leave at once on a thread of their own and are held while the output is down; raw events
(`provex.events`) go in batches. Each queue's worker maps its records (the compiled
mapping), encodes them straight to the output's wire format (OTLP/protobuf for a collector,
OTLP-JSON for a file) and exports them, so the consumer's thread only appends to a queue.
Each record's body is the mapped document as a structured map (AnyValue kvlist), and its
attributes carry what collectors route on.

Raw events are mapped and encoded in this same interpreter (no second process): the
compiled mapping and the direct encoders make that ~10x cheaper than the engine and the
SDK's encoder were, and the raw-event worker runs at a lower CPU priority than the rest of
the agent (`RAW_EVENTS_NICE`), as the child process that did this before did.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.config.schema import OtlpConfig
from exporter.emit.jsonlines import printable
from exporter.emit.logrecord import LogRecord, Scope
from exporter.emit.metrics import MAP_SKIPPED, OUTPUT_ESCAPED
from exporter.emit.otlpjson import JsonEncoder
from exporter.emit.otlpproto import ProtoEncoder
from exporter.emit.processor import DropReporter, Exporter, ExportQueue
from exporter.mapping import Document, Mapper
from exporter.model import Alert, Event

log = logging.getLogger("provex.emit")
# Rate-limited warnings for records the mapping failed on (counted per record).
_map_errors = DropReporter("mapping", interval_s=10.0, count=False)

ALERT_SCOPE = "provex.alerts"
EVENT_SCOPE = "provex.events"
RAW_EVENTS_NICE = 10  # added to the raw-event worker thread's nice value

# Sigma level -> OTel severity number and text (the log data model's ranges: INFO 9-12,
# WARN 13-16, ERROR 17-20, FATAL 21-24).
SEVERITY = {
    "informational": (9, "informational"),  # INFO
    "low": (12, "low"),  # INFO4
    "medium": (13, "medium"),  # WARN
    "high": (17, "high"),  # ERROR
    "critical": (21, "critical"),  # FATAL
}
EVENT_SEVERITY = (9, "info")


def map_or_count(mapper: Mapper, record: Event | Alert) -> Document | None:
    """Map one record; a record the mapping cannot handle is counted and skipped."""
    try:
        doc = mapper.map(record)
    except Exception:  # a bad record must not stop the export
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


def log_record(record: Event | Alert, doc: Document, schema: str, observed_ns: int) -> LogRecord:
    """The OTLP LogRecord of one mapped record."""
    if isinstance(record, Alert):
        ts_ns = record.decisive_ts_ns
        severity = SEVERITY.get(record.level, (0, record.level))
    else:
        ts_ns, severity = record.ts_ns, EVENT_SEVERITY
    attributes = routing_attributes(record, doc, schema)
    body = doc.fields if doc.fields is not None else doc.body  # the encoders take either
    return LogRecord(ts_ns, observed_ns, severity[0], severity[1], body, attributes, f"provex.{doc.kind}")


def make_encoder(
    encoding: str, resource: Any, scope: Scope, native: bool = False
) -> ProtoEncoder | JsonEncoder:
    """The encoder for an exporter's `encoding`; `resource` is the SDK's Resource; `native`:
    bodies through the C encoder (exporter.emit.native, output.encoder)."""
    encoder = ProtoEncoder if encoding == "protobuf" else JsonEncoder
    made = encoder(resource.attributes, resource.schema_url or "", scope)
    return made.native() if native else made


class RecordEncoder:
    """One signal's records mapped and encoded (exporter.emit.processor.Encoder)."""

    def __init__(self, mapper: Mapper, encoder: ProtoEncoder | JsonEncoder, signal: str) -> None:
        self.mapper = mapper
        self.encoder = encoder
        self.signal = signal

    def records(self, batch: Sequence[Event | Alert]) -> list[bytes]:
        records = []
        for record in batch:
            doc = map_or_count(self.mapper, record)
            if doc is not None and (encoded := self.record(record, doc)) is not None:
                records.append(encoded)
        return records

    def request(self, records: Sequence[bytes]) -> bytes:
        return self.encoder.request(records)

    def record(self, record: Event | Alert, doc: Document) -> bytes | None:
        log = log_record(record, doc, self.mapper.schema, time.time_ns())
        try:
            return self.encoder.record(log)
        except UnicodeEncodeError:  # text that is not UTF-8 (a file name): written escaped
            OUTPUT_ESCAPED.labels(self.signal).inc()
            return self.encoder.record(
                log._replace(body=printable(doc.body), attributes=printable(log.attributes))
            )
        except (ValueError, TypeError):  # a value OTLP cannot carry (an int past int64)
            MAP_SKIPPED.labels("error").inc()
            _map_errors.drop("error")
            log.debug("encoding failed", exc_info=True, extra={"fields": {"record_id": record.id}})
            return None


def _lower_priority() -> None:
    """Raw events are the work that can wait: on a busy node the threads that raise and send
    the alerts get the CPU first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RAW_EVENTS_NICE)
    except OSError as exc:  # a sandbox may refuse: the agent runs as before
        log.debug("raw-event worker priority unchanged", extra={"fields": {"error": str(exc)}})


class OtlpSink:
    """Sink (exporter.agent.pipeline.Sink) that ships ECS/OCSF documents as OTLP logs to
    `alert_exporter` and `event_exporter` (the same object when they share an output), with
    the queue sizes, batching and retries of `otlp`. `consumer_idle`: set while the live
    agent's consumer waits for the ring buffer (raw events are encoded then)."""

    in_order = False  # a drain's alerts leave before its raw events

    def __init__(
        self,
        mapper: Mapper,
        resource: Any,
        alert_exporter: Exporter,
        event_exporter: Exporter,
        *,
        otlp: OtlpConfig | None = None,
        raw_events: bool = True,
        dependency: str = "collector",
        consumer_idle: threading.Event | None = None,
        native: bool = False,
    ) -> None:
        self.mapper = mapper
        self.schema = mapper.schema
        self.raw_events = raw_events
        self.dependency = dependency  # what /readyz calls the output
        self.exporters = list({id(e): e for e in (alert_exporter, event_exporter)}.values())
        # The Elasticsearch exporter picks its mapping mode per scope: an ECS body is
        # indexed verbatim as the document ("bodymap").
        scope_attrs: Mapping[str, Any] = {"elastic.mapping.mode": "bodymap"} if self.schema == "ecs" else {}
        version = mapper.agent["version"]
        otlp = otlp or OtlpConfig()
        common: dict[str, Any] = {
            "max_batch": otlp.batch_size,
            "max_attempts": otlp.max_attempts,
            "backoff_max_s": otlp.backoff_max_s,
            "warn_interval_s": otlp.drop_warning_interval_s,
        }
        alert_encoder = make_encoder(
            alert_exporter.encoding, resource, Scope(ALERT_SCOPE, version, scope_attrs), native
        )
        self.alerts: ExportQueue[Alert] = ExportQueue(
            alert_exporter,
            "alerts",
            RecordEncoder(mapper, alert_encoder, "alerts"),  # type: ignore[arg-type]
            max_queue=otlp.alert_queue_size,
            delay_s=0,
            hold_while_down=True,
            **common,
        )
        self.events: ExportQueue[Event] | None = None
        if raw_events:
            event_encoder = make_encoder(
                event_exporter.encoding, resource, Scope(EVENT_SCOPE, version, scope_attrs), native
            )
            self.events = ExportQueue(
                event_exporter,
                "events",
                RecordEncoder(mapper, event_encoder, "events"),  # type: ignore[arg-type]
                max_queue=otlp.queue_size,
                delay_s=otlp.batch_delay_ms / 1000,
                defer_to=[self.alerts.idle, *([consumer_idle.wait] if consumer_idle is not None else [])],
                on_start=_lower_priority,
                **common,
            )

    def _queues(self) -> list[ExportQueue[Any]]:
        return [self.alerts] if self.events is None else [self.alerts, self.events]

    def emit_event(self, event: Event) -> None:
        if self.events is not None:
            self.events.put(event)

    def emit_alert(self, alert: Alert) -> None:
        self.alerts.put(alert)

    def batch_done(self) -> None:
        pass  # the export queues ship on their own schedule; never wait on the output here

    def wait_when_full(self) -> None:
        """The source can wait (a replayed file): a full export queue holds the caller
        back instead of dropping the oldest record."""
        for queue in self._queues():
            queue.wait_when_full = True

    def degraded(self) -> str | None:
        reasons = [r for queue in self._queues() if (r := queue.degraded()) is not None]
        if not reasons:
            return None
        names = ", ".join(e.name for e in self.exporters)
        return f"{names}: {'; '.join(reasons)}"

    def flush(self, timeout_s: float = 10.0) -> None:
        for queue in reversed(self._queues()):  # raw events first: their batch may linger
            queue.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        # Bounded: a dead collector must not hold the agent's shutdown. Every queue stops
        # before any exporter closes: the two may share one (the OTLP-JSON file).
        for queue in reversed(self._queues()):
            queue.stop(timeout_s)
        for exporter in self.exporters:
            exporter.shutdown()
