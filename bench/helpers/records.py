"""The sample records every mapping test (and the emit tests and bench/export_latency.py) use."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from exporter.model import Alert, Event

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "mapping"
GOLDEN = FIXTURES / "golden"
AGENT = {"node_name": "node-1", "cluster_name": "prod-eu", "hostname": "node-1.example.internal"}


def records() -> dict[str, Event | Alert]:
    raw = json.loads((FIXTURES / "records.json").read_text())
    out: dict[str, Event | Alert] = {}
    for name, wrapped in raw.items():
        if name.startswith("_"):
            continue
        ((kind, body),) = wrapped.items()
        out[name] = msgspec.convert(body, Event if kind == "event" else Alert)
    return out
