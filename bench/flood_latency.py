#!/usr/bin/env python3
"""Alert latency of one container's attack while another container floods; prints JSON.

One real agent (`provex run --schema ecs --otlp-endpoint ...`, de-duplication off) watches two
runc containers at a time: a flooder and, once the flood runs, an attacker calling
unshare(CLONE_NEWUSER) N times. Floods (--floods):
  0, RATE, max   another container opens a monitored path at RATE a second (sysprobe flood)
  token          another container reads its own service-account token as fast as it can, in
                 one process and in a new process per read (a sensitive-read flood)
  self-token     the attacker itself floods its token reads while it attacks
Latency = the OTLP receiver's wall-clock arrival of the attacker's alert minus the kernel
timestamp of its decisive syscall. The baseline is the same attack with no flood, measured in the
same run. Also reported per flood: what the kernel sampled away, folded and lost, whether the
pressure valve engaged, and the agent's peak RSS. --baseline PATH runs every flood again with
another checkout's agent (e.g. the previous release) in the same run.

Needs root, BCC and runc. Usage: bench/flood_latency.py [--floods 0,100000,max,token,self-token]
[--attacks N] [--baseline PATH]
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
from bench.helpers.agent import Agent, PeakRss, rss_mb  # noqa: E402
from bench.helpers.otlp_receiver import OtlpReceiver  # noqa: E402
from exporter.scenarios.runc import ContainerSpec, Runc  # noqa: E402

CLONE_NEWUSER = 0x10000000
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
TOKEN_FLOOD = f"sysprobe flood {TOKEN} 1000000000 & while :; do cat {TOKEN} >/dev/null; done"
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
        if rate == "token":
            spec = ContainerSpec(
                ["/bin/sh", "-c", TOKEN_FLOOD], name="flood-token", files={TOKEN: "eyJ.flood\n"}
            )
            flooder = runtime.start(spec)
            time.sleep(1.0)
        elif rate not in ("0", "self-token"):
            ops = MAX_RATE_OPS * FLOOD_S if rate == "max" else int(rate) * FLOOD_S
            args = ["/bin/sysprobe", "flood", "/etc/hostname", str(int(ops))]
            if rate != "max":
                args.append(rate)
            flooder = runtime.start(ContainerSpec(args, name=f"flood-{rate}"))
            time.sleep(1.0)  # the flood is on
        script = f"i=0; while [ $i -lt {attacks} ]; do sysprobe unshare {CLONE_NEWUSER} >/dev/null; sleep {gap}; i=$((i+1)); done"
        files = {}
        if rate == "self-token":  # the attacker drowns its own attack in token reads
            script = f"( {TOKEN_FLOOD} ) & sleep 1; {script}"
            files = {TOKEN: "eyJ.self\n"}
        run = runtime.run(
            ContainerSpec(["/bin/sh", "-c", script], name=f"attack-{rate}", privileged=True, files=files),
            timeout=120,
        )
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
        "kernel_folded": sum(after.get(k, 0) - before.get(k, 0) for k in ("summarized", "repeated")),
        "kernel_lost": sum(after.get(k, 0) - before.get(k, 0) for k in ("lost_ringbuf", "lost_pending")),
        "kernel_emitted": after.get("emitted", 0) - before.get("emitted", 0),
        "pressure_engaged_times": after_metrics.get("provex_kernel_pressure_engaged_total", 0)
        - before_metrics.get("provex_kernel_pressure_engaged_total", 0),
        "agent_rss_peak_mb": round(rss.peak, 1),
    }


def run_release(repo: Path, floods: list[str], args: argparse.Namespace) -> tuple[float, list[dict]]:
    receiver = OtlpReceiver("grpc").start()
    workdir = Path(tempfile.mkdtemp(prefix="provex-flood-"))
    agent = Agent(
        workdir,
        *("--schema", "ecs", "--otlp-endpoint", receiver.endpoint),
        *("--set", "correlate.dedup_window_s=0", "--set", "enrich.kubernetes=false"),
        *(() if args.raw_events else ("--set", "output.raw_events=false")),
        command="run",
        repo=repo,
    )
    runtime = Runc(workdir / "runc")
    rows = []
    try:
        idle_rss = rss_mb(agent.process.pid)
        for flood in floods:
            rows.append(measure(agent, runtime, receiver, flood, args.attacks, args.gap_ms / 1000))
    finally:
        agent.stop()
        receiver.stop()
        runtime.close()
    return idle_rss, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--floods", "--rates", default="0,100000,200000,max,token,self-token", help="floods (see above)"
    )
    parser.add_argument("--attacks", type=int, default=20)
    parser.add_argument("--gap-ms", type=float, default=100)
    parser.add_argument(
        "--raw-events", action="store_true", help="also ship every raw event over OTLP (default: alerts only)"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout whose agent runs the same floods")
    args = parser.parse_args()
    floods = [f.strip() for f in args.floods.split(",")]
    idle_rss, rows = run_release(REPO, floods, args)
    report = {
        "benchmark": "flood_latency",
        "path": "attacker's decisive syscall (kernel timestamp) -> OTLP receiver, while a container floods",
        "raw_events_over_otlp": args.raw_events,
        "agent_rss_idle_mb": round(idle_rss, 1),
        "rows": rows,
        "cpus": os.cpu_count(),
    }
    ok = all(r["alerts"].get("n") for r in rows)
    if args.baseline:
        base_rss, base_rows = run_release(args.baseline.resolve(), floods, args)
        report["baseline"] = {
            "repo": str(args.baseline.resolve()),
            "agent_rss_idle_mb": round(base_rss, 1),
            "rows": base_rows,
        }
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
