"""The native correlation core against the Python reference, stream by stream.

Each stream runs through both engines (`correlate.engine=python` and `native`, fresh events for
each, the default rules): every alert (its story included) and every event as the provenance
graph annotated it (resolved_path, host_path, resolution, interpreted_path, origin, carrier)
must be byte-identical. The streams: every rule fixture, the mapping records, the bundled
recording, bench/variants/*.jsonl when a run recorded them, both soak mixes
(bench/correlate_soak.py, `--soak-events` each), and any recording given on the command line
(`provex record` while `provex demo` or `bench/eval.py` runs gives the scenario library's).

Prints JSON: per stream the events, alerts and resolved paths compared and the first
difference; exits 1 when any stream differs. tests/correlate/test_native_differential.py runs
the same comparison on the built-in streams (soak at 30,000 events) in the unit suite.

    PYTHONPATH=. python bench/differential.py [--soak-events 200000] [RECORDING.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402

from bench.helpers import streams as native_streams  # noqa: E402
from exporter.config.schema import CorrelateConfig  # noqa: E402
from exporter.correlate import DEFAULT_RULES_DIR, load_rules  # noqa: E402
from exporter.correlate.engine import Correlator  # noqa: E402
from exporter.model import Event, decode_event, encode_event  # noqa: E402


def _run(engine: str, rules, events: list[Event]) -> tuple[list[bytes], list[bytes]]:
    correlator = Correlator(rules, CorrelateConfig(engine=engine))
    if correlator.engine != engine:
        raise SystemExit(f"differential: correlate.engine={engine} is not available here")
    alerts = [a for e in events for a in correlator.process(e)] + correlator.drain()
    return [msgspec.json.encode(a) for a in alerts], [encode_event(e) for e in events]


def _first_difference(ref: list[bytes], nat: list[bytes]) -> dict | None:
    for i, (a, b) in enumerate(zip(ref, nat, strict=False)):  # a shorter side is reported below
        if a != b:
            return {"index": i, "python": a.decode()[:400], "native": b.decode()[:400]}
    if len(ref) != len(nat):
        return {"index": min(len(ref), len(nat)), "python_count": len(ref), "native_count": len(nat)}
    return None


def compare(name: str, load: Callable[[], list[Event]], rules) -> dict:
    started = time.perf_counter()
    ref_alerts, ref_events = _run("python", rules, load())
    nat_alerts, nat_events = _run("native", rules, load())
    resolved = sum(1 for line in ref_events if b'"resolved_path"' in line)
    out = {
        "events": len(ref_events),
        "alerts": len(ref_alerts),
        "resolved_paths": resolved,
        "seconds": round(time.perf_counter() - started, 2),
    }
    difference = _first_difference(ref_alerts, nat_alerts)
    if difference:
        out["alert_difference"] = difference
    difference = _first_difference(ref_events, nat_events)
    if difference:
        out["event_difference"] = difference
    out["identical"] = "alert_difference" not in out and "event_difference" not in out
    return out


def _recording(path: Path) -> Callable[[], list[Event]]:
    return lambda: [decode_event(line) for line in path.read_bytes().splitlines() if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recordings", nargs="*", type=Path, help="more JSON-lines recordings to compare on")
    ap.add_argument("--soak-events", type=int, default=native_streams.SOAK_EVENTS, help="events per soak mix")
    args = ap.parse_args()
    streams = native_streams.streams()
    streams["soak/classic"] = lambda: native_streams.soak_events(args.soak_events, context=False)
    streams["soak/context"] = lambda: native_streams.soak_events(args.soak_events, context=True)
    for path in args.recordings:
        streams[f"recording/{path}"] = _recording(path)
    rules = load_rules([DEFAULT_RULES_DIR])
    report = {name: compare(name, load, rules) for name, load in streams.items()}
    differing = sorted(name for name, r in report.items() if not r["identical"])
    summary = {
        "streams": len(report),
        "events": sum(r["events"] for r in report.values()),
        "alerts": sum(r["alerts"] for r in report.values()),
        "resolved_paths": sum(r["resolved_paths"] for r in report.values()),
        "differing": differing,
    }
    big = {name: r for name, r in report.items() if not name.startswith("fixture/") or not r["identical"]}
    print(json.dumps({"summary": summary, "streams": big}, indent=2))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
