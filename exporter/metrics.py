"""The agent's Prometheus registry.

Each stage declares its own metrics (in its own module) on this registry, and
every place that can drop, skip or retry something has a counter labelled
with the cause. /metrics serves this registry, with the process's own
`process_*` series (CPU, memory, open fds) and `provex_build_info`; no
`*_created` series (one timestamp per labelled counter, noise on every scrape).
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from exporter import __version__

disable_created_metrics()  # process-wide in prometheus_client: before any metric is created
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

BUILD_INFO = Gauge(
    "provex_build_info",
    "Always 1; what runs: provex version, Python version, kernel release, machine",
    ["version", "python", "kernel", "machine"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__, platform.python_version(), platform.release(), platform.machine()).set(1)


def render() -> bytes:
    """The Prometheus text exposition of every provex metric."""
    return generate_latest(REGISTRY)
