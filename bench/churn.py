#!/usr/bin/env python3
"""Memory under container churn: `provex run --alerts-only` while containers start and stop at
--rate per second for --minutes, then idle for --idle-minutes; prints JSON.

Each container is a short workload (a shell that reads a file, lists a directory, tries a
connection and exits), started through runc at a kubelet-shaped cgroup path, so every one is a
new cgroup, new processes, new links made by runc, and a removed cgroup. The agent's resident
memory (VmRSS) is sampled every --sample-s seconds: the curve, its plateau (the last third's
range), its slope over that third, and what is left once the churn stops.

--repo runs the agent of another checkout (a baseline release) the same way, in the same run:
`bench/churn.py --minutes 7 --repo /path/to/old-checkout`.

Needs root, BCC and runc. Usage: bench/churn.py [--rate 10] [--minutes 30] [--idle-minutes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.helpers.agent import Agent, rss_mb  # noqa: E402
from exporter.scenarios.runc import ContainerSpec, Runc  # noqa: E402

WORKLOAD = "cat /etc/passwd >/dev/null; ls / >/dev/null; wget -q -O /dev/null -T 1 http://127.0.0.1:1 || true"


def churn(runtime: Runc, rate: float, stop: threading.Event, started: list[int]) -> None:
    """Start containers at `rate` per second on a few threads (a runc start takes a while)."""
    lock = threading.Lock()
    period = 1.0 / rate

    def worker(offset: float) -> None:
        next_at = time.monotonic() + offset
        while not stop.is_set():
            with lock:
                i = started[0]
                started[0] += 1
            try:
                runtime.run(ContainerSpec(["/bin/sh", "-c", WORKLOAD], name=f"churn-{i}"), timeout=30)
            except Exception:  # a failed start is counted, the churn goes on
                started[1] += 1
            next_at += period * THREADS
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=worker, args=(i * period,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=60)


THREADS = 4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="containers started per second")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the churn runs")
    parser.add_argument("--idle-minutes", type=float, default=3.0, help="how long to watch after it stops")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose agent runs")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="provex-churn-"))
    agent = Agent(
        workdir,
        "--alerts-only",
        "--set",
        "enrich.kubernetes=false",
        command="run",
        output=os.devnull,
        repo=args.repo.resolve(),
    )
    runtime = Runc(workdir / "runc")
    curve: list[tuple[float, float]] = []
    started = [0, 0]  # containers started, failed starts
    stop = threading.Event()
    t0 = time.monotonic()
    try:
        time.sleep(5.0)
        idle_before = rss_mb(agent.process.pid)
        worker = threading.Thread(target=churn, args=(runtime, args.rate, stop, started), daemon=True)
        worker.start()
        end = t0 + 5.0 + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(args.sample_s)
            curve.append((round(time.monotonic() - t0, 1), round(rss_mb(agent.process.pid), 1)))
        stop.set()
        worker.join(timeout=120)
        churned_s = time.monotonic() - t0 - 5.0
        end = time.monotonic() + args.idle_minutes * 60
        after: list[tuple[float, float]] = []
        while time.monotonic() < end:
            time.sleep(args.sample_s)
            after.append((round(time.monotonic() - t0, 1), round(rss_mb(agent.process.pid), 1)))
        metrics = agent.metrics()
    finally:
        agent.stop()
        runtime.close()
    last_third = [mb for _, mb in curve[len(curve) * 2 // 3 :]] or [0.0]
    span_s = (curve[-1][0] - curve[len(curve) * 2 // 3][0]) if len(curve) > 3 else 0.0
    slope = (last_third[-1] - last_third[0]) / (span_s / 60) if span_s else 0.0
    report = {
        "benchmark": "churn",
        "repo": str(args.repo.resolve()),
        "rate_per_s": args.rate,
        "containers_started": started[0],
        "failed_starts": started[1],
        "achieved_rate_per_s": round(started[0] / churned_s, 2) if churned_s else 0,
        "rss_mb_idle_before": round(idle_before, 1),
        "rss_mb_curve": curve,
        "rss_mb_plateau_last_third": [min(last_third), max(last_third)],
        "rss_mb_per_minute_last_third": round(slope, 2),
        "rss_mb_peak": max(mb for _, mb in curve) if curve else 0,
        "rss_mb_after_idle": after[-1][1] if after else None,
        "rss_mb_idle_curve": after,
        "containers_released": metrics.get("provex_containers_released_total", 0),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
