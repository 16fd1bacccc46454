"""The in-memory sink behind the agent's Pipeline: deterministic, synchronous."""

from __future__ import annotations

from bench.helpers.records import AGENT, records
from exporter.agent.pipeline import Pipeline
from exporter.mapping import Mapper
from exporter.metrics import REGISTRY
from exporter.model import Alert, Event, EventType
from tests.helpers.memory_sink import MemorySink

RECORDS = records()


class OneRule:
    """A correlator that alerts on every setns (enough to drive the sink)."""

    def process(self, event: Event) -> list[Alert]:
        if event.type != EventType.SETNS:
            return []
        return [Alert(id=f"a-{event.id}", rule_id="r", rule_title="setns", level="high", event=event)]


def test_pipeline_into_memory_sink_is_deterministic() -> None:
    events = [r for r in RECORDS.values() if isinstance(r, Event)]
    fork = Event(id="fork-1", type=EventType.FORK, syscall="clone", ts_ns=1, pid=1, tid=1, child_pid=2)
    skipped = REGISTRY.get_sample_value("provex_map_skipped_total", {"cause": "no_kind"}) or 0.0

    def run() -> MemorySink:
        sink = MemorySink(Mapper("ocsf", version="0.1.0", **AGENT))
        Pipeline(sink, correlator=OneRule()).feed([*events, fork], now_ns=0)
        return sink

    first, second = run(), run()
    assert [e.document.body for e in first.emitted] == [e.document.body for e in second.emitted]
    assert len(first.documents("events")) == len(events)  # the fork is lineage only
    (alert,) = first.documents("alerts")
    assert alert["class_uid"] == 2004 and alert["severity_id"] == 4
    (emitted,) = [e for e in first.emitted if e.signal == "alerts"]
    assert emitted.attributes["k8s.namespace.name"] == "shop" and emitted.severity_text == "high"
    assert REGISTRY.get_sample_value("provex_map_skipped_total", {"cause": "no_kind"}) == skipped + 2


def test_a_record_the_mapping_fails_on_is_counted_and_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "schema: t\nkinds:\n  any: {when: {record: event}}\n"
        "items:\n  - id: a\n    set: {n: {from: event.pid, fn: count}}\n"  # len(int) raises
    )
    sink = MemorySink(Mapper(mapping, node_name="n"))
    before = REGISTRY.get_sample_value("provex_map_skipped_total", {"cause": "error"}) or 0.0
    event = Event(id="e", type=EventType.EXEC, syscall="execve", ts_ns=1, pid=7, tid=7)
    sink.emit_event(event)
    sink.emit_event(event)
    assert sink.emitted == []
    assert REGISTRY.get_sample_value("provex_map_skipped_total", {"cause": "error"}) == before + 2
