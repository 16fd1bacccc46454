"""The native encoder (exporter/emit/native, output.encoder) writes the reference's bytes.

For every record of the bundled recording, the mapping fixtures, the rule fixtures' events
and alerts, both soak mixes and hostile values (text that is not UTF-8, control characters,
quotes, ints past 64 bits, empty and absent fields, a very long argv), and a seeded fuzz
round: an ECS/OCSF JSON line is msgspec's line of the nested body, and an OTLP-JSON body is
an OTLP-JSON or OTLP/protobuf body is the generic encoder's bytes (which the Python shape
functions also give), the protobuf parsed back with opentelemetry-proto's classes. `provex
replay` writes the same file with either encoder.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from bench.correlate_soak import generate
from bench.helpers.records import AGENT, records
from exporter.agent.build import preflight
from exporter.config.schema import Config, OutputConfig
from exporter.emit import native, otlpjson, otlpproto
from exporter.emit.documents import DocumentLinesSink
from exporter.emit.factory import build_sink
from exporter.emit.jsonlines import LineWriter
from exporter.emit.otlp import log_record
from exporter.errors import InputError
from exporter.mapping import Mapper
from exporter.mapping.compiled import Fields
from exporter.model import Alert, Event, EventType, ProcessInfo
from exporter.model import ContainerInfo as Container
from exporter.model import PodInfo as Pod
from exporter.resources import sample_recording
from tests.mapping.test_compiled import rule_fixture_records
from tests.test_newcomer import provex

pytestmark = pytest.mark.skipif(not native.wanted("auto"), reason="the native encoder is not built")

SCHEMAS = ["ecs", "ocsf"]


def sink(mapper: Mapper, native_: bool, tmp_path: Path) -> DocumentLinesSink:
    return DocumentLinesSink(mapper, writer=LineWriter(str(tmp_path / f"out-{native_}")), native=native_)


def hostile_events() -> Iterator[Event]:
    """Values a workload controls, at their worst, in every field the mappings read."""
    texts = [
        "/etc/\udcff\udc80",  # bytes that were not UTF-8, as the kernel's decoding keeps them
        "\ud800",  # a lone surrogate
        "\x00\x01\x1f\x7f\n\r\t\b\f",
        '"quoted" \\back\\slash\\',
        "é€😀\u2028\u2029",
        "",
        "x" * 70_000,
    ]
    ints = [0, -1, 2**31, 2**63 - 1, -(2**63), 2**64, 2**70, -(2**80)]
    for n, text in enumerate(texts):
        pod = Pod(uid=text or "u", name=text, namespace=text, labels={text: text, "a": "b"}, node=text)
        container = Container(id=text or "c", runtime=text, image=text, name=text, pod=pod)
        process = ProcessInfo(pid=1, exe=text, argv=[text, text], parent_exe=text, parent_argv=[text])
        for type_, syscall in (
            (EventType.EXEC, "execve"),
            (EventType.OPEN, "openat"),
            (EventType.CONNECT, "connect"),
            (EventType.MOUNT, "mount"),
        ):
            yield Event(
                id=f"h{n}-{syscall}",
                type=type_,
                syscall=syscall,
                ts_ns=1_764_000_000_000_000_000 + n,
                pid=10,
                tid=10,
                ppid=9,
                comm=text,
                path=text,
                argv=[text] * 3,
                daddr=text,
                target=text,
                fstype=text,
                container=container,
                process=process,
            )
    for n, number in enumerate(ints):
        yield Event(
            id=f"i{n}", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=number, tid=number,
            ppid=number, ret=number, uid=number, path="/x", flags=number & 0xFF,
        )  # fmt: skip
    yield Event(id="empty", type=EventType.OPEN, syscall="", ts_ns=0, pid=0, tid=0)
    argv = [f"--arg{n}={'v' * (n % 50)}" for n in range(20_000)]
    yield Event(
        id="argv", type=EventType.EXEC, syscall="execve", ts_ns=2, pid=3, tid=3, path="/bin/sh", argv=argv
    )


def fuzz_events(seed: int, count: int) -> Iterator[Event]:
    """Random text (any code point, surrogates included), numbers and argv."""
    rng = random.Random(seed)

    def text() -> str:
        pick = rng.random()
        if pick < 0.2:
            return ""
        alphabet = (0x7F, 0x800, 0x10FFFF)[rng.randrange(3)]
        return "".join(chr(rng.randrange(alphabet + 1)) for _ in range(rng.randrange(1, 40)))

    def number() -> int:
        return rng.choice([0, -1, rng.randrange(-(2**70), 2**70), rng.randrange(-1000, 1000)])

    kinds = [(EventType.EXEC, "execve"), (EventType.OPEN, "openat"), (EventType.CONNECT, "connect")]
    for n in range(count):
        type_, syscall = rng.choice(kinds)
        pod = (
            Pod(uid=text(), name=text(), namespace=text(), labels={text(): text()})
            if rng.random() < 0.5
            else None
        )
        container = Container(id=text(), image=text(), pod=pod) if rng.random() < 0.7 else None
        yield Event(
            id=f"f{n}",
            type=type_,
            syscall=syscall,
            ts_ns=abs(number()) % 2**62,
            pid=number(),
            tid=number(),
            ppid=number(),
            ret=number(),
            uid=number(),
            comm=text(),
            path=text(),
            argv=[text() for _ in range(rng.randrange(4))],
            daddr=text(),
            dport=abs(number()) % 65536,
            family=rng.choice([2, 10, 1]),
            container=container,
            process=ProcessInfo(pid=number(), exe=text(), argv=[text()]) if rng.random() < 0.5 else None,
        )


def sources() -> dict[str, list[Event | Alert]]:
    recording = [
        msgspec.json.decode(line, type=Event) for line in sample_recording().read_bytes().splitlines()
    ]
    return {
        "recording": recording,
        "fixtures": list(records().values()),
        "rule fixtures": list(rule_fixture_records()),
        "soak classic": list(generate(2000)),
        "soak context": list(generate(2000, context=True)),
        "hostile": list(hostile_events()),
        "fuzz": list(fuzz_events(seed=23, count=1500)),
    }


@pytest.fixture(scope="module")
def all_sources() -> dict[str, list[Event | Alert]]:
    return sources()


def reference_body(module: ModuleType, fields: Fields) -> bytes | type[Exception]:
    """The generic encoder's bytes of the nested body (or what it raises); the Python shape
    functions give the same (tests/emit/test_shapes.py)."""
    try:
        return module._any(fields.nested())  # type: ignore[no-any-return]
    except Exception as exc:
        return type(exc)


def native_body(module: ModuleType, encoder: Any, fields: Fields) -> bytes | type[Exception]:
    try:
        return module._body(fields, encoder._shapes)  # type: ignore[no-any-return]
    except Exception as exc:
        return type(exc)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_native_bytes_are_the_references(
    schema: str, all_sources: dict[str, list[Event | Alert]], tmp_path: Path
) -> None:
    mapper = Mapper(schema, **AGENT)
    python, compiled = sink(mapper, False, tmp_path), sink(mapper, True, tmp_path)
    json_encoder = otlpjson.JsonEncoder({}, "", otlpjson.Scope("provex.events")).native()
    proto_encoder = otlpproto.ProtoEncoder({}, "", otlpproto.Scope("provex.events")).native()
    for name, batch in all_sources.items():
        documents = 0
        for record in batch:
            doc = mapper.map(record)
            if doc is None:
                continue
            documents += 1
            signal = "alerts" if isinstance(record, Alert) else "events"
            assert compiled._encode(doc, signal) == python._encode(doc, signal), (name, record.id)
            assert native_body(otlpjson, json_encoder, doc.fields) == reference_body(otlpjson, doc.fields), (
                name
            )
            assert native_body(otlpproto, proto_encoder, doc.fields) == reference_body(
                otlpproto, doc.fields
            ), name
        assert documents, name
    python.close()
    compiled.close()


def test_every_source_is_exercised(all_sources: dict[str, list[Event | Alert]]) -> None:
    """The differential test above saw alerts, hostile text that msgspec refuses, and ints
    past 64 bits (so the delegations and the fall-back to the reference were taken)."""
    mapper = Mapper("ecs", **AGENT)
    alerts = sum(isinstance(r, Alert) for r in all_sources["rule fixtures"])
    refused = 0
    for record in all_sources["hostile"]:
        doc = mapper.map(record)
        try:
            native.document_json(doc.fields)  # type: ignore[union-attr]
        except UnicodeEncodeError:
            refused += 1
    assert alerts > 50 and refused >= 4
    big = Event(id="b", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=2**70, tid=1, path="/x")
    assert b'"pid":1180591620717411303424' in native.document_json(mapper.map(big).fields)  # type: ignore[union-attr,operator]


def test_a_refused_string_is_escaped_by_the_reference(tmp_path: Path) -> None:
    mapper = Mapper("ecs", **AGENT)
    doc = mapper.map(
        Event(id="e", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=2, tid=2, path="/a\udcff")
    )
    assert doc is not None
    line = sink(mapper, True, tmp_path)._encode(doc, "events")
    assert json.loads(line)["file"]["path"] == "/a\\xff"


def test_past_the_bound_the_reference_takes_over(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(native, "MAX_SHAPES", 1)
    monkeypatch.setattr(
        native, "_DOCUMENTS", native.NativeShapes("bounded", native._write_document, typed=False)
    )
    mapper = Mapper("ecs", **AGENT)
    python, compiled = sink(mapper, False, tmp_path), sink(mapper, True, tmp_path)
    docs = [d for d in (mapper.map(e) for e in generate(300)) if d is not None]
    assert sum(native.document_json(d.fields) is None for d in docs) > 0  # type: ignore[arg-type]
    for doc in docs:
        assert compiled._encode(doc, "events") == python._encode(doc, "events")


def test_a_program_is_checked_when_made() -> None:
    encode = native.load()
    with pytest.raises(ValueError, match="one more constant"):
        encode.Program((b"",), (encode.OP_JSON,), (0,), repr)
    with pytest.raises(ValueError, match="unknown op"):
        encode.Program((b"", b""), (9,), (0,), repr)
    with pytest.raises(TypeError, match="bytes"):
        encode.Program(("", b""), (encode.OP_JSON,), (0,), repr)
    program = encode.Program((b"[", b"]"), (encode.OP_JSON,), (3,), repr)
    with pytest.raises(IndexError):
        program(("a",))
    with pytest.raises(ValueError, match="every open is closed"):
        encode.Program((b"", b""), (encode.OP_OPEN,), (-1,), repr)
    with pytest.raises(ValueError, match="a close after its open"):
        encode.Program((b"", b"", b""), (encode.OP_CLOSE, encode.OP_OPEN), (-1, -1), repr)
    with pytest.raises(ValueError, match="index"):
        encode.Program((b"", b""), (encode.OP_UTF8,), (-1,), repr)
    deep = encode.MAX_DEPTH + 1
    with pytest.raises(ValueError, match="nest at most"):
        encode.Program(
            (b"",) * (2 * deep + 1),
            (encode.OP_OPEN,) * deep + (encode.OP_CLOSE,) * deep,
            (-1,) * 2 * deep,
            repr,
        )
    # a length-delimited field of 300 bytes: its two-byte length goes before it
    field = encode.Program(
        (b"\x0a", b"", b"", b""), (encode.OP_OPEN, encode.OP_UTF8, encode.OP_CLOSE), (-1, 0, -1), repr
    )
    assert field(("é" * 150,)) == b"\x0a\xac\x02" + "é".encode() * 150
    with pytest.raises(TypeError, match="expected bytes"):
        encode.Program((b"", b""), (encode.OP_DELEGATE,), (0,), str)((1,))


def test_protobuf_bodies_decode_with_the_official_classes(
    all_sources: dict[str, list[Event | Alert]],
) -> None:
    """The native protobuf body is a real AnyValue: opentelemetry-proto parses it back into
    the document (as the generic encoder's bytes parse), for every kind of every source."""
    mapper = Mapper("ocsf", **AGENT)
    encoder = otlpproto.ProtoEncoder({}, "", otlpproto.Scope("provex.events")).native()
    kinds = set()
    for record in [*all_sources["recording"], *all_sources["rule fixtures"]]:
        doc = mapper.map(record)
        if doc is None:
            continue
        body = otlpproto._body(doc.fields, encoder._shapes)
        parsed = json_format.MessageToDict(AnyValue.FromString(body))
        assert parsed == json_format.MessageToDict(AnyValue.FromString(otlpproto._any(doc.body)))
        kinds.add(doc.kind)
    assert len(kinds) >= 5 and "otlp-protobuf-native" in mapper.compiled.layout.encoders
    # whole requests, as a collector receives them
    python = otlpproto.ProtoEncoder({"service.name": "provex"}, "", otlpproto.Scope("provex.events"))
    compiled = otlpproto.ProtoEncoder(
        {"service.name": "provex"}, "", otlpproto.Scope("provex.events")
    ).native()
    batch = [r for r in all_sources["recording"] if mapper.map(r) is not None]
    logs = [log_record(r, mapper.map(r), "ocsf", observed_ns=1) for r in batch]  # type: ignore[arg-type]
    request = compiled.request([compiled.record(log) for log in logs])
    assert request == python.request([python.record(log) for log in logs])
    assert len(
        ExportLogsServiceRequest.FromString(request).resource_logs[0].scope_logs[0].log_records
    ) == len(logs)


def test_anyvalue_ints_and_bools_are_the_references() -> None:
    """int_value as a varint (a negative one in 64-bit two's complement), past int64 refused
    as the reference refuses it; bool_value."""
    encode = native.load()
    as_int = encode.Program((b"", b""), (encode.OP_ANY_INT,), (0,), otlpproto._any)
    for value in (0, 1, 127, 128, 16383, 16384, -1, -(2**63), 2**63 - 1):
        assert as_int((value,)) == otlpproto._any(value)
    for value in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError, match="int64"):
            as_int((value,))
    as_bool = encode.Program((b"", b""), (encode.OP_ANY_BOOL,), (0,), otlpproto._any)
    assert [as_bool((v,)) for v in (True, False)] == [otlpproto._any(True), otlpproto._any(False)]


