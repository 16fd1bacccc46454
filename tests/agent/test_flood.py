"""Live: one container floods, another attacks; the attack is still seen, the flood is named.

Real kernel, real runc containers, the real agent (`provex run`, alerts only). The flooder opens
a monitored path as fast as it can (several hundred thousand times a second here); the kernel's
per-cgroup budget samples its reads away and counts them per container, so the ring never fills
with one container's noise and the other container's unshare raises its alert. Latency is
measured by bench/flood_latency.py, not here: this test judges verdicts and bounds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from exporter.scenarios.runc import ContainerSpec, Runc
from tests.helpers.agent import Agent, PeakRss, assert_clean_exit

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

CLONE_NEWUSER = 0x10000000
# The agent's memory under any flood: drains are bounded (probes.drain_max_records), so a
# flood adds at most a few batches of events to the idle footprint.
RSS_GROWTH_BOUND_MB = 64


def _alerts(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                break  # a line still being written
            if "alert" in record:
                out.append(record["alert"])
    return out


def test_a_flood_does_not_hide_another_containers_attack(tmp_path):
    output = tmp_path / "alerts.jsonl"
    agent = Agent(
        tmp_path,
        *("--set", "output.raw_events=false", "--set", "enrich.kubernetes=false"),
        command="run",
        output=output,
    )
    runtime = Runc(tmp_path / "runc")
    try:
        with PeakRss(agent.process.pid) as rss:
            flooder = runtime.start(
                ContainerSpec(["/bin/sysprobe", "flood", "/etc/hostname", "3000000"], name="flooder")
            )
            time.sleep(1.0)  # the flood is on
            attack = runtime.run(
                ContainerSpec(
                    ["/bin/sysprobe", "unshare", str(CLONE_NEWUSER)], name="attacker", privileged=True
                )
            )
            assert attack.returncode == 0, attack.stderr
            deadline = time.monotonic() + 20  # only bounds a failing test
            mine = []
            while not mine and time.monotonic() < deadline:
                mine = [
                    a for a in _alerts(output) if (a.get("event") or {}).get("cgroup_id") == attack.cgroup_id
                ]
                time.sleep(0.05)
            flooder.stop()
        metrics = agent.metrics()
    finally:
        status = agent.stop()
        runtime.close()
    assert_clean_exit(status, agent.stderr_path)  # sampling is a policy, not a loss
    assert [a["rule_title"] for a in mine] == ["User Or Mount Namespace Created From A Container"]
    # The flood was sampled in the kernel, counted and named: a metric and a log line per interval.
    sampled = {k: v for k, v in metrics.items() if k.startswith("provex_flood_sampled_total{")}
    assert any(flooder.cid in k and v > 0 for k, v in sampled.items()), sampled
    lines = [
        json.loads(line)
        for line in (tmp_path / "agent.stderr").read_text().splitlines()
        if line.startswith("{")
    ]
    named = [line for line in lines if line.get("msg", "").startswith("container flooding")]
    assert flooder.cid in {line["container"] for line in named}
    assert attack.spec.container_id not in {
        line["container"] for line in named
    }  # its events all went through
    # Nothing of the attacker's was lost: the ring never filled.
    lost = sum(v for k, v in metrics.items() if 'outcome="lost_ringbuf"' in k)
    assert lost == 0
    idle = rss.samples[0]
    assert rss.peak - idle < RSS_GROWTH_BOUND_MB, (idle, rss.peak)
