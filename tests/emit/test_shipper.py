"""Raw events through the child process, alerts in the agent: both reach a real OTLP receiver,
and the child's export metrics show on the agent's own registry."""

from __future__ import annotations

import pytest

from exporter.config.schema import OutputConfig
from exporter.emit import build_sink
from exporter.emit.shipper import RawShipper, SplitSink
from tests.emit.test_accounting import otlp_for
from tests.emit.test_resilience import alert, event, metric, wait_until
from tests.helpers.otlp_receiver import OtlpReceiver
from tests.mapping.records import AGENT


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_raw_events_go_through_the_child_and_alerts_stay_home(protocol: str) -> None:
    with OtlpReceiver(protocol) as receiver:
        sink = build_sink(OutputConfig(schema="ecs", otlp=otlp_for(receiver)), raw_in_child=True, **AGENT)
        assert isinstance(sink, SplitSink) and isinstance(sink.raw, RawShipper)
        exported_before = metric("provex_exported_total", signal="events")
        try:
            for n in range(300):
                sink.emit_event(event(n))
                if n % 50 == 49:
                    sink.batch_done()  # one frame per drain
            sink.emit_alert(alert(1))
            records = receiver.wait_for(301)
        finally:
            sink.close()
        assert sink.raw.process.returncode == 0  # the child stopped cleanly
    bodies = [r.body for r in records]
    assert sorted(b["event"]["id"] for b in bodies if b["event"]["kind"] == "event") == sorted(
        f"ev-{n}" for n in range(300)
    )
    assert [b["event"]["id"] for b in bodies if b["event"]["kind"] == "alert"] == ["alert-1"]
    # the child's counts arrive on the agent's /metrics (its last report comes as it exits)
    wait_until(lambda: metric("provex_exported_total", signal="events") - exported_before == 300)


def test_a_live_source_drops_whole_frames_when_the_child_lags_and_counts_them() -> None:
    with OtlpReceiver("grpc") as receiver:
        sink = build_sink(OutputConfig(schema="ecs", otlp=otlp_for(receiver)), raw_in_child=True, **AGENT)
        assert isinstance(sink, SplitSink)
        sink.raw._frames.max_items = 1
        dropped_before = metric("provex_export_dropped_total", signal="events", cause="shipper_full")
        try:
            with sink.raw._frames._cond:  # hold the sender: frames pile up behind the first
                for n in range(3):
                    sink.emit_event(event(n))
                    sink.raw.batch_done()
        finally:
            sink.close()
    dropped = metric("provex_export_dropped_total", signal="events", cause="shipper_full") - dropped_before
    assert dropped >= 1


def test_no_child_without_raw_events_or_without_an_endpoint(tmp_path) -> None:
    with OtlpReceiver("grpc") as receiver:
        alerts_only = build_sink(
            OutputConfig(schema="ecs", raw_events=False, otlp=otlp_for(receiver)), raw_in_child=True, **AGENT
        )
        assert not isinstance(alerts_only, SplitSink)
        alerts_only.close()
    to_file = build_sink(
        OutputConfig(schema="ecs", file=str(tmp_path / "out.jsonl")), raw_in_child=True, **AGENT
    )
    assert not isinstance(to_file, SplitSink)  # one writer for the file: alerts and events never interleave
    to_file.close()
