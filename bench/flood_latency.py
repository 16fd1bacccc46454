#!/usr/bin/env python3
"""Alert latency of one container's attack while another container floods; prints JSON.

One real agent (`provex run --schema ecs --otlp-endpoint ...`, de-duplication off) watches two
runc containers at a time: a flooder opening a monitored path at a given rate (sysprobe flood)
and, once the flood runs, an attacker calling unshare(CLONE_NEWUSER) N times. Latency = the OTLP
receiver's wall-clock arrival of the attacker's alert minus the kernel timestamp of its decisive
syscall. The baseline is the same attack with no flood, measured in the same run. Also reported
per rate: what the kernel sampled away and lost, whether the pressure valve engaged, and the
agent's peak RSS.

Needs root, BCC and runc. Usage: bench/flood_latency.py [--rates 0,100000,200000,max] [--attacks N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.alert_latency import percentiles  # noqa: E402
from exporter.scenarios.runc import ContainerSpec, Runc  # noqa: E402
from tests.helpers.agent import Agent, PeakRss, rss_mb  # noqa: E402
from tests.helpers.otlp_receiver import OtlpReceiver  # noqa: E402

CLONE_NEWUSER = 0x10000000
FLOOD_S = 8.0
MAX_RATE_OPS = 400_000  # sysprobe's unpaced loop here: enough ops to last the flood


def _kernel(agent: Agent) -> dict[str, float]:
    totals: dict[str, float] = {}
    for key, value in agent.metrics().items():
        if key.startswith("provex_kernel_events_total{") and "outcome=" in key:
            outcome = key.split('outcome="', 1)[1].split('"', 1)[0]
            totals[outcome] = totals.get(outcome, 0.0) + value
    return totals


def measure(agent: Agent, runtime: Runc, receiver: OtlpReceiver, rate: str, attacks: int, gap: float) -> dict:
    before = _kernel(agent)
    before_metrics = agent.metrics()
    with PeakRss(agent.process.pid) as rss:
        flooder = None
        if rate != "0":
            ops = MAX_RATE_OPS * FLOOD_S if rate == "max" else int(rate) * FLOOD_S
            args = ["/bin/sysprobe", "flood", "/etc/hostname", str(int(ops))]
            if rate != "max":
                args.append(rate)
            flooder = runtime.start(ContainerSpec(args, name=f"flood-{rate}"))
            time.sleep(1.0)  # the flood is on
        script = f"i=0; while [ $i -lt {attacks} ]; do sysprobe unshare {CLONE_NEWUSER} >/dev/null; sleep {gap}; i=$((i+1)); done"
        run = runtime.run(ContainerSpec(["/bin/sh", "-c", script], name=f"attack-{rate}", privileged=True))
        flood_out = flooder.stop().stdout.strip() if flooder is not None else ""
        time.sleep(2.0)  # late alerts still count
    after = _kernel(agent)
    after_metrics = agent.metrics()
    latencies = []
    for record in receiver.records():
        body = record.body if isinstance(record.body, dict) else {}
        if (
            body.get("container", {}).get("id") == run.spec.container_id
            and body.get("event", {}).get("kind") == "alert"
        ):
            latencies.append((record.arrival_wall_ns - record.time_unix_nano) / 1e6)
    return {
        "flood_rate_per_s": rate,
        "flooder": flood_out,
        "alerts": percentiles(latencies),
        "alerts_expected": attacks,
        "kernel_sampled": after.get("sampled", 0) - before.get("sampled", 0),
        "kernel_lost": sum(after.get(k, 0) - before.get(k, 0) for k in ("lost_ringbuf", "lost_pending")),
        "kernel_emitted": after.get("emitted", 0) - before.get("emitted", 0),
        "pressure_engaged_times": after_metrics.get("provex_kernel_pressure_engaged_total", 0)
        - before_metrics.get("provex_kernel_pressure_engaged_total", 0),
        "agent_rss_peak_mb": round(rss.peak, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0,100000,200000,max", help="flood rates per second, or max")
    parser.add_argument("--attacks", type=int, default=20)
    parser.add_argument("--gap-ms", type=float, default=100)
    parser.add_argument(
        "--raw-events", action="store_true", help="also ship every raw event over OTLP (default: alerts only)"
    )
    args = parser.parse_args()

    receiver = OtlpReceiver("grpc").start()
    workdir = Path(tempfile.mkdtemp(prefix="provex-flood-"))
    agent = Agent(
        workdir,
        *("--schema", "ecs", "--otlp-endpoint", receiver.endpoint),
        *("--set", "correlate.dedup_window_s=0", "--set", "enrich.kubernetes=false"),
        *(() if args.raw_events else ("--set", "output.raw_events=false")),
        command="run",
    )
    runtime = Runc(workdir / "runc")
    rows = []
    try:
        idle_rss = rss_mb(agent.process.pid)
        for rate in args.rates.split(","):
            rows.append(measure(agent, runtime, receiver, rate.strip(), args.attacks, args.gap_ms / 1000))
    finally:
        agent.stop()
        receiver.stop()
        runtime.close()
    report = {
        "benchmark": "flood_latency",
        "path": "attacker's decisive syscall (kernel timestamp) -> OTLP receiver, while another container floods",
        "raw_events_over_otlp": args.raw_events,
        "agent_rss_idle_mb": round(idle_rss, 1),
        "rows": rows,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    return 0 if all(r["alerts"].get("n") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
