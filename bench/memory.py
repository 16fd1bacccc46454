#!/usr/bin/env python3
"""Memory of `provex run`: idle and under load, total and anonymous RSS; prints JSON.

The real agent (`provex run --schema ecs --otlp-endpoint ...`, raw events exported too;
`--alerts-only`: alerts only) on this host: RSS after it settles idle, then sampled while
containers run the scenario library's workloads and a neighbour opens monitored files at --load
events/s. The agent and any child process it runs (none today; releases before this one ran raw
events through a second interpreter) are reported with their total (VmRSS) and anonymous
(RssAnon) RSS, and the sum. The baseline, measured in the same run, is a bare interpreter of
the same venv.

Needs root, BCC and runc. Usage: bench/memory.py [--load 5000] [--seconds 30] [--alerts-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.helpers.agent import Agent  # noqa: E402
from bench.helpers.otlp_receiver import OtlpReceiver  # noqa: E402
from exporter.scenarios.runc import ContainerSpec, Runc  # noqa: E402


def rss(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return {"total_mb": round(fields.get("VmRSS", 0), 1), "anon_mb": round(fields.get("RssAnon", 0), 1)}


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def footprint(agent_pid: int) -> dict[str, dict[str, float]]:
    out = {"agent": rss(agent_pid)}
    for n, pid in enumerate(children(agent_pid)):
        out[f"child_{n}"] = rss(pid)
    out["sum"] = {k: round(sum(p[k] for p in out.values()), 1) for k in ("total_mb", "anon_mb")}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=5000, help="monitored opens per second from a neighbour")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load runs")
    parser.add_argument("--alerts-only", action="store_true", help="raw events not exported: the SIEM mode")
    parser.add_argument("--agent-arg", action="append", default=[], help="extra agent argument (repeatable)")
    args = parser.parse_args()

    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    time.sleep(1.0)
    baseline = rss(bare.pid)
    bare.kill()
    receiver = OtlpReceiver("grpc").start()
    workdir = Path(tempfile.mkdtemp(prefix="provex-memory-"))
    mode = ["--alerts-only"] if args.alerts_only else []
    agent = Agent(
        workdir,
        "--schema",
        "ecs",
        "--otlp-endpoint",
        receiver.endpoint,
        *mode,
        *args.agent_arg,
        command="run",
    )
    runtime = Runc(workdir / "runc")
    samples: list[dict] = []
    try:
        time.sleep(10.0)  # settle: start-up done, caches filled from /proc
        idle = footprint(agent.process.pid)
        stop = threading.Event()

        def workloads() -> None:  # containers coming and going, as a node has them
            i = 0
            while not stop.is_set():
                script = "cat /etc/passwd >/dev/null; ls / >/dev/null; wget -q -O /dev/null http://127.0.0.1:1 || true"
                runtime.run(ContainerSpec(["/bin/sh", "-c", script], name=f"work-{i}"))
                i += 1

        load = runtime.start(
            ContainerSpec(
                [
                    "/bin/sysprobe",
                    "flood",
                    "/etc/hostname",
                    str(int(args.load * (args.seconds + 5))),
                    str(args.load),
                ],
                name="load",
            )
        )
        worker = threading.Thread(target=workloads, daemon=True)
        worker.start()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            time.sleep(1.0)
            samples.append(footprint(agent.process.pid))
        stop.set()
        worker.join(timeout=30)
        load.stop()
    finally:
        agent.stop()
        receiver.stop()
        runtime.close()
    second_half = samples[len(samples) // 2 :]
    report = {
        "benchmark": "memory",
        "baseline_bare_interpreter": baseline,
        "idle": idle,
        "raw_events_exported": not args.alerts_only,
        "agent_args": args.agent_arg,
        "under_load": {
            "load_events_per_s": args.load,
            "seconds": args.seconds,
            "peak_sum_total_mb": max(s["sum"]["total_mb"] for s in samples),
            "sum_total_mb_each_second": [s["sum"]["total_mb"] for s in samples],
            "steady_second_half": {
                "sum_total_mb": [
                    min(s["sum"]["total_mb"] for s in second_half),
                    max(s["sum"]["total_mb"] for s in second_half),
                ],
                "sum_anon_mb": [
                    min(s["sum"]["anon_mb"] for s in second_half),
                    max(s["sum"]["anon_mb"] for s in second_half),
                ],
                "agent_total_mb": max(s["agent"]["total_mb"] for s in second_half),
                "children_total_mb": max(
                    sum(v["total_mb"] for k, v in s.items() if k.startswith("child_")) for s in second_half
                ),
            },
        },
        "target": {"idle_total_mb": 48 if args.alerts_only else 64, "under_load_total_mb": 96},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
