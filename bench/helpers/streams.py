"""The event streams the native core is compared with the Python reference on: every rule
fixture, the mapping records, the bundled recording, the held-out variant recordings when
there are any, and the soak streams of bench/correlate_soak.py (both mixes). Each call
builds fresh events (the correlator annotates them in place), so the two engines never
share one."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from exporter.model import Event, decode_event

REPO = Path(__file__).resolve().parents[2]
RULE_FIXTURES = REPO / "exporter" / "correlate" / "rules" / "fixtures"
RECORDING = REPO / "exporter" / "samples" / "recording.jsonl"
MAPPING_RECORDS = REPO / "tests" / "fixtures" / "mapping" / "records.json"
VARIANT_RECORDINGS = REPO / "bench" / "variants"  # *.jsonl, when a run recorded them
SOAK_EVENTS = 30_000


def _jsonl(path: Path) -> Callable[[], list[Event]]:
    return lambda: [decode_event(line) for line in path.read_bytes().splitlines() if line.strip()]


def _mapping_records() -> list[Event]:
    raw = json.loads(MAPPING_RECORDS.read_text())
    return [
        msgspec.convert(body, Event)
        for name, wrapped in raw.items()
        if not name.startswith("_")
        for kind, body in wrapped.items()
        if kind == "event"
    ]


def soak_events(n: int, context: bool) -> list[Event]:
    """The first n events of bench/correlate_soak.py's mix (context: its context mix)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import correlate_soak
    finally:
        sys.path.pop(0)
    return list(correlate_soak.generate(n, context=context))


def _soak(context: bool, n: int = SOAK_EVENTS) -> Callable[[], list[Event]]:
    return lambda: soak_events(n, context)


def streams() -> dict[str, Callable[[], list[Event]]]:
    out: dict[str, Callable[[], list[Event]]] = {}
    for case in sorted(RULE_FIXTURES.glob("*/*/*.jsonl")):
        out[f"fixture/{case.relative_to(RULE_FIXTURES).with_suffix('')}"] = _jsonl(case)
    all_fixtures = sorted(RULE_FIXTURES.glob("*/*/*.jsonl"))
    out["fixtures/all-in-one-stream"] = lambda: [e for case in all_fixtures for e in _jsonl(case)()]
    out["mapping-records"] = _mapping_records
    out["recording"] = _jsonl(RECORDING)
    for path in sorted(VARIANT_RECORDINGS.glob("*.jsonl")):
        out[f"variants/{path.stem}"] = _jsonl(path)
    out["soak/classic"] = _soak(False)
    out["soak/context"] = _soak(True)
    return out
