"""De-duplication never delays the first alert; follow-ups come when the window closes."""

from __future__ import annotations

from exporter.config.schema import CorrelateConfig
from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.correlate.engine import Correlator
from exporter.model import EventType

from .helpers import T0, S, container, event

RULES = load_rules([DEFAULT_RULES_DIR])
C = container("scanner")


def _probe(t: float, i: int):
    return event(
        EventType.CONNECT, t=t, pid=5, container=C, family=2, daddr=f"10.9.0.{i}", dport=22, ret=-111
    )


def test_first_alert_is_emitted_by_the_decisive_event():
    correlator = Correlator(RULES, CorrelateConfig(dedup_window_s=60))
    for i in range(1, 20):
        assert correlator.process(_probe(i * 0.1, i)) == []
    decisive = _probe(2.0, 20)
    (alert,) = correlator.process(decisive)
    assert alert.rule_title == "Internal Network Scan From A Container"
    assert alert.decisive_ts_ns == decisive.ts_ns and alert.event is decisive
    assert len(alert.evidence) == 20 and alert.suppressed == 0 and alert.followup_of == ""
    assert alert.key == {"ContainerId": "scanner"}


def test_later_matches_fold_into_a_followup_when_event_time_passes_the_window():
    correlator = Correlator(RULES, CorrelateConfig(dedup_window_s=60))
    out = [a for i in range(1, 31) for a in correlator.process(_probe(i * 0.1, i))]
    assert len(out) == 1
    first = out[0]
    # an unrelated event 61 s later closes the window
    (followup,) = correlator.process(event(EventType.OPEN, t=62, path="/tmp/a"))
    assert followup.followup_of == first.id and followup.suppressed == 10
    assert followup.id != first.id and followup.rule_id == first.rule_id
    # the window is closed: the next match is a new first alert
    again = [a for i in range(1, 21) for a in correlator.process(_probe(63 + i * 0.1, i))]
    (again,) = again
    assert again.followup_of == "" and again.suppressed == 0


def test_flush_closes_windows_by_the_callers_clock():
    correlator = Correlator(RULES, CorrelateConfig(dedup_window_s=60))
    for i in range(1, 26):
        correlator.process(_probe(i * 0.1, i))
    assert correlator.flush(T0 + 30 * S) == []  # window still open
    (followup,) = correlator.flush(T0 + 63 * S)
    assert followup.suppressed == 5
    assert correlator.flush(T0 + 120 * S) == []  # reported once
    assert correlator.drain() == []


def test_drain_reports_open_windows_at_shutdown():
    correlator = Correlator(RULES, CorrelateConfig(dedup_window_s=60))
    for i in range(1, 23):
        correlator.process(_probe(i * 0.1, i))
    (followup,) = correlator.drain()
    assert followup.suppressed == 2


def test_dedup_window_zero_emits_every_match():
    correlator = Correlator(RULES, CorrelateConfig(dedup_window_s=0))
    out = [a for i in range(1, 26) for a in correlator.process(_probe(i * 0.1, i))]
    assert len(out) == 6
