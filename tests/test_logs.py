"""The agent's one rate limit on repeated warnings (library logs, drops, API failures)."""

from __future__ import annotations

import logging

from exporter.logs import RepeatFilter, Throttle


def test_throttle_holds_back_per_key_and_counts_what_it_held() -> None:
    now = [0.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.admit("a") == 0
    assert throttle.admit("a") is None and throttle.admit("a") is None
    assert throttle.admit("b") == 0  # another key is not held back
    now[0] = 10.0
    assert throttle.admit("a") == 2
    assert throttle.admit("a") is None


def test_library_records_repeat_once_per_interval() -> None:
    now = [0.0]
    repeats = RepeatFilter(10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("grpc", logging.WARNING, __file__, 1, msg, None, None)

    first = record("transient error %s")
    assert repeats.filter(first) and not hasattr(first, "fields")
    assert not repeats.filter(record("transient error %s"))
    assert repeats.filter(record("another message"))
    now[0] = 11.0
    later = record("transient error %s")
    assert repeats.filter(later) and later.fields == {"repeats_held_back": 1}
