"""bench/eval.py at a CI-sized N: every scenario once, scored end to end through OTLP."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exporter.scenarios.lab import package_root, subprocess_env
from exporter.scenarios.library import load_library

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]


def test_eval_with_one_trial_per_scenario(tmp_path):
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "bench/eval.py", "--trials", "1", "--seed", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
        cwd=package_root(),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "eval.json").read_text())
    library = load_library()
    attacks = sum(s.kind == "attack" for s in library)
    benign = len(library) - attacks
    assert doc["trials"] == len(library) and doc["sentinel_caught_up"]
    # The library's floods (exec, unshare, connect) outrun a raw-event export to one local
    # receiver: the oldest raw events give way, counted, and the agent says so with exit 3.
    # Alerts are never shed that way: any other loss fails the run.
    drops = doc["lost_events"]["export_drops"] or {}
    assert all('signal="events"' in key and 'cause="queue_full"' in key for key in drops), drops
    assert doc["agent_exit"] == (3 if drops else 0), drops
    a, b = doc["attacks"], doc["benign"]
    assert (a["trials"], a["errors"], a["detected"]) == (attacks, 0, attacks), doc["misses"]
    assert a["technique_correct"] == a["enrichment_correct"] == f"{attacks}/{attacks}"
    assert a["in_window"]["10s"] == 1.0 and a["latency_ms"]["p50"] > 0
    assert a["other_rule_alerts"] == 0
    # False positives carry their denominators: benign trials, and the benign events seen.
    assert b["fp_trial_rate"] == f"0/{benign}" and b["events"] > benign
    assert b["fp_per_event"] == f"0/{b['events']}"
    assert doc["lost_events"]["kernel_total"] == 0
    assert set(doc["by_scenario"]) == {s.name for s in library}
    report = (out / "eval.md").read_text()
    assert "| attack detection rate |" in report and "latency_cdf.png" in report
    assert (out / "latency_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
