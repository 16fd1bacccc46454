#!/usr/bin/env python3
"""Throughput of `provex replay` to a file, per output schema; prints JSON.

The input is the soak's node mix (bench/correlate_soak.py) written in the replay format.
The baseline, measured in the same run, is decoding those lines (what a replay does before
anything else). Each mode runs `provex replay FILE --schema S --output OUT` in a child, as a
user would, and reports events/s, peak RSS, the exit code (3 means something was lost) and
the records in the output, alerts apart from events: every event the mapping has a document
for, and every alert, must be there. `ecs` and `ocsf` write one document per line;
`ecs-otlp-json` the same documents as OTLP-JSON lines (what `--schema ecs --output` wrote
before `--format`). Each mode runs once per correlation engine (`--set correlate.engine=`):
the native core and the Python reference, whose outputs must hold the same records.

    python bench/replay_bench.py [--events 100000] [--modes ecs,ecs-otlp-json,ocsf,raw,ecs-alerts-only]
                                 [--engines native,python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.correlate_soak import generate
from exporter.mapping.mapper import Mapper
from exporter.model import decode_event, encode_event

REPO = Path(__file__).resolve().parents[1]

MODES = {
    "ecs": ["--schema", "ecs"],
    "ocsf": ["--schema", "ocsf"],
    "raw": ["--schema", "raw"],
    "ecs-alerts-only": ["--schema", "ecs", "--alerts-only"],
    "ecs-otlp-json": ["--schema", "ecs", "--format", "otlp-json"],
}


def expected_documents(schema: str, lines: list[bytes]) -> int:
    """How many of the events the mapping gives a document (fork and exit have none): the
    first event of each (type, syscall) decides for the rest, which share its shape."""
    mapper = Mapper(schema, node_name="node", cluster_name="cluster", hostname="host")
    mapped: dict[tuple[str, str], bool] = {}
    count = 0
    for line in lines:
        event = decode_event(line)
        key = (event.type.value, event.syscall)
        if key not in mapped:
            mapped[key] = mapper.map(event) is not None
        count += mapped[key]
    return count


def output_records(path: Path, schema: str) -> dict[str, int]:
    """Records in the output by scope (OTLP-JSON lines) or by kind (raw lines, documents)."""
    counts: dict[str, int] = {}
    with path.open("rb") as handle:
        for line in handle:
            doc = json.loads(line)
            if "resourceLogs" not in doc:
                alert = "alert" in doc if schema == "raw" else is_alert_document(doc)
                kind = "provex.alerts" if alert else "provex.events"
                counts[kind] = counts.get(kind, 0) + 1
                continue
            for resource in doc.get("resourceLogs", []):
                for scope in resource.get("scopeLogs", []):
                    name = scope.get("scope", {}).get("name", "")
                    counts[name] = counts.get(name, 0) + len(scope.get("logRecords", []))
    return counts


def is_alert_document(doc: dict) -> bool:
    return doc.get("class_uid") == 2004 or doc.get("event", {}).get("kind") == "alert"


def run_replay(source: Path, out: Path, args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "exporter", "replay", str(source), "--output", str(out), *args]
    cmd += ["--log-level", "error"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE)
    # The child's own peak (VmHWM), read while it runs: its rusage maxrss would count the
    # pages it shared with this process before exec.
    peak_kb = 0
    while True:
        done, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            break
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    proc.returncode = exit_code = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    cpu = round(usage.ru_utime + usage.ru_stime, 2)
    return {
        "seconds": round(elapsed, 2),
        "exit_code": exit_code,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "cpu_seconds": cpu,
        "stderr_tail": stderr[-500:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--modes", default="ecs,ecs-otlp-json,raw,ecs-alerts-only", help=f"some of {','.join(MODES)}"
    )
    parser.add_argument("--engines", default="native,python", help="correlate.engine values, comma-separated")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; expected some of {list(MODES)}")

    with tempfile.TemporaryDirectory(prefix="provex-replay-bench-") as tmp:
        source = Path(tmp) / "events.jsonl"
        lines = [encode_event(event) for event in generate(args.events)]
        source.write_bytes(b"\n".join(lines) + b"\n")
        start = time.perf_counter()
        for line in lines:
            decode_event(line)
        report: dict = {
            "benchmark": "replay",
            "events": args.events,
            "baseline_decode_events_per_s": round(args.events / (time.perf_counter() - start)),
        }
        for mode in modes:
            schema = MODES[mode][1]
            expected = 0 if "--alerts-only" in MODES[mode] else args.events
            if expected and schema != "raw":
                expected = expected_documents(schema, lines)
            report[mode] = {}
            for engine in engines:
                out = Path(tmp) / f"out-{mode}-{engine}.jsonl"
                result = run_replay(source, out, [*MODES[mode], "--set", f"correlate.engine={engine}"])
                records = output_records(out, schema) if out.exists() else {}
                result.update(
                    events_per_s=round(args.events / result["seconds"]),
                    records=records,
                    expected_event_records=expected,
                    complete=records.get("provex.events", 0) == expected and result["exit_code"] == 0,
                )
                if result["exit_code"] == 0:
                    result.pop("stderr_tail")
                report[mode][engine] = result
                out.unlink(missing_ok=True)
            runs = list(report[mode].values())
            report[mode]["same_records"] = all(r["records"] == runs[0]["records"] for r in runs)
            if "native" in report[mode] and "python" in report[mode]:
                report[mode]["speedup_native_over_python"] = round(
                    report[mode]["native"]["events_per_s"] / report[mode]["python"]["events_per_s"], 2
                )
    print(json.dumps(report, indent=2))
    ok = all(report[m][e]["complete"] for m in modes for e in engines)
    return 0 if ok and all(report[m]["same_records"] for m in modes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
