"""SigmaHQ's Linux rules: every rule whose logsource and fields provex produces loads and
evaluates; the others are counted by cause. The committed report must stay true."""

from __future__ import annotations

import json

import pytest

from exporter.correlate import survey
from exporter.correlate.engine import Correlator
from exporter.model import EventType

from .helpers import FIXTURES, SHARED, container, event

CORPUS = SHARED / "sigma-linux"
REPORT = FIXTURES / "sigmahq-survey.json"


@pytest.fixture(scope="module")
def result():
    if not CORPUS.is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {CORPUS}")
    return survey([CORPUS])


def test_report_is_current(result):
    assert result.summary() == json.loads(REPORT.read_text())


def test_every_rule_parses_and_only_foreign_logsources_or_fields_are_refused(result):
    summary = result.summary()
    assert summary["loaded"] == summary["rules"] > 200
    assert summary["evaluable"] >= 130
    for cause in summary["by_cause"]:
        kind, _, what = cause.partition(":")
        assert kind in ("logsource", "unknown_field"), cause
        if kind == "logsource":
            # categories provex produces are never refused for their logsource
            assert what not in ("process_creation", "file_event", "file_access", "network_connection")


def test_evaluable_rules_run_on_events_of_every_category(result):
    correlator = Correlator(result.ruleset)
    c = container("c1")
    events = [
        event(EventType.EXEC, t=1, path="/usr/bin/base64", argv=["base64", "-d", "/tmp/p"], container=c),
        event(EventType.EXEC, t=2, path="/usr/bin/id", argv=["id"], container=c),
        event(EventType.OPEN, t=3, path="/etc/sudoers.d/evil", flags=0o101, container=c),
        event(EventType.OPEN, t=4, path="/etc/cron.d/job", flags=0o101, container=c),
        event(
            EventType.CONNECT, t=5, daddr="203.0.113.9", dport=4444, family=2, exe="/bin/bash", container=c
        ),
    ]
    titles = {a.rule_title for e in events for a in correlator.process(e)}
    assert "Decode Base64 Encoded Text" in titles
    assert "Persistence Via Sudoers.d Files" in titles
    assert any("Cron" in t for t in titles)
    assert "Potentially Suspicious Malware Callback Communication - Linux" in titles
    assert "Linux Reverse Shell Indicator" in titles
