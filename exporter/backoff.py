"""Exponential back-off between attempts that can be stopped: the one retry rhythm of the
agent (the export queues' retries, the Kubernetes Pod watch's reconnects)."""

from __future__ import annotations

import threading


class Backoff:
    """Waits `initial_s` after the first failure, twice as long after each next one, at most
    `max_s`; `reset` after a success. A wait ends early when `stop` is set."""

    def __init__(self, initial_s: float, max_s: float, stop: threading.Event) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.stop = stop
        self.failures = 0

    @property
    def next_delay_s(self) -> float:
        return min(self.max_s, self.initial_s * 2 ** min(self.failures, 32))

    def wait(self) -> bool:
        """After a failure: wait the next delay; False when stopped meanwhile (do not retry)."""
        delay = self.next_delay_s
        self.failures += 1
        return not self.stop.wait(delay)

    def reset(self) -> None:
        self.failures = 0
