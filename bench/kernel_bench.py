#!/usr/bin/env python3
"""Kernel data-plane benchmarks; prints one JSON document.

1. overhead: ns per openat+close in a tight loop with no probes (the baseline,
   measured in the same run), with probes attached but the loop's cgroup not
   monitored, and with it monitored (every call crosses to the agent); the floor is the
   same tracepoints with empty programs. Targets: provex's added cost <= 1.2x the floor's,
   monitored <= 1.6x.
2. latency: kernel timestamp -> decoded in the agent, for a decisive syscall
   (connect, wakes the consumer) and a batched one (openat, drained on the
   interval), p50/p99.
3. drain: the highest paced rate of monitored opens `provex run --alerts-only` drains
   with zero loss, with the default flood budgets and with them off (target >= 100k/s).
4. open family, this release against --baseline (another checkout, e.g. the previous release)
   in the same run: ns per openat+close from a cgroup that is not monitored, and from a
   monitored one on a path under the prefixes (it crosses), on a path outside them (dropped by
   its spelling; since files are judged by identity, judged at the exit first), and on a
   sensitive file read over and over (one read a second crosses, the rest are counted); with
   the in-kernel cost of the enter and exit programs for each (bpf_stats).

Needs root and BCC. Usage: bench/kernel_bench.py [--quick] [--baseline PATH] [--only open_family]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.helpers.agent import Agent  # noqa: E402
from exporter.config import load_config  # noqa: E402
from exporter.probes.cgroups import find_cgroup2_mount  # noqa: E402
from exporter.scenarios.runc import build_helper  # noqa: E402

CGROUP = "kubepods/provex-bench"  # under kubepods: monitored by default


def cgroup_dir() -> Path:
    path = find_cgroup2_mount() / CGROUP
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_helper(helper: Path, args: list[str], monitored: bool) -> str:
    """Run the helper, moved into the monitored cgroup before it starts when asked."""
    procs = cgroup_dir() / "cgroup.procs"

    def enter() -> None:
        if monitored:
            procs.write_text(str(os.getpid()))

    result = subprocess.run(
        [str(helper), *args], capture_output=True, text=True, preexec_fn=enter, check=True
    )
    return result.stdout


def ns_per_op(helper: Path, n: int, monitored: bool) -> float:
    out = run_helper(helper, ["flood", "/etc/hostname", str(n)], monitored)
    return float(out.split("ns_per_op=")[1])


def start_agent(*extra: str, command: str = "record", repo: Path = REPO) -> Agent:
    """The real agent, writing to /dev/null: the benchmarks read its /metrics."""
    return Agent(
        Path(tempfile.mkdtemp(prefix="provex-bench-agent-")),
        *extra,
        command=command,
        output=os.devnull,
        repo=repo,
    )


# The floor: the same two tracepoints the loop's openat hits, with programs that do nothing.
EMPTY_PROGRAMS = """
import sys
from bcc import BPF
BPF(text=b"TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return 0; }"
         b"TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return 0; }")
