"""Export accounting tells the truth: the collector's partial_success and failing batches are
counted and visible, against the OTLP receiver stand-in (official protobufs, real gRPC/HTTP)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from bench.helpers.otlp_receiver import OtlpReceiver
from bench.helpers.records import AGENT
from exporter.agent.losses import EXIT_LOST
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.emit.factory import build_resource, make_exporter, resolve_otlp
from exporter.emit.logrecord import Scope
from exporter.emit.otlp import RecordEncoder, make_encoder
from exporter.emit.processor import ExportQueue
from exporter.mapping import Mapper
from exporter.metrics import render
from exporter.model import encode_event
from tests.emit.test_resilience import alert, event, metric, wait_until

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = ["grpc", "http/protobuf"]


def otlp_for(receiver: OtlpReceiver, **kw: object) -> OtlpConfig:
    options = {
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_max_s": 0.05,
        "batch_size": 10,
        "batch_delay_ms": 10,
    }
    return OtlpConfig(endpoint=receiver.endpoint, protocol=receiver.protocol, **{**options, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_rejection_by_partial_success_is_dropped_by_cause_and_logged(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="provex.emit")
    with OtlpReceiver(protocol) as receiver:
        receiver.reject = (-1, "log records rejected: index mapping conflict on field process.pid")
        before = (metric("provex_exported_total", signal="alerts"), metric("provex_export_dropped_total", signal="alerts", cause="rejected"))  # fmt: skip
        sink = build_sink(
            OutputConfig(schema="ecs", otlp=otlp_for(receiver, drop_warning_interval_s=0.0)), **AGENT
        )
        for n in range(5):
            sink.emit_alert(alert(n))
        sink.close()
        assert receiver.attempts >= 1 and receiver.received == []
    assert metric("provex_exported_total", signal="alerts") == before[0]  # nothing counted as delivered
    assert metric("provex_export_dropped_total", signal="alerts", cause="rejected") - before[1] == 5
    warnings = [r for r in caplog.records if r.getMessage() == "export dropped log records"]
    assert warnings and all(w.fields["dropped"].keys() == {"rejected"} for w in warnings)  # type: ignore[attr-defined]
    assert sum(w.fields["dropped"]["rejected"] for w in warnings) == 5  # type: ignore[attr-defined]
    assert warnings[0].fields["details"]["rejected"] == (  # type: ignore[attr-defined]
        "log records rejected: index mapping conflict on field process.pid"
    )


def test_a_partial_rejection_counts_the_rest_as_exported() -> None:
    with OtlpReceiver("grpc") as receiver:
        receiver.reject = (3, "3 records over the size limit")
        before = (metric("provex_exported_total", signal="events"), metric("provex_export_dropped_total", signal="events", cause="rejected"))  # fmt: skip
        sink = build_sink(OutputConfig(schema="ocsf", otlp=otlp_for(receiver, batch_size=10)), **AGENT)
        for n in range(10):
            sink.emit_event(event(n))
        sink.close()
    assert metric("provex_exported_total", signal="events") - before[0] == 7
    assert metric("provex_export_dropped_total", signal="events", cause="rejected") - before[1] == 3


def test_a_collector_warning_without_rejection_is_passed_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="provex.emit")
    with OtlpReceiver("http/protobuf") as receiver:
        receiver.reject = (0, "attribute k8s.pod.uid is deprecated")
        before = metric("provex_exported_total", signal="alerts")
        sink = build_sink(OutputConfig(schema="ecs", otlp=otlp_for(receiver)), **AGENT)
        sink.emit_alert(alert(1))
        sink.close()
    assert metric("provex_exported_total", signal="alerts") - before == 1
    (note,) = [r for r in caplog.records if r.getMessage() == "collector answered with a warning"]
    assert note.fields["details"] == {"collector_warning": "attribute k8s.pod.uid is deprecated"}  # type: ignore[attr-defined]


def _gauge(name: str, signal: str) -> float:
    """Read a gauge the way a scraper does: from the /metrics text."""
    for line in render().decode().splitlines():
        if line.startswith(f'{name}{{signal="{signal}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_failing_batch_is_visible_on_metrics_while_it_is_retried(protocol: str) -> None:
    # Queues of their own (signal labels no other test shares): the gauges are process-wide.
    signal = f"retry-test-{protocol}"
    cause = "unavailable" if protocol == "grpc" else "http_503"
    with OtlpReceiver(protocol) as receiver:
        if protocol == "grpc":
            receiver.grpc_status = grpc.StatusCode.UNAVAILABLE
        else:
            receiver.http_status = 503
        target = resolve_otlp(otlp_for(receiver, timeout_s=0.5))
        assert target is not None
        exporter = make_exporter(target)
        encoder = make_encoder(exporter.encoding, build_resource(), Scope("provex.events"))
        events = ExportQueue(
            exporter,
            signal,
            RecordEncoder(Mapper("ecs", **AGENT), encoder, signal),
            max_batch=7,
            delay_s=0.01,
            max_attempts=100_000,
            backoff_max_s=0.05,
        )
        try:
            for n in range(7):
                events.put(event(n))
            # The collector keeps failing: the batch shows as in flight and retrying.
            wait_until(lambda: _gauge("provex_export_retrying", signal) == 7)
            assert _gauge("provex_export_in_flight", signal) == 7
            wait_until(lambda: receiver.attempts >= 3)
            assert metric("provex_export_attempt_failures_total", signal=signal, cause=cause) >= 2
            assert metric("provex_exported_total", signal=signal) == 0
            # It heals: the batch goes out, the gauges fall back to zero.
            receiver.grpc_status, receiver.http_status = None, 200
            receiver.wait_for(7)
            wait_until(lambda: metric("provex_exported_total", signal=signal) == 7)
            wait_until(lambda: _gauge("provex_export_retrying", signal) == 0)
            assert _gauge("provex_export_in_flight", signal) == 0
        finally:
            events.stop()
            exporter.shutdown()


def test_library_logs_are_json_and_a_lost_replay_says_so(tmp_path: Path) -> None:
    """`provex replay` to a collector that answers UNAVAILABLE: every stderr line is the agent's
    JSON (the OTel SDK's own warnings included), and the run exits EXIT_LOST with the summary."""
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"".join(encode_event(event(n)) + b"\n" for n in range(20)))
    with OtlpReceiver("grpc") as receiver:
        receiver.grpc_status = grpc.StatusCode.UNAVAILABLE
        result = subprocess.run(
            [
                sys.executable, "-m", "exporter", "replay", str(recording), "--schema", "ecs",
                "--otlp-endpoint", receiver.endpoint, "--set", "output.otlp.timeout_s=1.5",
                "--set", "output.otlp.max_attempts=2", "--set", "output.otlp.backoff_max_s=0.05",
                "--set", "correlate.default_rules=false",
            ],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip
        assert receiver.attempts >= 2
    logs = [json.loads(line) for line in result.stderr.splitlines()]  # raises on any non-JSON line
    sdk = [d for d in logs if d["logger"].startswith("opentelemetry.")]
    assert sdk, "the SDK's own warnings should be in the stream"
    assert any("UNAVAILABLE" in d["msg"] for d in sdk)
    assert result.returncode == EXIT_LOST
    (summary,) = [d for d in logs if d["level"] == "error" and "lost" in d]
    assert summary["msg"] == "replay lost 20 records (20 lines read): events/unavailable 20"
