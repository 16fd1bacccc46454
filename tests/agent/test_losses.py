"""What a run lost, said once at the end (and in the exit code), and kernel losses as they happen."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter.agent.losses import EXIT_LOST, EXIT_OK, KernelLossReporter, Ledger, summary


def test_the_ledger_counts_only_what_this_run_lost(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="provex.agent")
    registry = CollectorRegistry()
    dropped = Counter("provex_export_dropped", "", ["signal", "cause"], registry=registry)
    skipped = Counter("provex_replay_lines_skipped", "", ["cause"], registry=registry)
    mapped = Counter("provex_map_skipped", "", ["cause"], registry=registry)
    dropped.labels("events", "queue_full").inc(7)  # an earlier run in the same process
    ledger = Ledger(registry)
    assert ledger.finish("replay") == EXIT_OK
    mapped.labels("no_kind").inc(3)  # lineage events have no document by design: not a loss
    assert ledger.finish("replay") == EXIT_OK and not caplog.records
    dropped.labels("events", "queue_full").inc(10)
    dropped.labels("alerts", "rejected").inc(2)
    skipped.labels("corrupt").inc(1)
    assert ledger.lost() == {"alerts/rejected": 2, "events/queue_full": 10, "replay_line/corrupt": 1}
    assert ledger.finish("replay", lines_read=100) == EXIT_LOST
    (line,) = caplog.records
    assert line.getMessage() == (
        "replay lost 13 records (100 lines read): events/queue_full 10, alerts/rejected 2, replay_line/corrupt 1"
    )
    assert line.fields == {  # type: ignore[attr-defined]
        "lost": {"alerts/rejected": 2, "events/queue_full": 10, "replay_line/corrupt": 1},
        "exit_code": EXIT_LOST,
    }


def test_summary_without_a_total() -> None:
    assert summary({"kernel/lost_ringbuf": 5}, "run") == "run lost 5 records: kernel/lost_ringbuf 5"


def test_kernel_losses_are_logged_when_they_happen_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="provex.agent")
    counters = {("openat", "emitted"): 100, ("openat", "lost_ringbuf"): 0, ("execve", "lost_pending"): 0}
    now = [0.0]
    reporter = KernelLossReporter(lambda: dict(counters), interval_s=10.0, clock=lambda: now[0])
    counters[("openat", "lost_ringbuf")] = 500
    now[0] = 5.0
    assert reporter.poll() is None  # not yet: once per interval
    now[0] = 10.0
    assert reporter.poll() == {"lost_ringbuf": {"openat": 500}}
    counters[("openat", "lost_ringbuf")] = 800
    counters[("execve", "lost_pending")] = 2
    now[0] = 15.0
    assert reporter.poll() is None
    now[0] = 20.0
    assert reporter.poll() == {"lost_ringbuf": {"openat": 300}, "lost_pending": {"execve": 2}}
    now[0] = 30.0
    assert reporter.poll() is None  # nothing new: nothing said
    warnings = [r for r in caplog.records if r.getMessage() == "kernel lost events"]
    assert [w.fields["total"] for w in warnings] == [500, 302]  # type: ignore[attr-defined]
    assert warnings[1].fields["lost"] == {"lost_ringbuf": {"openat": 300}, "lost_pending": {"execve": 2}}  # type: ignore[attr-defined]
