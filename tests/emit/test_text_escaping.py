"""A file name that is not UTF-8 (any container can make one) is written escaped, never refused:
the JSON and protobuf encoders reject such text, which would kill the raw output or a whole batch."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from bench.helpers.otlp_receiver import OtlpReceiver
from bench.helpers.records import AGENT
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.emit.jsonlines import JsonLinesSink
from exporter.model import Alert, decode_event
from exporter.scenarios.runc import ContainerSpec, Runc
from tests.emit.test_resilience import alert, event, metric

BAD = "/etc/cron.d/\udcffpayload"  # b"/etc/cron.d/\xffpayload" as the kernel decoder hands it over
SHOWN = "/etc/cron.d/\\xffpayload"


def strings(value: object) -> list[str]:
    """Every string inside a decoded document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def bad_records() -> tuple[object, Alert]:
    ev = event(1)
    ev.path = BAD
    al = alert(1)
    assert al.event is not None
    al.event.path = BAD
    return ev, al


def test_raw_output_escapes_instead_of_dying(tmp_path: Path) -> None:
    ev, al = bad_records()
    before = metric("provex_output_text_escaped_total", signal="events")
    out = tmp_path / "out.jsonl"
    sink = JsonLinesSink(str(out))
    sink.emit_event(ev)  # type: ignore[arg-type]
    sink.emit_alert(al)
    sink.close()
    line_event, line_alert = out.read_bytes().splitlines()
    assert decode_event(line_event).path == SHOWN
    assert msgspec.json.decode(line_alert)["alert"]["event"]["path"] == SHOWN
    assert metric("provex_output_text_escaped_total", signal="events") - before == 1


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_batches_with_such_text_are_delivered(protocol: str) -> None:
    ev, al = bad_records()
    with OtlpReceiver(protocol) as receiver:
        otlp = OtlpConfig(endpoint=receiver.endpoint, protocol=protocol, batch_size=3, batch_delay_ms=10)  # type: ignore[arg-type]
        sink = build_sink(OutputConfig(schema="ecs", otlp=otlp), **AGENT)
        sink.emit_event(event(0))
        sink.emit_event(ev)  # type: ignore[arg-type]
        sink.emit_event(event(2))
        sink.emit_alert(al)
        sink.close()
        records = receiver.wait_for(4)
    paths = {r.body["file"]["path"] for r in records if r.body.get("event", {}).get("kind") == "event"}
    assert paths == {"/etc/x", SHOWN}  # the whole batch arrived, the odd name escaped
    (alert_record,) = [r for r in records if r.body["event"]["kind"] == "alert"]
    assert alert_record.body["event"]["id"] == "alert-1"  # its evidence held the name: still delivered


def test_otlp_json_file_too(tmp_path: Path) -> None:
    ev, _ = bad_records()
    out = tmp_path / "out.json"
    sink = build_sink(OutputConfig(schema="ocsf", file=str(out)), **AGENT)
    sink.emit_event(ev)  # type: ignore[arg-type]
    sink.close()
    assert SHOWN in strings(json.loads(out.read_text()))


@pytest.mark.ebpf
@pytest.mark.containers
@pytest.mark.slow
def test_live_agent_survives_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    agent = Agent(tmp_path)  # `provex record`: the raw JSON lines
    runc = Runc(tmp_path / "runc")
    try:
        run = runc.run(
            ContainerSpec(["/bin/sh", "-c", "echo x > \"$(printf '/tmp/odd\\377name')\""], name="odd")
        )
        assert run.returncode == 0, run.stderr
        events = agent.wait_for(lambda evs: any("odd" in (e.path or "") for e in evs))
        assert agent.process.poll() is None, agent.stderr_path.read_text()[-2000:]
        assert any(e.path == "/tmp/odd\\xffname" for e in events)
    finally:
        code = agent.stop()
        runc.close()
    assert_clean_exit(code, agent.stderr_path)
