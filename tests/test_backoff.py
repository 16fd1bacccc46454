"""The one retry rhythm (export queues, the Pod watch): doubling, capped, reset, stoppable."""

from __future__ import annotations

import threading
import time

from exporter.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.001, 0.004, threading.Event())
    delays = []
    for _ in range(5):
        delays.append(backoff.next_delay_s)
        assert backoff.wait() is True
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.004] and backoff.failures == 5
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay_s == 0.001


def test_a_stop_ends_the_wait_at_once() -> None:
    stop = threading.Event()
    backoff = Backoff(60.0, 60.0, stop)
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    assert backoff.wait() is False  # stopped: do not retry
    assert time.monotonic() - started < 30
