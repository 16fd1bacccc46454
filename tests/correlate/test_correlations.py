"""Correlation types and joins the default rules do not all use: temporal, event_count, aliases."""

from __future__ import annotations

from exporter.config.schema import CorrelateConfig
from exporter.correlate import load_rules
from exporter.correlate.engine import Correlator
from exporter.model import EventType

from .helpers import container, event, write_rule

STEPS = """
title: Shell
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0201
name: shell
logsource: {product: linux, category: process_creation}
detection:
  s:
    Image|endswith: /sh
  condition: s
---
title: Outbound
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0202
name: outbound
logsource: {product: linux, category: network_connection}
detection:
  s:
    DestinationPort: 4444
  condition: s
---
title: Shadow denied
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0203
name: shadow_denied
logsource: {product: linux, category: file_access}
detection:
  s:
    TargetFilename: /etc/shadow
    Success: false
  condition: s
x-provex-include-failed: true
"""

ALIAS = """
title: Shell whose child calls out
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0204
correlation:
  type: temporal
  rules: [shell, outbound]
  group-by: [proc]
  aliases:
    proc:
      shell: ProcessId
      outbound: ParentProcessId
  timespan: 1m
level: high
"""

COUNT = """
title: Repeated denied shadow reads
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0205
correlation:
  type: event_count
  rules: [shadow_denied]
  group-by: [ContainerId]
  timespan: 10s
  condition: {gte: 3}
level: medium
"""


def _correlator(tmp_path, extra: str) -> Correlator:
    write_rule(tmp_path, "steps.yml", STEPS)
    write_rule(tmp_path, "corr.yml", extra)
    return Correlator(load_rules([tmp_path]), CorrelateConfig(dedup_window_s=0))


def _run(correlator, events):
    return [a for e in events for a in correlator.process(e)]


def test_alias_joins_different_fields_in_either_order(tmp_path):
    c = container()
    shell = event(EventType.EXEC, t=1, pid=50, path="/bin/sh", container=c)
    child_out = event(EventType.CONNECT, t=2, pid=51, ppid=50, daddr="127.0.0.1", dport=4444, family=2)
    other_out = event(EventType.CONNECT, t=2, pid=61, ppid=60, daddr="127.0.0.1", dport=4444, family=2)
    (alert,) = _run(_correlator(tmp_path, ALIAS), [shell, other_out, child_out])
    assert alert.key == {"proc": "50"} and [e.id for e in alert.evidence] == [shell.id, child_out.id]
    # temporal (unordered): the connect may come first
    assert len(_run(_correlator(tmp_path, ALIAS), [child_out, shell])) == 1
    assert _run(_correlator(tmp_path, ALIAS), [shell, other_out]) == []


def test_event_count_within_timespan_counts_failed_calls(tmp_path):
    c = container()

    def denied(t):
        return event(EventType.OPEN, t=t, path="/etc/shadow", ret=-13, container=c)

    assert _run(_correlator(tmp_path, COUNT), [denied(0), denied(20), denied(40)]) == []
    (alert,) = _run(_correlator(tmp_path, COUNT), [denied(0), denied(1), denied(2)])
    assert len(alert.evidence) == 3 and alert.level == "medium"
