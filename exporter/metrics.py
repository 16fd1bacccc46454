"""The agent's Prometheus registry.

Each stage declares its own metrics (in its own module) on this registry, and
every place that can drop, skip or retry something has a counter labelled
with the cause. /metrics serves this registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)


def render() -> bytes:
    """The Prometheus text exposition of every provex metric."""
    return generate_latest(REGISTRY)
