"""Run an EQL query with the `eql` package's Python engine over ECS documents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import eql

from exporter.correlate.loader import DEFAULT_RULES_DIR


def timestamp_ns(doc: dict[str, Any]) -> int:
    """The document's @timestamp (ISO 8601, UTC) as nanoseconds."""
    text = doc["@timestamp"].replace("Z", "+00:00")
    when = dt.datetime.fromisoformat(text)
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def parse(query: str) -> eql.ast.PipedQuery:
    # Elasticsearch's dialect (`:`, `like~`, `regex~`, optional fields).
    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        return eql.parse_query(query)


def run(query: str, docs: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each match (a sequence's events, or one event) in time order."""
    parsed = parse(query)
    # Engine time in nanoseconds: maxspan converts through `time_unit` ticks per second.
    engine = eql.PythonEngine({"time_unit": 10**9})
    matches: list[list[dict[str, Any]]] = []
    engine.add_query(parsed)
    engine.add_output_hook(lambda result: matches.append([e.data for e in result.events]))
    events = sorted((eql.Event("any", timestamp_ns(d), d) for d in docs), key=lambda e: e.time)
    engine.stream_events(events)
    return matches


def token_chain_without_lineage(directory: Path) -> Path:
    """The shipped token-exfiltration rule file without its `x-provex-lineage` (kin) join,
    which no SIEM query can say: what `provex rules export` can turn into an EQL sequence."""
    text = (Path(DEFAULT_RULES_DIR) / "sa_token_exfiltration.yml").read_text()
    head, sep, tail = text.partition("x-provex-lineage:\n")
    assert sep, "the shipped chain no longer has x-provex-lineage"
    rest = tail.split("\n")
    while rest and rest[0].startswith("  "):
        rest.pop(0)
    path = directory / "sa_token_exfiltration.yml"
    path.write_text(head + "\n".join(rest))
    return path
