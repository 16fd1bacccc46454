#!/usr/bin/env python3
"""Alert latency end to end: decisive syscall in a container -> OTLP receiver; prints JSON.

The real agent (`provex run --schema ecs --otlp-endpoint ...`) watches a runc container that
calls unshare(CLONE_NEWUSER) N times; each call is a rule match (de-duplication is switched
off so that every match is an alert). Latency = the receiver's wall-clock arrival minus the
kernel timestamp of the decisive syscall (the record's time). The baseline, measured in the same
run from the same syscalls, is the raw-event path, which is batched.

Needs root, BCC and runc. Usage: bench/alert_latency.py [--alerts N] [--protocol grpc|http/protobuf]
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

from bench.helpers.agent import Agent  # noqa: E402
from bench.helpers.otlp_receiver import OtlpReceiver  # noqa: E402
from exporter.scenarios.runc import ContainerSpec, Runc  # noqa: E402

CLONE_NEWUSER = 0x10000000


def percentiles(values_ms: list[float]) -> dict:
    values = sorted(values_ms)
    if not values:
        return {"n": 0}

    def pct(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {
        "n": len(values),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "max_ms": round(values[-1], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=20, help="pause between decisive syscalls")
    parser.add_argument("--protocol", choices=["grpc", "http/protobuf"], default="grpc")
    parser.add_argument(
        "--load",
        type=int,
        default=5000,
        help="raw events per second from another container meanwhile, every one exported (0: none)",
    )
    args = parser.parse_args()

    receiver = OtlpReceiver(args.protocol).start()
    workdir = Path(tempfile.mkdtemp(prefix="provex-latency-"))
    agent = Agent(
        workdir,
        *("--schema", "ecs", "--otlp-endpoint", receiver.endpoint, "--otlp-protocol", args.protocol),
        *("--set", "correlate.dedup_window_s=0"),
        command="run",
    )
    runtime = Runc(workdir / "runc")
    load = None
    try:
        gap = args.gap_ms / 1000
        if args.load:  # a busy neighbour: monitored opens, each one a raw event over OTLP
            seconds = args.alerts * (gap + 0.01) + 30
            load = runtime.start(
                ContainerSpec(
                    [
                        "/bin/sysprobe",
                        "flood",
                        "/etc/hostname",
                        str(int(args.load * seconds)),
                        str(args.load),
                    ],
                    name="load",
                )
            )
            time.sleep(1.0)
        script = f"i=0; while [ $i -lt {args.alerts} ]; do sysprobe unshare {CLONE_NEWUSER} >/dev/null; sleep {gap}; i=$((i+1)); done"
        run = runtime.run(
            ContainerSpec(["/bin/sh", "-c", script], name="latency", privileged=True),
            timeout=args.alerts * (gap + 1) + 60,
        )
        cid = run.spec.container_id
        time.sleep(2.5)  # the batched event path flushes within ~1 s
        metrics = agent.metrics()
        alerts, events, in_agent, leaving = [], [], [], []
        for record in receiver.records():
            body = record.body if isinstance(record.body, dict) else {}
            if body.get("container", {}).get("id") != cid:
                continue
            latency_ms = (record.arrival_wall_ns - record.time_unix_nano) / 1e6
            kind = body.get("event", {}).get("kind")
            if kind == "alert":
                alerts.append(latency_ms)
                # split at the record's creation in the agent (its observed timestamp)
                in_agent.append((record.observed_time_unix_nano - record.time_unix_nano) / 1e6)
                leaving.append((record.arrival_wall_ns - record.observed_time_unix_nano) / 1e6)
            elif body.get("event", {}).get("action") == "unshare":
                events.append(latency_ms)
    finally:
        if load is not None:
            load.stop()
        agent.stop()
        receiver.stop()
        runtime.close()
    report = {
        "benchmark": "alert_latency",
        "path": "decisive syscall (kernel timestamp) -> OTLP receiver (wall clock on arrival)",
        "protocol": args.protocol,
        "raw_event_load_per_s": args.load,
        "alerts_expected": args.alerts,
        "alert_path": percentiles(alerts),
        "agent_histograms": {
            name: {
                k.split('le="')[1].rstrip('"}'): v
                for k, v in metrics.items()
                if k.startswith(name + "_bucket")
            }
            for name in ("provex_alert_delay_seconds", "provex_ring_lag_seconds")
        },
        "alert_path_split": {
            "syscall_to_record_in_agent": percentiles(in_agent),
            "record_to_receiver": percentiles(leaving),
        },
        "baseline_batched_event_path": percentiles(events),
        # Whether raw events kept up: exported and dropped (by cause) by the agent, all containers.
        "raw_events_exported": metrics.get('provex_exported_total{signal="events"}', 0.0),
        "raw_events_dropped": {
            k.split('cause="')[1].split('"')[0]: v
            for k, v in metrics.items()
            if k.startswith("provex_export_dropped_total{") and 'signal="events"' in k
        },
        "goal": {"p95_ms": 10, "p99_ms": 25},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    return 0 if alerts else 1


if __name__ == "__main__":
    raise SystemExit(main())
