"""The correlator plugs into the agent's Pipeline as its Correlator."""

from __future__ import annotations

from exporter.agent.pipeline import Pipeline
from exporter.config.schema import CorrelateConfig
from exporter.correlate import build_correlator
from exporter.model import Alert, Event
from exporter.source.replay import ReplaySource
from tests.helpers.memory_sink import TestSink

from .helpers import RULE_FIXTURES


class ListSink(TestSink):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.alerts: list[Alert] = []

    def emit_event(self, event: Event) -> None:
        self.events.append(event)

    def emit_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


def test_replayed_chain_reaches_the_sink():
    sink = ListSink()
    correlator = build_correlator(CorrelateConfig())
    pipeline = Pipeline(sink, correlator=correlator)
    source = ReplaySource(RULE_FIXTURES / "sa_token_exfiltration" / "positive" / "read_then_connect.jsonl")
    pipeline.feed(list(source), now_ns=0)
    pipeline.finish()
    assert len(sink.events) == 2
    (alert,) = sink.alerts
    assert alert.rule_title == "Service-Account Token Read Then Used Against The API Server"
    assert alert.techniques == ["T1528", "T1552.007"]
