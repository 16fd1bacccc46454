"""Bodies encoded through the function of their shape (exporter.emit.shapes) are the bytes the
generic encoders give for the nested body, in both formats, for every mapped record kind: the
mapping fixtures, a soak stream, and the correlator's alerts on the rule fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.helpers.records import AGENT, records
from exporter.emit import otlpjson, otlpproto, shapes
from exporter.mapping import Mapper
from exporter.mapping.compiled import Fields
from exporter.model import Event, EventType
from tests.mapping.test_compiled import rule_fixture_records

ENCODERS = {"json": otlpjson, "protobuf": otlpproto}


def documents(mapper: Mapper) -> Iterator[Fields]:
    from bench.correlate_soak import generate

    sources = [*records().values(), *generate(3000, context=True), *rule_fixture_records()]
    for record in sources:
        doc = mapper.map(record)
        if doc is not None:
            assert isinstance(doc.fields, Fields)
            yield doc.fields


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_shape_functions_write_what_the_generic_encoder_writes(schema: str, encoding: str) -> None:
    module = ENCODERS[encoding]
    mapper = Mapper(schema, **AGENT)
    count = 0
    for fields in documents(mapper):
        assert module._SHAPES.encode(fields) == module._any(fields.nested())
        count += 1
    functions = mapper.compiled.layout.encoders[module._SHAPES.name]
    assert count > 3000 and 10 <= len(functions) < count  # shapes repeat


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_a_field_whose_type_changes_gets_a_function_of_its_own(encoding: str) -> None:
    module = ENCODERS[encoding]
    mapper = Mapper("ecs", **AGENT)
    fields = mapper.map(
        Event(id="e", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=2, tid=2, path="/x")
    )
    assert fields is not None and fields.fields is not None
    values = dict(fields.fields.values)
    number = next(iter(values))
    for value in ("text", 7, True, ["a", 1], {"k": "v"}, "é" * 200):
        changed = Fields(fields.fields.layout, {**values, number: value})
        assert module._body(changed) == module._any(changed.nested())


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_past_the_bound_the_generic_encoder_takes_over(
    encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = ENCODERS[encoding]
    monkeypatch.setattr(shapes, "MAX_SHAPES", 2)
    mapper = Mapper("ocsf", **AGENT)
    seen = list(documents(mapper))[:200]
    for fields in seen:
        assert module._body(fields) == module._any(fields.nested())
    assert len(mapper.compiled.layout.encoders[module._SHAPES.name]) == 2


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_text_that_is_not_utf8_is_refused_for_the_caller_to_escape(encoding: str) -> None:
    mapper = Mapper("ecs", **AGENT)
    doc = mapper.map(
        Event(id="e", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=2, tid=2, path="/\udcff")
    )
    assert doc is not None
    with pytest.raises(UnicodeEncodeError):
        ENCODERS[encoding]._body(doc.fields)