# -- the switch -------------------------------------------------------------------------------


def test_output_encoder_picks_the_sink_path(tmp_path: Path) -> None:
    for choice, expected in (("native", True), ("python", False), ("auto", True)):
        config = OutputConfig(schema="ecs", file=str(tmp_path / choice), encoder=choice)  # type: ignore[arg-type]
        built = build_sink(config, recorded=True)
        assert isinstance(built, DocumentLinesSink) and built.native is expected
        built.close()


def test_native_wanted_but_not_built_is_refused_before_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        native, "_loaded", native.EncoderUnavailable("the native encoder is not built (test)")
    )
    monkeypatch.setattr(native, "_fallback_logged", False)
    config = Config(output=OutputConfig(schema="ecs", encoder="native"))
    with pytest.raises(InputError, match=r"output\.encoder native.*not built"):
        preflight(config, "replay")
    assert native.wanted("python") is False
    with caplog.at_level("WARNING", logger="provex.emit"):
        assert native.wanted("auto") is False
        assert native.wanted("auto") is False
    assert [r.message for r in caplog.records if r.name == "provex.emit"] == ["encoding in Python"]  # once


@pytest.mark.parametrize("fmt", ["json", "otlp-json"])
def test_replay_writes_the_same_file_with_either_encoder(fmt: str, tmp_path: Path) -> None:
    outputs = {}
    for choice in ("python", "native"):
        out = tmp_path / f"{choice}.jsonl"
        result = provex(
            "replay",
            "--schema",
            "ecs",
            "--format",
            fmt,
            "--output",
            str(out),
            "--set",
            f"output.encoder={choice}",
        )
        assert result.returncode == 0, result.stderr
        # the observed time is the replaying clock's, service.instance.id the run's own
        data = re.sub(rb'"observedTimeUnixNano":"\d+"', b"", out.read_bytes())
        outputs[choice] = re.sub(rb'"service.instance.id","value":\{"stringValue":"[^"]+"', b"", data)
    assert outputs["native"] == outputs["python"] and outputs["native"].count(b"provex.") > 200
