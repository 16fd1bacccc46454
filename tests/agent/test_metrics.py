"""/metrics as a scrape sees it: provex's own series, the process's, what runs
(provex_build_info), and no `*_created` timestamps."""

from __future__ import annotations

import platform
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.agent import live  # noqa: F401  (registers the agent's own metrics, as a run does)
from exporter.agent.health import HealthState, serve
from exporter.scenarios.agent import free_port


def scrape() -> dict[str, list]:
    port = free_port()
    server = serve(f"127.0.0.1:{port}", HealthState())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_metrics_carry_build_info_and_process_series_and_no_created_timestamps() -> None:
    families = scrape()
    created = sorted(s.name for samples in families.values() for s in samples if s.name.endswith("_created"))
    assert created == []
    (info,) = families["provex_build_info"]
    assert info.value == 1
    assert info.labels == {
        "version": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }
    for name in ("process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds"):
        assert families[name] and families[name][0].value > 0, name
    assert "provex_events" in families  # the agent's own counters are still there
