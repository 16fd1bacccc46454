"""Kernel counters on /metrics, read from the per-CPU map at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from exporter.metrics import REGISTRY


class KernelCounters(Collector):
    """provex_kernel_events_total{syscall, outcome}: seen, filtered_*, emitted, lost_*."""

    def __init__(self, probes: Any) -> None:
        self.probes = probes

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "provex_kernel_events",
            "Syscalls seen by the probes, by outcome: filtered in the kernel (by cause), "
            "emitted to the ring buffer, or lost (ring buffer full / pending map full)",
            labels=["syscall", "outcome"],
        )
        for (syscall, outcome), value in sorted(self.probes.counters().items()):
            family.add_metric([syscall, outcome], value)
        yield family


def register(probes: Any) -> KernelCounters:
    collector = KernelCounters(probes)
    REGISTRY.register(collector)
    return collector
