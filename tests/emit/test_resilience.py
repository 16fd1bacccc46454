"""Collector down, slow or sick: the sink keeps running, counts what it drops, recovers."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from bench.helpers.otlp_receiver import Capture, OtlpReceiver
from bench.helpers.records import AGENT, records
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.emit.processor import DropReporter
from exporter.metrics import REGISTRY
from exporter.model import Alert, Event, EventType

RECORDS = records()
TEMPLATE_ALERT = RECORDS["alert_token_exfil"]
assert isinstance(TEMPLATE_ALERT, Alert)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def totals(signal: str) -> tuple[float, float]:
    """(exported, dropped over every cause) for one signal."""
    dropped = sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "provex_export_dropped"
        for s in m.samples
        if s.name.endswith("_total") and s.labels["signal"] == signal
    )
    return metric("provex_exported_total", signal=signal), dropped


def alert(n: int) -> Alert:
    out = Alert(**{f: getattr(TEMPLATE_ALERT, f) for f in TEMPLATE_ALERT.__struct_fields__})
    out.id = f"alert-{n}"
    return out


def event(n: int) -> Event:
    return Event(
        id=f"ev-{n}",
        type=EventType.OPEN,
        syscall="openat",
        ts_ns=1764100000000000000 + n,
        pid=1,
        tid=1,
        path="/etc/x",
    )


def wait_until(predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_killed_and_restarted(protocol: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="provex.emit")
    receiver = OtlpReceiver(protocol).start()
    otlp = OtlpConfig(
        endpoint=receiver.endpoint,
        protocol=protocol,  # type: ignore[arg-type]
        timeout_s=0.5,
        max_attempts=2,
        backoff_max_s=0.2,
        alert_queue_size=20,
        queue_size=50,
        batch_size=16,
        batch_delay_ms=20,
        drop_warning_interval_s=0.0,
    )
    before = {s: totals(s) for s in ("alerts", "events")}
    sink = build_sink(OutputConfig(schema="ecs", otlp=otlp), **AGENT)
    sink.emit_alert(alert(0))
    receiver.wait_for(1)

    receiver.stop()  # the collector dies
    sent_alerts, sent_events = 1, 0
    for n in range(1, 301):  # keep emitting: the caller never blocks
        sink.emit_alert(alert(n))
        sink.emit_event(event(n))
        sent_alerts += 1
        sent_events += 1
    wait_until(lambda: totals("alerts")[1] > before["alerts"][1])
    assert metric("provex_export_dropped_total", signal="alerts", cause="queue_full") > 0
    assert any("export dropped log records" in r.getMessage() for r in caplog.records)

    restarted = OtlpReceiver(protocol, port=receiver.port).start()  # it comes back
    try:
        # Delivery resumes by itself: a fresh alert arrives.
        def fresh_alert_arrived() -> bool:
            return any(r.body["event"]["id"] == "alert-after" for r in restarted.records())

        sink.emit_alert(Alert(**{**_fields(alert(0)), "id": "alert-after"}))
        sent_alerts += 1
        wait_until(fresh_alert_arrived)
        sink.close()
    finally:
        restarted.stop()
    # Everything emitted is accounted for: exported or counted as dropped.
    for signal, sent in (("alerts", sent_alerts), ("events", sent_events)):
        exported, dropped = totals(signal)
        assert (exported - before[signal][0]) + (dropped - before[signal][1]) == sent, signal


def _fields(a: Alert) -> dict:
    return {f: getattr(a, f) for f in a.__struct_fields__}


def test_sick_collector_is_retried_with_backoff_then_recovers() -> None:
    with OtlpReceiver("http/protobuf", status=503) as receiver:
        otlp = OtlpConfig(
            endpoint=receiver.endpoint,
            protocol="http/protobuf",
            timeout_s=0.3,
            max_attempts=50,
            backoff_max_s=0.1,
        )
        sink = build_sink(OutputConfig(schema="ocsf", otlp=otlp), **AGENT)
        retries_before = metric("provex_export_retries_total", signal="alerts")
        sink.emit_alert(alert(1))
        wait_until(lambda: metric("provex_export_retries_total", signal="alerts") >= retries_before + 2)
        receiver.http_status = 200  # the collector heals
        (record,) = receiver.wait_for(1)
        sink.close()
    assert record.body["finding_info"]["uid"] == "alert-1"


class BlockingExporter(Capture):
    """Holds every export until released: a collector that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def export(self, request: bytes, records: int, signal: str) -> bool:
        self.release.wait()
        return super().export(request, records, signal)

    def shutdown(self) -> None:
        self.release.set()


def test_hung_collector_never_blocks_the_caller_and_memory_stays_bounded() -> None:
    exporter = BlockingExporter()
    otlp = OtlpConfig(alert_queue_size=10, queue_size=10, batch_size=4, batch_delay_ms=10)
    sink = build_sink(OutputConfig(schema="ecs", otlp=otlp), exporter=exporter, **AGENT)
    full_before = metric("provex_export_dropped_total", signal="alerts", cause="queue_full")
    for n in range(1000):  # would hang here (test timeout) if emit waited on the exporter
        sink.emit_alert(alert(n))
    dropped = metric("provex_export_dropped_total", signal="alerts", cause="queue_full") - full_before
    # At most the queue (10) plus one batch in the exporter's hands (4) are kept.
    assert 1000 - 14 <= dropped <= 1000 - 10
    exporter.release.set()
    sink.close()
    assert len(exporter.records) == 1000 - dropped
    # The newest alerts are the ones kept.
    assert exporter.records[-1].body["event"]["id"] == "alert-999"


class FlakyExporter(Capture):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def export(self, request: bytes, records: int, signal: str) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("exporter bug")
        return super().export(request, records, signal)


def test_exporter_exception_is_retried_not_fatal() -> None:
    exporter = FlakyExporter()
    sink = build_sink(OutputConfig(schema="ecs"), exporter=exporter, **AGENT)
    sink.emit_alert(alert(1))
    sink.flush()
    sink.emit_alert(alert(2))
    sink.close()
    assert [r.body["event"]["id"] for r in exporter.records] == ["alert-1", "alert-2"]


def test_drop_warning_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="provex.emit")
    now = [100.0]
    reporter = DropReporter("events", interval_s=10.0, clock=lambda: now[0])
    for _ in range(500):
        reporter.drop("queue_full")
    now[0] += 10.0
    reporter.drop("export_failed", 3)
    warnings = [r for r in caplog.records if r.name == "provex.emit"]
    assert len(warnings) == 2
    assert warnings[0].fields == {"signal": "events", "dropped": {"queue_full": 1}, "interval_s": 10.0}  # type: ignore[attr-defined]
    assert warnings[1].fields["dropped"] == {"queue_full": 499, "export_failed": 3}  # type: ignore[attr-defined]
    reporter.drop("queue_full", 2)  # within the interval: counted, not yet reported
    assert len([r for r in caplog.records if r.name == "provex.emit"]) == 2
    reporter.flush()  # shutdown reports the rest
    assert caplog.records[-1].fields["dropped"] == {"queue_full": 2}  # type: ignore[attr-defined]
