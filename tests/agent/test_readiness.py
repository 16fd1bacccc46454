"""/readyz reports the output's state whatever shape the sink has: a collector that fails,
with raw events exported or not, over gRPC or HTTP; a full disk under JSON lines or OTLP-JSON
lines. Degraded, not failed (the agent still detects), and ok again once the output takes
records. The real health server, sinks as `build_sink` makes them, the receiver stand-in."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from bench.helpers.otlp_receiver import OtlpReceiver
from bench.helpers.records import AGENT
from exporter.agent.build import Stages
from exporter.agent.health import HealthState, serve
from exporter.agent.live import watch_dependencies
from exporter.agent.pipeline import Pipeline, Sink
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.scenarios.agent import free_port, health_get
from tests.emit.test_accounting import otlp_for
from tests.emit.test_full_disk import fill, mount_tmpfs  # noqa: F401 (a fixture)
from tests.emit.test_resilience import alert, event, wait_until


@contextmanager
def readyz(sink: Sink) -> Iterator[Callable[[], tuple[int, str]]]:
    """The agent's health server with the dependencies `provex run` registers for `sink`."""
    state = HealthState()
    state.beat()
    state.ready.set()
    watch_dependencies(state, Stages(Pipeline(sink), sink))
    port = free_port()
    server = serve(f"127.0.0.1:{port}", state)
    try:
        yield lambda: health_get(port, "/readyz")
    finally:
        server.shutdown()


def says(get: Callable[[], tuple[int, str]], pattern: str) -> Callable[[], bool]:
    def check() -> bool:
        code, body = get()
        assert code == 200, body  # degraded, never not ready: the agent still detects
        return re.search(pattern, body, re.MULTILINE) is not None

    return check


@pytest.mark.parametrize("raw_events", [True, False], ids=["raw-events", "alerts-only"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_failing_collector_is_reported_for_every_sink_shape(protocol: str, raw_events: bool) -> None:
    with OtlpReceiver(protocol) as receiver:
        if protocol == "grpc":
            receiver.grpc_status = grpc.StatusCode.UNAVAILABLE
        else:
            receiver.http_status = 503
        otlp = otlp_for(receiver, timeout_s=0.5, max_attempts=2)
        sink = build_sink(OutputConfig(schema="ecs", raw_events=raw_events, otlp=otlp), **AGENT)
        try:
            with readyz(sink) as get:
                assert says(get, r"^\[\+\]collector ok$")()
                sink.emit_event(event(1))
                sink.emit_alert(alert(1))
                cause = "unavailable" if protocol == "grpc" else "http_503"
                wait_until(
                    says(get, rf"^\[-\]collector degraded: collector {re.escape(receiver.endpoint)}.*{cause}")
                )
                assert says(get, r"ready \(degraded: collector\)$")()
                receiver.grpc_status, receiver.http_status = None, 200  # it heals
                sink.emit_event(event(2))
                sink.emit_alert(alert(2))
                wait_until(says(get, r"^\[\+\]collector ok$"))
        finally:
            sink.close()


@pytest.mark.parametrize("form", ["raw json", "raw text", "ecs json"])
def test_a_full_disk_under_lines_is_reported(form: str, mount_tmpfs: Callable[[str], Path]) -> None:  # noqa: F811
    """Raw JSON lines, text lines, ECS documents one per line: the writer's state."""
    disk = mount_tmpfs("64k")
    filler = fill(disk)
    schema, format_ = form.split()
    sink = build_sink(OutputConfig(schema=schema, format=format_, file=str(disk / "out.jsonl")), **AGENT)  # type: ignore[arg-type]
    sink.writer.retry_interval_s = 0  # type: ignore[union-attr]
    try:
        with readyz(sink) as get:
            assert says(get, r"^\[\+\]output ok$")()
            sink.emit_alert(alert(1))
            sink.flush()
            assert says(
                get, r"^\[-\]output degraded: .*out\.jsonl: No space left on device \(1 lines waiting\)"
            )()
            filler.unlink()
            sink.batch_done()
            sink.flush()
            assert says(get, r"^\[\+\]output ok$")()
    finally:
        sink.close()


def test_a_full_disk_under_otlp_json_lines_is_reported(mount_tmpfs: Callable[[str], Path]) -> None:  # noqa: F811
    disk = mount_tmpfs("64k")
    filler = fill(disk)
    otlp = OtlpConfig(max_attempts=2, backoff_max_s=0.05, batch_delay_ms=10)
    sink = build_sink(
        OutputConfig(schema="ocsf", format="otlp-json", file=str(disk / "out.jsonl"), otlp=otlp), **AGENT
    )
    try:
        with readyz(sink) as get:
            assert says(get, r"^\[\+\]output ok$")()
            sink.emit_event(event(1))
            sink.emit_alert(alert(1))
            wait_until(says(get, r"^\[-\]output degraded: output .*out\.jsonl: alerts failing .*no_space"))
            filler.unlink()  # the held alert goes out; an event does too
            sink.emit_event(event(2))
            wait_until(says(get, r"^\[\+\]output ok$"))
    finally:
        sink.close()
