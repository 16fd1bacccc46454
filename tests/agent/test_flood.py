"""Live: one container floods, another attacks; the attack is still seen, the flood is named.

Real kernel, real runc containers, the real agent (`provex run`, alerts only). The flooder opens
a monitored path as fast as it can (several hundred thousand times a second here); the kernel's
per-cgroup budget samples its reads away and counts them per container, so the ring never fills
with one container's noise and the other container's unshare raises its alert. Latency is
measured by bench/flood_latency.py, not here: this test judges verdicts and bounds.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from bench.helpers.agent import Agent, PeakRss, assert_clean_exit
from exporter.scenarios.runc import ContainerSpec, Runc

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


TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
CLONE_NEWUTS = 0x04000000


@pytest.fixture
def host_sleeper():
    """A host process whose namespaces a container can enter (/proc/1/ns is closed here)."""
    process = subprocess.Popen(["sleep", "120"])
    yield process.pid
    process.kill()
    process.wait()


def _log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_a_sensitive_read_flood_blinds_nobody_and_names_only_the_flooder(tmp_path, host_sleeper):
    """One Pod reads its own token as fast as it can, in one process and in a new process per
    read; three other Pods attack meanwhile (a user namespace, setns into a host process's
    namespace, a program run from a memfd). Every attack alerts; the flooder, and only it, is
    named."""
    output = tmp_path / "alerts.jsonl"
    agent = Agent(
        tmp_path,
        *("--set", "output.raw_events=false", "--set", "enrich.kubernetes=false"),
        command="run",
        output=output,
    )
    runtime = Runc(tmp_path / "runc")
    loop = f"sysprobe flood {TOKEN} 1000000000 & while :; do cat {TOKEN} >/dev/null; done"
    attacks = [
        ContainerSpec(
            ["/bin/sysprobe", "unshare", str(CLONE_NEWUSER)], name="attacker-userns", privileged=True
        ),
        ContainerSpec(
            ["/bin/sysprobe", "setns", f"/proc/{host_sleeper}/ns/uts"],
            name="attacker-setns",
            privileged=True,
            host_pid=True,
        ),
        ContainerSpec(["/bin/sysprobe", "memfd-exec", "/bin/busybox", "x", "true"], name="attacker-fileless"),
    ]
    expected = {
        "attacker-userns": "User Or Mount Namespace Created From A Container",
        "attacker-setns": "Namespace Entered From A Container",
        "attacker-fileless": "Fileless Program Executed In A Container",
    }
    try:
        flooder = runtime.start(
            ContainerSpec(["/bin/sh", "-c", loop], name="flooder", files={TOKEN: "eyJ.flood.token\n"})
        )
        time.sleep(1.5)  # the flood is on
        runs = {spec.name: runtime.run(spec) for spec in attacks}
        for name, run in runs.items():
            assert run.returncode == 0, (name, run.stderr)
        deadline = time.monotonic() + 20  # only bounds a failing test
        by_attack: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            alerts = _alerts(output)
            by_attack = {
                name: [
                    a["rule_title"]
                    for a in alerts
                    if (a.get("event") or {}).get("cgroup_id") == run.cgroup_id
                ]
                for name, run in runs.items()
            }
            if all(expected[name] in titles for name, titles in by_attack.items()):
                break
            time.sleep(0.05)
        time.sleep(1.5)  # a summary interval: the flood's own alert
        flooder.stop()
        metrics = agent.metrics()
    finally:
        status = agent.stop()
        runtime.close()
    assert_clean_exit(status, agent.stderr_path)
    for name, titles in by_attack.items():
        assert expected[name] in titles, (name, titles)
    alerts = _alerts(output)
    # Past its decisive budget (how fast this machine runs the reader loop decides whether it
    # gets there) the flood is itself an alert, and then only the flooder's.
    flood_alerts = [
        a for a in alerts if a["rule_title"] == "Container Flooded The Sensor With Decisive Syscalls"
    ]
    assert {a["event"]["container"]["id"] for a in flood_alerts} <= {flooder.cid}
    named = {
        line["container"]
        for line in _log_lines(agent.stderr_path)
        if line.get("msg", "").startswith("container flooding")
    }
    assert flooder.cid in named
    assert not named & {run.spec.container_id for run in runs.values()}  # no victim is named
    assert not any(name.startswith("cgroup:") for name in named)  # the flooder was resolved
    folded = {k: v for k, v in metrics.items() if k.startswith("provex_flood_folded_total{")}
    assert any(flooder.cid in k and v > 0 for k, v in folded.items()), folded
    # Nothing decisive was lost: the decisive ring never filled.
    lost = sum(v for k, v in metrics.items() if 'outcome="lost_ringbuf"' in k)
    assert lost == 0


# Each runs until the container's init (the test's script) exits, which ends them all.
SELF_FLOODS = {
    "token_reads": f"sysprobe flood {TOKEN} 1000000000 & while :; do cat {TOKEN} >/dev/null; done",
    "failing_execs": "while :; do sysprobe exec-flood 100000 /nonexistent >/dev/null; done",
    "udp_connects": "while :; do sysprobe repeat 100000 connect-udp 127.0.0.1 9 >/dev/null; done",
    "write_opens": "while :; do sysprobe flood-write /tmp/w 100000 >/dev/null; done",
    "fork_bursts": "while :; do sysprobe fork-flood 100000 >/dev/null; done",
}
DECISIVE = (
    "sysprobe repeat 10 unshare 0x04000000 >/dev/null; sysprobe repeat 10 setns /proc/self/ns/uts >/dev/null"
)


def _decisive_counts(events_path: Path, cgroup_id: int) -> dict[str, int]:
    """The workload's own unshare and setns records (not the runtime's, which builds the
    container with some of its own, flagged by_runtime)."""
    counts = {"unshare": 0, "setns": 0}
    for line in events_path.read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (
            event.get("cgroup_id") == cgroup_id
            and event.get("syscall") in counts
            and not event.get("by_runtime")
        ):
            counts[event["syscall"]] += 1
    return counts


@pytest.mark.parametrize("flood", sorted(SELF_FLOODS))
def test_a_pod_flooding_itself_loses_none_of_its_own_decisive_records(tmp_path, flood):
    """The Pod floods itself (its own kind of noise) and meanwhile makes 10 unshare and 10 setns
    calls; a quiet control Pod makes the same 20. Both arrive whole: decisive records have a ring
    of their own and a budget per kind, which no other kind of noise uses up."""
    agent = Agent(tmp_path, "--set", "enrich.kubernetes=false")  # provex record: every event
    runtime = Runc(tmp_path / "runc")
    script = f"( {SELF_FLOODS[flood]} ) & sleep 1.5; {DECISIVE}"
    try:
        noisy = runtime.run(
            ContainerSpec(["/bin/sh", "-c", script], name="noisy", privileged=True, files={TOKEN: "eyJ.x\n"}),
            timeout=60,
        )
        quiet = runtime.run(ContainerSpec(["/bin/sh", "-c", DECISIVE], name="quiet", privileged=True))
        assert noisy.returncode == 0, noisy.stderr
        assert quiet.returncode == 0, quiet.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _decisive_counts(agent.output, quiet.cgroup_id) != {
            "unshare": 10,
            "setns": 10,
        }:
            time.sleep(0.1)
    finally:
        status = agent.stop()
        runtime.close()
    assert_clean_exit(status, agent.stderr_path)
    assert _decisive_counts(agent.output, quiet.cgroup_id) == {"unshare": 10, "setns": 10}
    assert _decisive_counts(agent.output, noisy.cgroup_id) == {"unshare": 10, "setns": 10}, flood
