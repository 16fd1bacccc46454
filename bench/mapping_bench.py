#!/usr/bin/env python3
"""Cost of mapping raw events to ECS and OCSF documents, per event; prints JSON.

`us_per_event` is the compiled mapping (`Mapper.map`, exporter/mapping/compiled.py);
`engine_us_per_event` the reference engine it was compiled from (`Mapper.explain`), which
also records each field's provenance. `map_and_encode_*` is the whole CPU work of the export
worker per raw event before the I/O: map, encode as OTLP-JSON or OTLP/protobuf, make the
request (batches of 512); `_native` the same through the native encoder (output.encoder,
exporter/emit/native), and `document_json_*` a mapped document to its JSON line alone.

The events are the soak's node mix (bench/correlate_soak.py). The baseline, measured in the
same run, is decoding the same events from their replay lines (what a replay does before
anything else). Mapping is what caps raw events shipped to a collector and `provex replay
--schema ecs|ocsf`.

    python bench/mapping_bench.py [--events 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from bench.correlate_soak import generate
from exporter.emit import native
from exporter.emit.factory import build_resource
from exporter.emit.logrecord import Scope
from exporter.emit.otlp import EVENT_SCOPE, RecordEncoder, make_encoder
from exporter.mapping.mapper import Mapper
from exporter.model import decode_event, encode_event

JSON = msgspec.json.Encoder()


def best_us_per_event(work, items: list, repeat: int) -> float:
    return best_us_alternating({"": work}, items, repeat)[""]


def best_us_alternating(works: dict, items: list, repeat: int) -> dict[str, float]:
    """The best of `repeat` rounds of each work, the works taking turns in every round (so
    that the machine's slow and fast spells fall on each alike)."""
    best = dict.fromkeys(works, float("inf"))
    for _ in range(repeat):
        for name, work in works.items():
            start = time.perf_counter()
            for item in items:
                work(item)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(seconds / len(items) * 1e6, 2) for name, seconds in best.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    lines = [encode_event(event) for event in generate(args.events)]
    events = [decode_event(line) for line in lines]
    report = {
        "benchmark": "mapping",
        "events": len(events),
        "baseline_decode_us_per_event": best_us_per_event(decode_event, lines, args.repeat),
    }
    resource = build_resource("node", "cluster", "host")
    for schema in ("ecs", "ocsf"):
        mapper = Mapper(schema, node_name="node", cluster_name="cluster", hostname="host")
        documents = sum(mapper.map(event) is not None for event in events)
        compiled = best_us_per_event(mapper.map, events, args.repeat)
        engine = best_us_per_event(mapper.explain, events, args.repeat)
        report[schema] = {
            "us_per_event": compiled,
            "engine_us_per_event": engine,
            "speedup": round(engine / compiled, 2),
            "documents": documents,
        }
        # A mapped document to its JSON line, and what a raw-event export worker does before
        # the I/O (map, encode, make the request): the reference, and the native encoder
        # (output.encoder) in turns with it.
        suffixes = {"": False, "_native": True} if native.wanted("auto") else {"": False}
        docs = [doc for doc in map(mapper.map, events) if doc is not None]
        documents_json = {
            "": lambda doc: JSON.encode(doc.fields.nested()),
            "_native": lambda doc: native.document_json(doc.fields),
        }
        for suffix, us in best_us_alternating(
            {suffix: documents_json[suffix] for suffix in suffixes}, docs, args.repeat
        ).items():
            report[schema][f"document_json{suffix}_us_per_document"] = us
        batches = [events[i : i + 512] for i in range(0, len(events), 512)]
        for encoding in ("json", "protobuf"):
            works = {}
            for suffix, use_native in suffixes.items():
                made = make_encoder(encoding, resource, Scope(EVENT_SCOPE), native=use_native)
                encoder = RecordEncoder(mapper, made, "events")
                works[suffix] = lambda b, e=encoder: e.request(e.records(b))
            for suffix, per_batch in best_us_alternating(works, batches, args.repeat).items():
                us = round(per_batch * len(batches) / len(events), 2)
                report[schema][f"map_and_encode_{encoding}{suffix}_us_per_event"] = us
                report[schema][f"map_and_encode_{encoding}{suffix}_events_per_s"] = round(1e6 / us)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
