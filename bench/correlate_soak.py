"""Soak the correlator: N synthetic events (a realistic node mix) with the default rules,
through the native core and through the Python reference, in the same run.

Prints JSON, per mix (classic, and context: relative paths, chdir, dup2, links): for each
engine (each in a child process of its own, so their memory is their own) the events/s of a
baseline loop (the same generated events, no correlator) and of the correlator, RSS and graph
size sampled over the run (memory must stay flat once the window is full), alerts and
evictions; then the native/Python speed-up and whether both raised byte-identical alerts (a
difference exits 1). Event time advances 10 ms per event, so 1,000,000 events are ~2.8 hours
of input against a 10-minute window.

    python bench/correlate_soak.py [--events 1000000] [--mix both|classic|context]
                                   [--engines native,python]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from exporter.config.schema import CorrelateConfig
from exporter.correlate import build_correlator
from exporter.model import (
    ContainerInfo,
    Event,
    EventType,
    HostMount,
    PodInfo,
    ProcessInfo,
)
from exporter.runtime import tune_gc

T0 = 1_764_000_000_000_000_000
READS = [
    "/etc/passwd",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/usr/lib/libc.so.6",
    "/proc/self/status",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/tmp/cache.db",
    "/etc/ssl/certs/ca.pem",
]
EXECS = ["/bin/sh", "/usr/bin/python3", "/usr/bin/curl", "/bin/ls", "/usr/local/bin/app"]


def _containers(n: int) -> list[ContainerInfo]:
    out = []
    for i in range(n):
        mounts = [HostMount(host_path="/var/log", container_path="/host-logs")] if i % 5 == 0 else []
        pod = PodInfo(
            uid=f"uid-{i}",
            name=f"pod-{i}",
            namespace="kube-system" if i % 10 == 0 else "apps",
            service_account="default",
        )
        out.append(
            ContainerInfo(
                id=f"{i:012x}",
                runtime="containerd",
                image=f"registry/app{i % 7}:1",
                pod=pod,
                host_mounts=mounts,
            )
        )
    return out


def generate(n: int, step_ns: int = 10_000_000, seed: int = 7, context: bool = False) -> Iterator[Event]:
    """A deterministic mix: opens 55 %, connects 15 %, exec 8 %, fork 8 %, exit 7 %, rest rare syscalls,
    with a scan burst, a token chain and a download-and-execute chain injected now and then.
    `context`: a fifth of the opens become relative paths, chdir, dup2 onto stdout and links
    (the provenance graph's context work; the classic mix is what earlier runs measured)."""
    rng = random.Random(seed)
    containers = _containers(50)
    procs = {pid: ProcessInfo(pid=pid, exe=rng.choice(EXECS), ppid=pid - 1) for pid in range(1000, 3000)}
    for i in range(n):
        pid = rng.randrange(1000, 3000)
        c = containers[pid % 50]
        base = dict(
            id=f"ev{i}",
            ts_ns=T0 + i * step_ns,
            pid=pid,
            tid=pid,
            ppid=pid - 1,
            comm="app",
            container=c,
            process=procs[pid],
        )
        phase = i % 100_000
        if 50_000 <= phase < 50_030:  # a scan burst from one container
            yield Event(
                type=EventType.CONNECT,
                syscall="connect",
                family=2,
                daddr=f"10.1.0.{phase - 49_999}",
                dport=22,
                ret=-111,
                **{**base, "container": containers[3]},
            )
            continue
        r = rng.random()
        if context and r < 0.11:
            yield _context_event(rng, base)
            continue
        if r < 0.55:
            write = rng.random() < 0.1
            path = f"/tmp/f{rng.randrange(5000)}" if write else rng.choice(READS)
            yield Event(
                type=EventType.OPEN, syscall="openat", path=path, flags=0o101 if write else 0, ret=3, **base
            )
        elif r < 0.70:
            api = rng.random() < 0.02
            yield Event(
                type=EventType.CONNECT,
                syscall="connect",
                family=2,
                daddr="10.96.0.1" if api else f"10.2.{rng.randrange(4)}.{rng.randrange(1, 20)}",
                dport=443 if api else 8080,
                dest_is_apiserver=api,
                ret=0,
                **base,
            )
        elif r < 0.78:
            path = rng.choice(EXECS) if rng.random() < 0.999 else f"/tmp/f{rng.randrange(5000)}"
            yield Event(type=EventType.EXEC, syscall="execve", path=path, argv=[path, "-x"], **base)
        elif r < 0.86:
            yield Event(
                type=EventType.FORK, syscall="sched_process_fork", child_pid=rng.randrange(1000, 3000), **base
            )
        elif r < 0.93:
            yield Event(type=EventType.EXIT, syscall="sched_process_exit", **base)
        elif r < 0.98:
            yield Event(type=EventType.OPEN, syscall="openat", path="/host-logs/syslog", ret=3, **base)
        else:
            kind = rng.choice([EventType.MOUNT, EventType.SETNS, EventType.UNSHARE])
            yield Event(
                type=kind, syscall=kind.value, fstype="tmpfs", target="/mnt", nstype=0x04000000, ret=0, **base
            )


def _context_event(rng: random.Random, base: dict) -> Event:
    """Relative opens, chdir, dup2 onto stdout, symlinks: the context the graph keeps per process."""
    r = rng.random()
    if r < 0.6:
        path = rng.choice(["conf/app.yaml", "../data/db", "./cache/x", "log.txt"])
        return Event(type=EventType.OPEN, syscall="openat", path=path, dirfd=-100, ret=4, **base)
    if r < 0.8:
        path = rng.choice(["/srv/app", "/tmp", "..", "work"])
        return Event(type=EventType.CHDIR, syscall="chdir", path=path, **base)
    if r < 0.95:
        return Event(type=EventType.DUP, syscall="dup2", fd=3, ret=1, **base)
    return Event(
        type=EventType.LINK,
        syscall="symlink",
        source="/etc/hosts",
        path=f"/tmp/l{rng.randrange(500)}",
        **base,
    )


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_one(args: argparse.Namespace, engine: str, context: bool) -> dict:
    """One engine on one mix, in this process: the baseline loop, then the correlator."""
    n = args.events
    step_ns = args.step_us * 1000
    tune_gc()  # the collector settings `provex run` and `provex replay` use

    start = time.perf_counter()
    count = 0
    for _ in generate(n, step_ns, context=context):
        count += 1
    baseline_s = time.perf_counter() - start

    config = CorrelateConfig(
        window_s=args.window_s, max_nodes=args.max_nodes, max_edges=args.max_edges, engine=engine
    )
    correlator = build_correlator(config)
    every = max(1, n // args.samples)
    samples = []
    alerts = 0
    digest = hashlib.sha256()
    rss_start = _rss_mb()
    start = time.perf_counter()
    for i, ev in enumerate(generate(n, step_ns, context=context), 1):
        for alert in correlator.process(ev):
            alerts += 1
            digest.update(msgspec.json.encode(alert))
        if i % every == 0:
            nodes, edges = correlator.graph.size
            samples.append(
                {
                    "events": i,
                    "event_time_s": round(i * step_ns / 1e9),
                    "rss_mb": round(_rss_mb(), 1),
                    "graph_nodes": nodes,
                    "graph_edges": edges,
                    "elapsed_s": round(time.perf_counter() - start, 2),
                }
            )
    for alert in correlator.drain():
        alerts += 1
        digest.update(msgspec.json.encode(alert))
    elapsed = time.perf_counter() - start
    second_half = [s["rss_mb"] for s in samples[len(samples) // 2 :]]
    return {
        "engine": type(correlator).engine,
        "baseline_events_per_s": round(count / baseline_s),
        "correlator_events_per_s": round(n / elapsed),
        "correlator_us_per_event_over_baseline": round((elapsed - baseline_s) / n * 1e6, 2),
        "rss_mb_before_run": round(rss_start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb_second_half_min_max": [min(second_half, default=0), max(second_half, default=0)],
        "alerts": alerts,
        "alerts_sha256": digest.hexdigest(),
        "graph_evictions": correlator.graph.evicted,
        "samples": samples,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--step-us", type=int, default=10_000, help="event time between events (default 10 ms)")
    defaults = CorrelateConfig()
    ap.add_argument("--window-s", type=float, default=defaults.window_s)
    ap.add_argument("--max-nodes", type=int, default=defaults.max_nodes)
    ap.add_argument("--max-edges", type=int, default=defaults.max_edges)
    ap.add_argument("--mix", choices=["both", "classic", "context"], default="both")
    ap.add_argument("--context-mix", action="store_true", help="the context mix only (--mix context)")
    ap.add_argument("--engines", default="native,python", help="comma-separated: native, python")
    ap.add_argument("--one", metavar="ENGINE", help=argparse.SUPPRESS)  # a child: one engine, one mix
    args = ap.parse_args()
    mixes = ["context"] if args.context_mix else ["classic", "context"] if args.mix == "both" else [args.mix]
    if args.one:
        print(json.dumps(run_one(args, args.one, mixes[0] == "context")))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    passed = [a for a in sys.argv[1:] if a not in ("--context-mix",)]
    report: dict = {
        "events": args.events,
        "event_time_span_s": args.events * args.step_us / 1e6,
        "config": {
            "window_s": args.window_s,
            "max_nodes": args.max_nodes,
            "max_edges": args.max_edges,
            "dedup_window_s": defaults.dedup_window_s,
        },
        "mixes": {},
    }
    ok = True
    for mix in mixes:
        runs = {}
        for engine in engines:
            child = [sys.executable, __file__, *passed, "--mix", mix, "--one", engine]
            out = subprocess.run(child, stdout=subprocess.PIPE, text=True, check=True).stdout
            runs[engine] = json.loads(out)
        result: dict = {"engines": runs}
        if "native" in runs and "python" in runs:
            native, python = runs["native"], runs["python"]
            result["speedup_native_over_python"] = round(
                native["correlator_events_per_s"] / python["correlator_events_per_s"], 2
            )
            result["identical_alerts"] = native["alerts_sha256"] == python["alerts_sha256"]
            ok = ok and result["identical_alerts"] and native["engine"] == "native"
        report["mixes"][mix] = result
    print(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
