#!/usr/bin/env python3
"""Run every benchmark under bench/ in turn and print their JSON as one document.

Each script measures its own baseline in the same run (these machines are noisy) and prints
one JSON document on stdout; this runner collects them under their names, with the exit code
and the wall time of each, and exits non-zero when any script failed. The kernel and
end-to-end benchmarks need root, BCC and runc (`make bench` sets those up).

    PYTHONPATH=. python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...]

`--quick` runs each with small sizes: a smoke test of the benchmarks, not a measurement.
Nothing else should run on the machine while this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Small sizes for --quick (each script's own flags).
QUICK: dict[str, list[str]] = {
    "alert_latency": ["--alerts", "30"],
    "churn": ["--minutes", "0.5", "--idle-minutes", "0.2", "--rate", "4", "--sample-s", "5"],
    "correlate_soak": ["--events", "50000", "--samples", "5"],
    "differential": ["--soak-events", "2000"],
    "drain_bench": ["--records", "2000", "--rounds", "1"],
    "enrich_bench": ["--events", "20000", "--pods", "1000", "--repeat", "1"],
    "eval": ["--trials", "1", "--settle", "3", "--out", str(REPO / "out" / "eval-quick")],
    "export_latency": ["--alerts", "30", "--events", "2000"],
    "mapping_bench": ["--events", "2000", "--repeat", "1"],
    "replay_bench": ["--events", "3000"],
    "kernel_bench": ["--quick"],
}


def scripts() -> list[str]:
    """Every benchmark script: bench/*.py except this one."""
    return sorted(p.stem for p in BENCH.glob("*.py") if p.name != Path(__file__).name)


def run_one(name: str, quick: bool) -> dict[str, Any]:
    args = [sys.executable, str(BENCH / f"{name}.py"), *(QUICK.get(name, []) if quick else [])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    print(f"run_all: {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    # stderr passes through (progress); stdout is the script's JSON.
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env, check=False)
    entry: dict[str, Any] = {"returncode": proc.returncode, "seconds": round(time.monotonic() - started, 1)}
    try:
        entry["result"] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        entry["error"] = "no JSON on stdout"
        entry["stdout_tail"] = proc.stdout[-2000:]
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measurement")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this script (repeatable)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="skip this script")
    args = parser.parse_args()
    known = scripts()
    unknown = sorted((set(args.only or []) | set(args.skip)) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; expected some of: {', '.join(known)}")
    chosen = [n for n in known if (not args.only or n in args.only) and n not in args.skip]
    report = {name: run_one(name, args.quick) for name in chosen}
    print(json.dumps({"quick": args.quick, "benchmarks": report}, indent=2))
    return 0 if all(r["returncode"] == 0 and "result" in r for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