print("attached", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def empty_programs():
    """BCC needs the distribution's interpreter (python3-bpfcc): run the floor there."""
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", EMPTY_PROGRAMS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "attached"
        yield
    finally:
        proc.communicate("", timeout=30)


def bench_overhead(helper: Path, n: int, rounds: int) -> dict:
    """Rounds of baseline / empty programs / provex: the machine is noisy, so each round has
    its own baseline. provex runs with its defaults (a monitored flood is sampled by its
    container's budget past 10k/s) and with the budgets off (every call crosses)."""
    keys = ("no_probes", "empty_programs", "not_monitored", "monitored", "monitored_every_call")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(rounds):
        samples["no_probes"].append(ns_per_op(helper, n, monitored=False))
        with empty_programs():
            samples["empty_programs"].append(ns_per_op(helper, n, monitored=False))
        agent = start_agent()
        try:
            samples["not_monitored"].append(ns_per_op(helper, n, monitored=False))
            samples["monitored"].append(ns_per_op(helper, n, monitored=True))
        finally:
            agent.stop()
        agent = start_agent("--set", "probes.flood_read_rate=0", "--set", "probes.flood_event_rate=0")
        try:
            samples["monitored_every_call"].append(ns_per_op(helper, n, monitored=True))
        finally:
            agent.stop()
    median = {k: statistics.median(v) for k, v in samples.items()}
    base = median["no_probes"]
    floor_added = median["empty_programs"] - base
    added = (median["not_monitored"] - base) / floor_added if floor_added > 0 else None
    return {
        "ns_per_op_median": {k: round(v, 1) for k, v in median.items()},
        "ns_per_op_all": {k: [round(x) for x in v] for k, v in samples.items()},
        "ratio_empty_programs": round(median["empty_programs"] / base, 3),
        "ratio_not_monitored": round(median["not_monitored"] / base, 3),
        "added_cost_not_monitored_vs_floor": round(added, 3) if added is not None else None,
        "ratio_monitored": round(median["monitored"] / base, 3),
        "ratio_monitored_every_call": round(median["monitored_every_call"] / base, 3),
        "targets": {"added_cost_not_monitored_vs_floor": 1.2, "ratio_monitored_every_call": 1.6},
        "loop_calls": n,
        "rounds": rounds,
    }


def _prog_stats() -> dict[str, tuple[int, int]]:
    out = json.loads(subprocess.check_output(["bpftool", "prog", "show", "-j"]))
    return {p["name"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out if "name" in p}


def bench_program_cost(helper: Path, n: int) -> dict:
    """ns per run of the openat enter/exit programs (kernel.bpf_stats_enabled), per path through
    them: the in-kernel cost alone, independent of what else the machine is doing."""
    if shutil.which("bpftool") is None:
        return {"skipped": "bpftool not installed (apt: bpftool)"}
    names = ("tracepoint__syscalls__sys_enter_openat", "tracepoint__syscalls__sys_exit_openat")
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    agent = start_agent()
    result = {}
    try:
        for label, path, monitored in (
            ("not_monitored", "/etc/hostname", False),
            ("monitored_sent", "/etc/hostname", True),
            ("monitored_path_filtered", "/usr/lib/os-release", True),
        ):
            before = _prog_stats()
            run_helper(helper, ["flood", path, str(n)], monitored)
            after = _prog_stats()
            result[label] = {
                name.rsplit("_", 2)[-2] + "_ns": round(
                    (after[name][0] - before[name][0]) / max(1, after[name][1] - before[name][1]), 1
                )
                for name in names
            }
    finally:
        agent.stop()
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text("0")
    return result


OPEN_CASES = (  # (label, path, monitored cgroup)
    ("not_monitored", "/etc/hostname", False),
    ("monitored_path_sent", "/etc/hostname", True),
    ("monitored_path_filtered", "/usr/lib/os-release", True),
    ("monitored_sensitive_repeated", "/etc/shadow", True),
)


def bench_open_family(helper: Path, n: int, rounds: int, baseline: Path | None) -> dict:
    """ns per openat+close for each case of OPEN_CASES, with this release's agent and, when
    given, the baseline checkout's, round after round in one run (each round has its own
    no-probes baseline), and the programs' in-kernel cost per run (bpf_stats)."""
    releases = {"this": REPO} | ({"baseline": baseline.resolve()} if baseline else {})
    samples: dict[str, dict[str, list[float]]] = {r: {c[0]: [] for c in OPEN_CASES} for r in releases}
    no_probes: list[float] = []
    program: dict[str, dict[str, dict[str, float]]] = {r: {} for r in releases}
    names = ("tracepoint__syscalls__sys_enter_openat", "tracepoint__syscalls__sys_exit_openat")
    stats_on = shutil.which("bpftool") is not None
    for _ in range(rounds):
        no_probes.append(ns_per_op(helper, n, monitored=False))
        for release, repo in releases.items():
            agent = start_agent(repo=repo)
            if stats_on:
                Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
            try:
                for label, path, monitored in OPEN_CASES:
                    before = _prog_stats() if stats_on else {}
                    out = run_helper(helper, ["flood", path, str(n)], monitored)
                    samples[release][label].append(float(out.split("ns_per_op=")[1]))
                    if stats_on:
                        after = _prog_stats()
                        program[release][label] = {
                            name.rsplit("_", 2)[-2] + "_ns": round(
                                (after[name][0] - before[name][0]) / max(1, after[name][1] - before[name][1]),
                                1,
                            )
                            for name in names
                        }
            finally:
                agent.stop()
                if stats_on:
                    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("0")
    base = statistics.median(no_probes)
    median = {r: {c: statistics.median(v) for c, v in cases.items()} for r, cases in samples.items()}
    report: dict = {
        "ns_per_op_no_probes": round(base, 1),
        "ns_per_op_median": {r: {c: round(v, 1) for c, v in m.items()} for r, m in median.items()},
        "added_ns_median": {r: {c: round(v - base, 1) for c, v in m.items()} for r, m in median.items()},
        "program_ns_per_run_last_round": program,
        "releases": {r: str(p) for r, p in releases.items()},
        "loop_calls": n,
        "rounds": rounds,
    }
    if baseline:
        report["this_vs_baseline"] = {
            c: round(median["this"][c] / median["baseline"][c], 3) for c in median["this"]
        }
    return report


def bench_latency(helper: Path, count: int) -> dict:
    """In-process: the live source's decode time minus the kernel timestamp."""
    from exporter.probes.loader import Probes
    from exporter.source.live import LiveSource

    probes = Probes(load_config(None, environ={}).probes)
    source = LiveSource(probes)
    decoded_at: dict[str, int] = {}
    original = source.decoder.decode

    def timed(data: int, size: int):  # stamp each record as it is decoded
        record = original(data, size)
        if hasattr(record, "id"):
            decoded_at[record.id] = time.time_ns()
        return record

    source.decoder.decode = timed  # type: ignore[method-assign]
    latencies: dict[str, list[float]] = {"connect": [], "openat": []}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_all() -> None:  # keep the backlog empty
        while True:
            try:
                listener.accept()[0].close()
            except OSError:
                return

    done = threading.Event()
    events = []

    def consume() -> None:  # the agent's loop: poll, decode, repeat
        while not done.is_set():
            events.extend(source.poll())

    threading.Thread(target=accept_all, daemon=True).start()
    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        for _ in range(count):
            run_helper(helper, ["connect", "127.0.0.1", str(port)], monitored=True)
            run_helper(helper, ["openat2", "/etc/hostname"], monitored=True)
        time.sleep(0.1)
    finally:
        done.set()
        consumer.join()
        listener.close()
        probes.close()
    for event in events:
        if event.comm == "sysprobe" and event.syscall in ("connect", "openat2"):
            key = "connect" if event.syscall == "connect" else "openat"
            latencies[key].append((decoded_at[event.id] - event.ts_ns) / 1000)

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else float("nan")

    return {
        kind: {
            "n": len(v),
            "p50_us": pct(v, 0.5),
            "p99_us": pct(v, 0.99),
            "max_us": round(max(v), 1) if v else None,
        }
        for kind, v in latencies.items()
    } | {"note": "connect wakes the consumer; openat is batched until the drain interval (5 ms default)"}


def bench_drain(helper: Path, rates: list[int], seconds: float) -> dict:
    """`provex run --alerts-only` (the SIEM mode: every event correlated, alerts out) while one
    container opens a monitored file at each paced rate: with the default flood budgets (what
    a node does: one container is sampled past 10k reads/s) and with them off (what the agent
    itself drains; past that the ring buffer fills and records are lost)."""
    configs = {
        "defaults": [],
        "flood_budgets_off": ["--set", "probes.flood_read_rate=0", "--set", "probes.flood_event_rate=0"],
    }
    report: dict = {"command": "provex run --alerts-only", "target_per_s": 100_000}
    for name, extra in configs.items():
        results = []
        agent = start_agent("--alerts-only", *extra, command="run")
        try:
            for rate in rates:
                n = int(rate * seconds)
                before = {
                    c: agent.kernel("openat", c)
                    for c in ("emitted", "lost_ringbuf", "lost_pending", "sampled", "shed")
                }
                run_helper(helper, ["flood", "/etc/hostname", str(n), str(rate)], monitored=True)
                time.sleep(0.5)  # let the agent drain what is queued before reading its counters
                got = {c: int(agent.kernel("openat", c) - v) for c, v in before.items()}
                results.append(
                    {
                        "rate_per_s": rate,
                        "calls": n,
                        "emitted": got["emitted"],
                        "lost": got["lost_ringbuf"] + got["lost_pending"],
                        "sampled_or_shed": got["sampled"] + got["shed"],
                    }
                )
        finally:
            agent.stop()
        zero_loss = [r["rate_per_s"] for r in results if r["lost"] == 0]
        report[name] = {"runs": results, "max_zero_loss_rate_per_s": max(zero_loss) if zero_loss else 0}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke)")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare the open family with")
    parser.add_argument("--only", choices=("open_family",), help="run one part only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root"}))
        return 1
    helper = build_helper(Path(tempfile.mkdtemp(prefix="provex-bench-")))
    rounds, n = (2, 50_000) if args.quick else (5, 300_000)
    open_family = bench_open_family(helper, n, rounds, args.baseline)
    if args.only == "open_family":
        print(json.dumps({"benchmark": "kernel", "open_family": open_family}, indent=2))
        return 0
    report = {
        "open_family": open_family,
        "benchmark": "kernel",
        "overhead": bench_overhead(helper, n, rounds),
        "program_cost": bench_program_cost(helper, 100_000),
        "latency": bench_latency(helper, 50 if args.quick else 300),
        "drain": bench_drain(
            helper, [10_000, 25_000, 50_000, 100_000, 200_000] if not args.quick else [50_000], 2.0
        ),
    }
    print(json.dumps(report, indent=2))
    with contextlib.suppress(OSError):
        cgroup_dir().rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
