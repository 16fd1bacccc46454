"""The compiled mapping gives the reference engine's documents, byte for byte.

Every mapping fixture (the golden records), every event and alert of the rule fixtures run
through the real correlator, and variants of the fixtures with the parts a record may lack
or hold oddly (no container, no process, failed syscalls, odd flags, bytes that are not
UTF-8), through `Mapper.map` (compiled) and `Mapper.explain` (exporter.mapping.engine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from bench.helpers.records import AGENT, GOLDEN, records
from exporter.agent.fixtures import replay
from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.mapping import Mapper
from exporter.mapping.compiled import compile_mapping
from exporter.mapping.mapper import load_mapping
from exporter.model import Alert, Event, EventType

SCHEMAS = ("ecs", "ocsf")
RECORDS = records()


@pytest.fixture(scope="module", params=SCHEMAS)
def mapper(request: pytest.FixtureRequest) -> Mapper:
    return Mapper(request.param, version="0.1.0", **AGENT)


def same(mapper: Mapper, record: Event | Alert) -> None:
    compiled, reference = mapper.map(record), mapper.explain(record)
    if reference is None:
        assert compiled is None
        return
    assert compiled is not None and compiled.kind == reference.kind
    assert encoded(compiled.body) == encoded(reference.body)


def encoded(body: dict) -> bytes:
    """The document's bytes, in its own order (JSON that escapes what is not UTF-8, where the
    record held such bytes: the emit stage escapes those)."""
    try:
        return msgspec.json.encode(body)
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True).encode()


def test_shipped_mappings_compile_every_kind(mapper: Mapper) -> None:
    assert mapper.compiled.interpreted == {}
    assert set(mapper.compiled.functions) == {name for name, _ in mapper.mapping.kinds}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_golden_records(mapper: Mapper, name: str) -> None:
    same(mapper, RECORDS[name])
    doc = mapper.map(RECORDS[name])
    assert doc is not None
    golden = (GOLDEN / mapper.schema / f"{name}.json").read_text()
    assert json.dumps(doc.body, indent=2, sort_keys=True) + "\n" == golden


def rule_fixture_records() -> Iterator[Event | Alert]:
    """The events of every rule fixture, and the alerts the real correlator raises on them."""
    ruleset = load_rules([DEFAULT_RULES_DIR])
    for path in sorted((DEFAULT_RULES_DIR / "fixtures").glob("*/*/*.jsonl")):
        alerts, _ = replay(ruleset, path)
        for line in path.read_bytes().splitlines():
            if line.strip():
                yield msgspec.json.decode(line, type=Event)
        yield from alerts


def test_rule_fixture_events_and_alerts(mapper: Mapper) -> None:
    seen = {"event": 0, "alert": 0}
    for record in rule_fixture_records():
        same(mapper, record)
        seen["alert" if isinstance(record, Alert) else "event"] += 1
    assert seen["event"] > 500 and seen["alert"] > 50


def variants(record: Event | Alert) -> Iterator[Event | Alert]:
    """The record with parts missing, empty or odd, one change at a time."""
    if isinstance(record, Alert):
        yield msgspec.structs.replace(record, event=None)
        yield msgspec.structs.replace(record, techniques=[], tactics=["no-such-tactic"], level="bogus")
        yield msgspec.structs.replace(record, evidence=[], key={}, description="")
        if record.event is not None:
            for event in variants(record.event):
                assert isinstance(event, Event)
                yield msgspec.structs.replace(record, event=event)
        return
    yield msgspec.structs.replace(record, container=None)
    yield msgspec.structs.replace(record, process=None)
    yield msgspec.structs.replace(record, ret=-13, flags=0o100 | 0o2, family=10, nstype=0)
    yield msgspec.structs.replace(record, ppid=0, comm="", path="", late=True)
    yield msgspec.structs.replace(record, path="/etc/\udcff", resolved_path="/etc/\udcff")
    if record.container is not None:
        yield msgspec.structs.replace(record, container=msgspec.structs.replace(record.container, pod=None))
        if record.container.pod is not None:
            pod = msgspec.structs.replace(record.container.pod, labels={}, ips=[], namespace="")
            yield msgspec.structs.replace(
                record, container=msgspec.structs.replace(record.container, pod=pod)
            )
    if record.process is not None:
        process = msgspec.structs.replace(record.process, argv=[], parent_argv=["sh", ""], lineage=[])
        yield msgspec.structs.replace(record, process=process)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_variants_of_the_golden_records(mapper: Mapper, name: str) -> None:
    for variant in variants(RECORDS[name]):
        same(mapper, variant)


@pytest.mark.parametrize("type_", list(EventType))
def test_every_event_type(mapper: Mapper, type_: EventType) -> None:
    """Kinds are chosen per record and event type: the bare event of each type, mapped or not."""
    same(mapper, Event(id="e", type=type_, syscall=type_.value, ts_ns=1, pid=2, tid=2))


def test_the_source_names_the_item_of_every_assignment(mapper: Mapper) -> None:
    source = mapper.compiled.source
    for item in mapper.mapping.items:
        assert f"# item {item.id} ({item.location})" in source
        for dotted, _, _ in item.sets:
            assert f"# {dotted} <- {item.id}" in source


def test_nested_fields_are_left_to_the_engine(tmp_path: Path) -> None:
    """A kind that sets `a` and `a.b` keeps the engine's subtree semantics: not compiled."""
    path = tmp_path / "nested.yaml"
    path.write_text(
        "schema: test\n"
        "kinds: {exec: {when: {event.type: exec}}, open: {when: {event.type: open}}}\n"
        "items:\n"
        "  - id: whole\n"
        "    kinds: [exec]\n"
        "    set: {proc: {from: event.process}}\n"
        "  - id: part\n"
        "    set: {proc.name: {from: event.comm}, n: 1}\n"
    )
    compiled = compile_mapping(load_mapping(path))
    assert compiled.interpreted == {"exec": ["proc.name"]} and set(compiled.functions) == {"open"}
    mapper = Mapper(path)
    for type_ in (EventType.EXEC, EventType.OPEN):
        event = RECORDS["exec_in_pod"]
        assert isinstance(event, Event)
        same(mapper, msgspec.structs.replace(event, type=type_))
