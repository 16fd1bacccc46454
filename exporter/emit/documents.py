"""ECS or OCSF documents as JSON lines (`--schema ecs|ocsf --format json`): what a SIEM
ingests without a collector. One document per line (NDJSON): Filebeat's ndjson parser
reads the file as it is (siem/filebeat/filebeat.yml), and a `_bulk` request is the same
lines with an action line before each (README: Output).

Mapping costs ~140 us a record, so it runs on a worker thread of its own: the consumer
only queues. One queue keeps the stream's order, each event before the alerts it
caused; when it is full an event gives way, never an alert while an event waits.
"""

from __future__ import annotations

import msgspec

from exporter.emit.bounded import BoundedQueue
from exporter.emit.jsonlines import LineWriter, encode_json
from exporter.emit.native import document_json
from exporter.emit.otlp import map_or_count
from exporter.emit.processor import DropReporter
from exporter.mapping import Document, Mapper
from exporter.model import Alert, Event


def _signal(record: Event | Alert) -> str:
    return "alerts" if isinstance(record, Alert) else "events"


class DocumentLinesSink:
    """Sink (exporter.agent.pipeline.Sink) writing one mapped document per line."""

    dependency = "output"
    in_order = True

    def __init__(
        self,
        mapper: Mapper,
        path: str = "",
        *,
        queue_size: int = 4096,
        drop_warning_interval_s: float = 10.0,
        writer: LineWriter | None = None,
        native: bool = False,
    ) -> None:
        self.mapper = mapper
        self.native = native  # documents through the C encoder (exporter.emit.native)
        self.schema = mapper.schema
        self.writer = writer or LineWriter(path)
        self._encoder = msgspec.json.Encoder()
        self._drops = {s: DropReporter(s, drop_warning_interval_s) for s in ("events", "alerts")}
        self._queue: BoundedQueue[Event | Alert] = BoundedQueue(
            queue_size,
            self._write,
            drop=lambda cause, count: None,  # drop_items counts, by signal
            drop_items=self._lost,
            keep=lambda record: isinstance(record, Alert),
            name=f"provex-{self.schema}-lines",
        )

    def emit_event(self, event: Event) -> None:
        self._queue.put(event)

    def emit_alert(self, alert: Alert) -> None:
        self._queue.put(alert)

    def _write(self, records: list[Event | Alert]) -> None:
        for record in records:
            doc = map_or_count(self.mapper, record)
            if doc is None:
                continue
            signal = _signal(record)
            line = self._encode(doc, signal) + b"\n"
            label = f"{record.rule_id}:{record.id}" if isinstance(record, Alert) else ""
            self.writer.add(signal, line, label=label)
        self.writer.flush()  # one drain's lines at once: a reader (tail -f, Filebeat) sees them

    def _encode(self, doc: Document, signal: str) -> bytes:
        """The document's JSON: msgspec's bytes of its nested body (the reference), or the
        same bytes from the C encoder, which leaves what it does not take to the reference
        (a shape past its bound, text that is not UTF-8: escaped there)."""
        if self.native and doc.fields is not None:
            try:
                encoded = document_json(doc.fields)
            except UnicodeEncodeError:
                encoded = None
            if encoded is not None:
                return encoded
        return encode_json(self._encoder, doc.body, signal)

    def _lost(self, cause: str, records: list[Event | Alert]) -> None:
        for signal in ("events", "alerts"):
            self._drops[signal].drop(cause, sum(_signal(r) == signal for r in records))

    def wait_when_full(self) -> None:
        """The source can wait (a replayed file): a full queue holds it back, nothing is dropped."""
        self._queue.wait_when_full = True

    def batch_done(self) -> None:
        pass  # the worker writes as it maps

    def degraded(self) -> str | None:
        return self.writer.state()

    def flush(self, timeout_s: float = 10.0) -> None:
        self._queue.wait_idle(timeout_s)
        self.writer.flush(force=True)

    def close(self, timeout_s: float = 5.0) -> None:
        self._queue.wait_idle(timeout_s)
        self._lost("shutdown", self._queue.discard())  # what a stuck output left behind
        self._queue.close(timeout_s)
        self.writer.close()
