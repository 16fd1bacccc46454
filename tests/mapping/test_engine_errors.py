"""Bad mapping files and schema names are refused with file:line and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config
from exporter.mapping import Mapper, MappingError, load_mapping, schema_names

GOOD_HEAD = """\
# a mapping with one kind; the cases below add items
schema: test
kinds:
  any: {when: {record: event}}
items:
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_shipped_schemas() -> None:
    assert schema_names() == ["ecs", "ocsf"]


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(MappingError, match=r"unknown schema 'elastic': expected one of \['ecs', 'ocsf'\]"):
        Mapper("elastic")


def test_unknown_schema_in_config_is_refused_with_file_line(tmp_path: Path) -> None:
    path = tmp_path / "provex.yaml"
    path.write_text("output:\n  schema: splunk\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}:2" in str(exc.value)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("  - id: a\n    set: {x: 1}\n  - id: a\n    set: {y: 1}\n", 8, "duplicate item id 'a'"),
        ("  - id: a\n    kinds: [nope]\n    set: {x: 1}\n", 7, "unknown kind 'nope'"),
        ("  - id: a\n    set:\n      x: {from: event.pid, fn: shout}\n", 8, "unknown fn 'shout'"),
        ("  - id: a\n    set:\n      x: {from: pid}\n", 8, "must start with one of"),
        (
            "  - id: a\n    when: {event.flags: {any_bits: 0o100}}\n    set: {x: 1}\n",
            7,
            "key items.0.when.event.flags.any_bits: '0o100' is not allowed; expected an integer",
        ),
        (
            "  - id: a\n    when: {event.ret: {lesser: 0}}\n    set: {x: 1}\n",
            7,
            "unknown key items.0.when.event.ret.lesser; known here: eq, ne, in, not_in, lt, le, gt, ge,"
            " any_bits, all_bits, no_bits, present",
        ),
        ("  - id: a\n    sett: {x: 1}\n", 7, "unknown key items.0.sett; did you mean items.0.set?"),
        ("  - id: a\n    set:\n      x: {from: event.pid, map: levels}\n", 8, "unknown table 'levels'"),
        (
            "  - id: a\n    set:\n      x: {form: event.pid}\n",
            8,
            "unknown key items.0.set.x.form; did you mean items.0.set.x.from?",
        ),
        ("  - id: a\n    set: {x: 1\n", 8, "but got"),  # YAML syntax error at end of file
        ("  - id: a\n    set: {x: 1}\n    set: {y: 1}\n", 8, "duplicate key 'set'"),
        ("  - id: a\n    set: {x: {const: 1, from: event.pid}}\n", 7, "unknown key items.0.set.x.from;"),
        (
            "  - id: ''\n    set: {x: 1}\n",
            6,
            "key items.0.id: '' is not allowed; expected a non-empty string",
        ),
        (
            "  - id: a\n    set: {}\n",
            7,
            "key items.0.set: {} is not allowed; expected a non-empty map of FIELD",
        ),
        (
            "  - id: a\n    kinds: any\n    set: {x: 1}\n",
            7,
            "key items.0.kinds: 'any' is not allowed; expected a"
            " non-empty list of strings, e.g. [a, b] (or empty)",
        ),
        ("  - id: a\n    when: {event.ret: {lt: 0, gt: 5}}\n    set: {x: 1}\n", 7, "exactly one operator"),
        ("  - id: a\n    when: {event.ret: {in: 5}}\n    set: {x: 1}\n", 7, "expected a list of any values"),
        ("  - id: a\n    set:\n      x: {from: rule.TargetFile}\n", 8, "NAME a rule field"),
        ("  - id: a\n    when: {rule.IsHostMount.x: true}\n    set: {x: 1}\n", 7, "must be rule.NAME"),
    ],
)
def test_malformed_mapping_is_refused_with_file_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = _write(tmp_path, GOOD_HEAD + body)
    with pytest.raises(MappingError) as exc:
        load_mapping(path)
    text = str(exc.value)
    assert text.startswith(f"{path}:{line}:"), text
    assert message in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema: x\nitems: [{id: a, set: {x: 1}}]\n",
         "m.yaml:1: missing key kinds; expected a non-empty map of NAME: {when: CONDITION}"),
        ("schema: x\nkinds: {any: {when: {}}}\nitems: []\n",
         "m.yaml:3: key items: [] is not allowed; expected a non-empty list of"),
        ("schema: x\nkinds: {any: {wen: {}}}\nitems: [{id: a, set: {x: 1}}]\n",
         "m.yaml:2: unknown key kinds.any.wen; did you mean kinds.any.when?"),
        ("- schema: x\n", "m.yaml:1: key <root>: [{'schema': 'x'}] is not allowed; expected a mapping with keys"),
        ("schema: x\nschema_version: '1'\n", "m.yaml:2: unknown key schema_version; known here: schema,"),
    ],
)  # fmt: skip
def test_bad_sections_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(MappingError) as exc:
        load_mapping(path)
    assert message in str(exc.value), str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read mapping"):
        load_mapping(tmp_path / "absent.yaml")


def test_custom_mapping_file_works(tmp_path: Path) -> None:
    from exporter.model import Event, EventType

    path = _write(tmp_path, GOOD_HEAD + "  - id: a\n    set: {who: {from: event.comm}, n: 1}\n")
    mapper = Mapper(path, node_name="n")
    event = Event(id="1", type=EventType.EXEC, syscall="execve", ts_ns=1, pid=1, tid=1, comm="sh")
    doc = mapper.map(event)
    assert doc is not None and doc.body == {"who": "sh", "n": 1}
    with pytest.raises(LookupError, match=r"Mapper\.explain"):
        doc.set_by("who")  # the compiled mapping records no provenance...
    explained = mapper.explain(event)
    assert explained is not None and explained.body == doc.body and explained.set_by("who") == "a"
