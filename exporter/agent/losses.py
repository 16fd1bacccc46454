"""What a run lost, and the exit code that says so.

Every place that can lose a record counts it in a metric labelled with the
cause (principle 1). `Ledger` reads those counters at the start and at the
end of a run; whatever grew is what this run lost. A run that lost anything
logs one line naming what and why, and exits EXIT_LOST.

`KernelLossReporter` does the same for the kernel's ring-buffer losses while
the agent runs: one warning per interval, with the counts, when they happen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from exporter.metrics import REGISTRY

log = logging.getLogger("provex.agent")

EXIT_OK = 0
EXIT_LOST = 3  # the run completed, but records were lost (the summary line says which and why)

# Counter (sample name) -> (what was lost, the label that says why, a filter on the labels).
LOSS_COUNTERS: dict[str, tuple[str, Callable[[dict[str, str]], bool]]] = {
    # lost_*: the ring buffer or the pairing map was full. Reads the flood budget samples or
    # sheds are a policy, like the kernel's filters: named on their own (exporter.agent.flood).
    "provex_kernel_events_total": ("kernel events lost", lambda labels: labels["outcome"].startswith("lost")),
    "provex_decode_errors_total": ("ring-buffer records undecodable", lambda labels: True),
    "provex_replay_lines_skipped_total": ("replay lines skipped", lambda labels: True),
    "provex_map_skipped_total": ("records the mapping failed on", lambda labels: labels["cause"] == "error"),
    "provex_export_dropped_total": ("records not delivered", lambda labels: True),
}


def _key(name: str, labels: dict[str, str]) -> str:
    """A short, readable key: what was lost, and why."""
    if name == "provex_kernel_events_total":
        return f"kernel/{labels['outcome']}"
    if name == "provex_export_dropped_total":
        return f"{labels['signal']}/{labels['cause']}"
    if name == "provex_replay_lines_skipped_total":
        return f"replay_line/{labels['cause']}"
    if name == "provex_map_skipped_total":
        return "mapping/error"
    return f"decode/{labels.get('cause', '')}"


def read_losses(registry: Any = REGISTRY) -> dict[str, int]:
    """Every loss counter's current value, summed per key."""
    out: dict[str, int] = {}
    for family in registry.collect():
        for sample in family.samples:
            rule = LOSS_COUNTERS.get(sample.name)
            if rule is None or not rule[1](sample.labels):
                continue
            key = _key(sample.name, sample.labels)
            out[key] = out.get(key, 0) + int(sample.value)
    return out


class Ledger:
    """Losses since this ledger was opened."""

    def __init__(self, registry: Any = REGISTRY) -> None:
        self.registry = registry
        self._start = read_losses(registry)

    def lost(self) -> dict[str, int]:
        now = read_losses(self.registry)
        grown = {key: value - self._start.get(key, 0) for key, value in now.items()}
        return {key: n for key, n in sorted(grown.items()) if n > 0}

    def finish(self, what: str, lines_read: int | None = None, lost: dict[str, int] | None = None) -> int:
        """Log the summary line if anything was lost; the exit code."""
        lost = self.lost() if lost is None else lost
        if not lost:
            return EXIT_OK
        log.error(summary(lost, what, lines_read), extra={"fields": {"lost": lost, "exit_code": EXIT_LOST}})
        return EXIT_LOST


def summary(lost: dict[str, int], what: str, lines_read: int | None = None) -> str:
    """One line: "replay lost 12 records (133500 lines read): events/queue_full 10, replay_line/corrupt 2".
    (Records: events, the alerts they raised, lines; each key says which and why.)"""
    total = sum(lost.values())
    read = f" ({lines_read} lines read)" if lines_read is not None else ""
    causes = ", ".join(f"{key} {n}" for key, n in sorted(lost.items(), key=lambda kv: -kv[1]))
    return f"{what} lost {total} records{read}: {causes}"


class KernelLossReporter:
    """One warning per interval while the kernel loses records (ring buffer full,
    pairing map full), with the counts per syscall since the last warning."""

    def __init__(
        self,
        read: Callable[[], dict[tuple[str, str], int]],
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.interval_s = interval_s
        self._clock = clock
        self._last = self._losses()
        self._next = clock() + interval_s

    def _losses(self) -> dict[tuple[str, str], int]:
        return {key: n for key, n in self._read().items() if key[1].startswith("lost")}

    def poll(self) -> dict[str, dict[str, int]] | None:
        """Called from the event loop; reads the counters once per interval."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        return self.report()

    def report(self) -> dict[str, dict[str, int]] | None:
        current = self._losses()
        grown: dict[str, dict[str, int]] = {}
        for (syscall, outcome), value in current.items():
            delta = value - self._last.get((syscall, outcome), 0)
            if delta > 0:
                grown.setdefault(outcome, {})[syscall] = delta
        self._last = current
        if not grown:
            return None
        log.warning(
            "kernel lost events",
            extra={
                "fields": {
                    "lost": grown,
                    "total": sum(n for per in grown.values() for n in per.values()),
                    "interval_s": self.interval_s,
                    "why": {
                        "lost_ringbuf": "ring buffer full: the agent did not drain it fast enough",
                        "lost_pending": "enter/exit pairing map full",
                    },
                }
            },
        )
        return grown
