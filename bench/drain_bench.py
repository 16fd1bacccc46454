#!/usr/bin/env python3
"""Draining a ring buffer into Events: the compiled drain against the Python reference, in one
run; prints JSON.

Both consumers run inside LiveSource (its `_drain`, what every poll does per ring) over the
same records in a ring buffer in user memory laid out as the kernel's (bench/helpers/rings.py:
the consumer reads it exactly as it reads a BPF ring buffer's pages). `python` is
bpfsys.RingBuffer calling live.Decoder per record; `native` is exporter/source/_drain.pyx.
Each round fills the ring with the same records and drains it whole with each consumer in turn;
the best round of each is kept (the machine is noisy). `records_per_s` is wall time,
`cpu_ns_per_record` the process's CPU time. The mix is a node's: opens, forks and exits, execs
with argv, connects (the kernel side is not measured here: bench/kernel_bench.py).

    python bench/drain_bench.py [--records 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.helpers.rings import MemoryProbes, MemoryRing, random_record
from exporter.config.schema import ProbesConfig
from exporter.probes.layout import SYSCALLS, Limits
from exporter.source.live import LiveSource

MIX = {"openat": 55, "fork": 12, "exit": 12, "execve": 8, "connect": 5, "chdir": 4, "dup2": 4}


def records(count: int, limits: Limits) -> list[bytes]:
    rng = random.Random(23)
    ids = {row.name: index for index, row in enumerate(SYSCALLS)}
    names = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [random_record(rng, limits, sc=ids[name]) for name in names]


def drain_once(source: LiveSource, ring: MemoryRing, batch: list[bytes]) -> tuple[int, int, int]:
    """Fill the ring, drain it whole: (events, wall ns, CPU ns)."""
    for record in batch:
        if ring.write(record) is None:
            raise SystemExit(f"the ring ({ring.size} bytes) is too small for {len(batch)} records")
    source._deadline = time.monotonic_ns() + 600 * 10**9  # poll() sets it; a drain whole here
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    events = source._drain(source._bulk, len(batch))
    return len(events), time.perf_counter_ns() - wall, time.process_time_ns() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5, help="fill-and-drain rounds; the best is kept")
    args = parser.parse_args()
    limits = Limits()
    batch = records(args.records, limits)
    size = 1 << max(20, (sum(len(r) + 16 for r in batch)).bit_length())
    sides = {}
    for mode in ("python", "native"):
        config = ProbesConfig(drain=mode, drain_max_records=args.records, drain_max_ms=600_000)
        rings = MemoryRing(4096 * 4), MemoryRing(size)
        source = LiveSource(MemoryProbes(config, *rings, limits))
        if bool(source._compiled) != (mode == "native"):
            raise SystemExit("the compiled drain is not built: `python hatch_build.py`")
        sides[mode] = (source, rings)
    best: dict[str, tuple[int, int]] = {}
    for _ in range(args.rounds):
        for mode, (source, rings) in sides.items():
            events, wall, cpu = drain_once(source, rings[1], batch)
            if events != len(batch):
                raise SystemExit(f"{mode}: {events} events of {len(batch)} records")
            if mode not in best or wall < best[mode][0]:
                best[mode] = (wall, cpu)
    report: dict = {"benchmark": "drain", "records": len(batch), "rounds": args.rounds}
    for mode, (wall, cpu) in best.items():
        report[mode] = {
            "records_per_s": round(len(batch) / wall * 1e9),
            "wall_ns_per_record": round(wall / len(batch)),
            "cpu_ns_per_record": round(cpu / len(batch)),
        }
    report["speedup"] = round(best["python"][0] / best["native"][0], 2)
    for source, rings in sides.values():
        source.close()
        for ring in rings:
            ring.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
