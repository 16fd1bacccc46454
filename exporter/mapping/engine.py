"""The mapping engine: apply a mapping file (data) to an event or alert.

A mapping file declares record `kinds` (first match wins) and an ordered list
of `items`. Each item, guarded by the kinds it applies to and a `when`
condition, sets document fields from constants or from paths in the record,
optionally through a named transform or a lookup table. Later items override
earlier ones, and every field of a document remembers the item that set it
(its provenance), so a test or a reader can ask "who set event.type?".

File grammar (see mappings/ecs.yaml for a commented example):

    schema: ecs | ocsf
    schema_version: "9.4.0"
    tables: {NAME: {KEY: VALUE}}
    kinds: {NAME: {when: CONDITION}}
    items:
      - id: UNIQUE_ID
        kinds: [NAME, ...]          # optional, default: every kind
        when: CONDITION             # optional
        set: {FIELD.PATH: VALUE}

    CONDITION = {PATH: SCALAR | [SCALARS] | {OP: ARG}}   (all must hold)
        OP in eq ne in not_in lt le gt ge any_bits all_bits no_bits present
    VALUE = SCALAR | [..] | {const: ANY}
          | {from: PATH, fn: TRANSFORM, map: {..} | TABLE, default: ANY}

PATH starts at `record` ("event" or "alert"), `event` (for an alert: its
decisive event), `alert`, `agent` (node identity given to the Mapper) or
`rule`: `rule.NAME` is the rule field NAME (exporter/correlate/FIELDS.md) of
that event, the very value the Sigma rules matched, so a document field set
from it carries what the rules used (exporter/siem/homes.py names it as the
field's home in the SIEM).
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from exporter.correlate.fields import FIELDS, EventView
from exporter.mapping._yaml import LocatedDict, LocatedList, YamlSyntaxError, load_located
from exporter.mapping.functions import TRANSFORMS
from exporter.model import Alert, Event

ROOTS = ("record", "event", "alert", "agent", "rule")
_MISSING = object()


class MappingError(ValueError):
    """A mapping file (or schema name) that cannot be used; the message says where."""


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Predicate:
    path: tuple[str, ...]
    test: Callable[[Any], bool]


@dataclass(frozen=True)
class ValueSpec:
    const: Any = _MISSING
    path: tuple[str, ...] = ()
    fn: str = ""
    table: dict[Any, Any] | None = None
    default: Any = _MISSING
    get: Callable[[dict[str, Any]], Any] | None = None  # `path`, compiled (see _getter)


@dataclass(frozen=True)
class Item:
    id: str
    location: Location
    kinds: frozenset[str] | None
    when: tuple[Predicate, ...]
    sets: tuple[tuple[str, tuple[str, ...], ValueSpec], ...]


@dataclass
class Document:
    """One mapped document and, per dotted field, the item that set it."""

    kind: str
    body: dict[str, Any]
    provenance: dict[str, Item] = field(default_factory=dict)

    def set_by(self, dotted: str) -> str:
        """The id of the item that set `dotted` (or its nearest set ancestor)."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            item = self.provenance.get(".".join(parts[:end]))
            if item is not None:
                return item.id
        raise KeyError(dotted)


def _plain(value: Any) -> Any:
    """A Struct tree as dicts, keeping default values (paths must resolve)."""
    if value is None or isinstance(value, str | int | float):
        return str(value.value) if isinstance(value, enum.Enum) else value
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _resolve(ctx: dict[str, Any], path: tuple[str, ...]) -> Any:
    """Walk dicts and Structs alike (records are not converted up front: it is
    the hot path); whatever a path yields is made plain before it is used."""
    value: Any = ctx
    for part in path:
        if value is None:
            return None
        value = value.get(part) if isinstance(value, dict | EventView) else getattr(value, part, None)
    return value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _getter(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """`_resolve(ctx, path)` made plain, compiled once per path: this runs for every field
    of every document, so the common shapes (a rule field, an attribute chain over the
    record's Structs) skip the generic walk."""
    root, rest = path[0], path[1:]
    if root == "rule" and len(rest) == 1:
        name = rest[0]

        def rule_field(ctx: dict[str, Any]) -> Any:
            view = ctx["rule"]
            value = view.get(name) if view is not None else None
            return value if value.__class__ in _SCALARS else _plain(value)

        return rule_field

    def walk(ctx: dict[str, Any]) -> Any:
        value = ctx.get(root)
        for part in rest:
            if value is None:
                return None
            value = value.get(part) if isinstance(value, dict | EventView) else getattr(value, part, None)
        if value.__class__ in _SCALARS:
            return value
        return _plain(value)

    return walk


_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}


class Mapping:
    """A compiled mapping file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = load_located(path)
        except YamlSyntaxError as exc:
            raise MappingError(str(exc)) from None
        except OSError as exc:
            raise MappingError(f"{path}: cannot read mapping: {exc.strerror}") from None
        if not isinstance(raw, LocatedDict):
            raise MappingError(f"{path}:1: expected a mapping with schema, kinds and items")
        self._check_keys(raw, {"schema", "schema_version", "tables", "kinds", "items"}, "mapping file")
        self.schema = self._str(raw, "schema")
        self.schema_version = self._str(raw, "schema_version")
        self.tables = self._tables(raw.get("tables", LocatedDict()))
        self.kinds = self._kinds(raw)
        self.items = self._items(raw)
        self._by_kind = {
            name: [i for i in self.items if i.kinds is None or name in i.kinds] for name, _ in self.kinds
        }
        # Kinds that only ask what record and event type it is are remembered per pair.
        decided_by_type = all(p.path in (("record",), ("event", "type")) for _, ps in self.kinds for p in ps)
        self._kind_by_type: dict[tuple[str, Any], str | None] | None = {} if decided_by_type else None

    # -- applying -----------------------------------------------------------

    def context(self, record: Event | Alert, agent: dict[str, Any]) -> dict[str, Any]:
        # `rule`: the rule fields of the event, computed on first use (EventView caches them).
        if isinstance(record, Alert):
            view = EventView(record.event) if record.event is not None else None
            return {"record": "alert", "alert": record, "event": record.event, "agent": agent, "rule": view}
        return {"record": "event", "event": record, "alert": None, "agent": agent, "rule": EventView(record)}

    def kind_of(self, ctx: dict[str, Any]) -> str | None:
        if self._kind_by_type is not None:  # kinds decided by record and event type alone
            event = ctx["event"]
            key = (ctx["record"], event.type if event is not None else None)
            kind = self._kind_by_type.get(key, _MISSING)
            if kind is not _MISSING:
                return kind
            kind = self._kind_of(ctx)
            self._kind_by_type[key] = kind
            return kind
        return self._kind_of(ctx)

    def _kind_of(self, ctx: dict[str, Any]) -> str | None:
        for name, predicates in self.kinds:
            if all(p.test(_resolve(ctx, p.path)) for p in predicates):
                return name
        return None

    def apply(self, ctx: dict[str, Any]) -> Document | None:
        """The document for one record, or None when no kind matches it."""
        kind = self.kind_of(ctx)
        if kind is None:
            return None
        doc = Document(kind=kind, body={})
        for item in self._by_kind[kind]:
            if not all(p.test(_resolve(ctx, p.path)) for p in item.when):
                continue
            for dotted, parts, spec in item.sets:
                value = self._value(spec, ctx)
                if not _empty(value):
                    self._put(doc, dotted, parts, value, item)
        return doc

    def _value(self, spec: ValueSpec, ctx: dict[str, Any]) -> Any:
        if spec.const is not _MISSING:
            return spec.const
        value = spec.get(ctx) if spec.get is not None else _plain(_resolve(ctx, spec.path))
        if spec.fn:
            value = TRANSFORMS[spec.fn](value, self.tables)
        if spec.table is not None and value is not None:
            if isinstance(value, list):
                value = [spec.table.get(v, v) for v in value]
            else:
                value = spec.table.get(value, _MISSING)
        if (value is _MISSING or _empty(value)) and spec.default is not _MISSING:
            return spec.default
        return None if value is _MISSING else value

    @staticmethod
    def _put(doc: Document, dotted: str, parts: tuple[str, ...], value: Any, item: Item) -> None:
        node = doc.body
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        replaced = node.get(parts[-1])
        node[parts[-1]] = value
        if isinstance(replaced, dict):
            # A whole subtree replaced: forget what set its old leaves.
            prefix = dotted + "."
            for key in [k for k in doc.provenance if k.startswith(prefix)]:
                del doc.provenance[key]
        doc.provenance[dotted] = item

    # -- compiling ----------------------------------------------------------

    def _where(self, node: Any, key: Any = None) -> Location:
        line = 0
        if isinstance(node, LocatedDict):
            line = node.key_lines.get(key, node.line) if key is not None else node.line
        elif isinstance(node, LocatedList):
            line = node.line
        return Location(str(self.path), line)

    def _fail(self, node: Any, message: str, key: Any = None) -> MappingError:
        return MappingError(f"{self._where(node, key)}: {message}")

    def _check_keys(self, node: LocatedDict, allowed: set[str], what: str) -> None:
        for key in node:
            if key not in allowed:
                expected = sorted(allowed)
                raise self._fail(node, f"unknown key {key!r} in {what}; expected one of {expected}", key)

    def _str(self, node: LocatedDict, key: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value:
            raise self._fail(node, f"{key!r} must be a non-empty string", key if key in node else None)
        return value

    def _tables(self, node: Any) -> dict[str, dict[Any, Any]]:
        if not isinstance(node, dict) or not all(isinstance(v, dict) for v in node.values()):
            raise self._fail(node, "'tables' must map table names to mappings")
        return {name: dict(table) for name, table in node.items()}

    def _path(self, node: Any, text: Any, key: Any = None) -> tuple[str, ...]:
        if not isinstance(text, str) or not text:
            raise self._fail(node, f"expected a path like event.pid, got {text!r}", key)
        parts = tuple(text.split("."))
        if parts[0] not in ROOTS:
            raise self._fail(node, f"path {text!r} must start with one of {list(ROOTS)}", key)
        if parts[0] == "rule" and (len(parts) != 2 or parts[1] not in FIELDS):
            raise self._fail(
                node,
                f"path {text!r} must be rule.NAME with NAME a rule field "
                "(exporter/correlate/FIELDS.md, `provex rules fields`)",
                key,
            )
        return parts

    def _condition(self, node: Any) -> tuple[Predicate, ...]:
        if not isinstance(node, LocatedDict):
            raise self._fail(node, "'when' must be a mapping of path: test")
        predicates = []
        for key, spec in node.items():
            path = self._path(node, key, key)
            predicates.append(Predicate(path, self._test(node, key, spec)))
        return tuple(predicates)

    def _test(self, node: LocatedDict, key: str, spec: Any) -> Callable[[Any], bool]:
        if isinstance(spec, list):
            options = list(spec)
            return lambda v: v in options
        if not isinstance(spec, dict):
            return lambda v: v == spec
        if len(spec) != 1:
            raise self._fail(node, f"test for {key!r} must have exactly one operator", key)
        ((op, arg),) = spec.items()
        if op == "eq":
            return lambda v: v == arg
        if op == "ne":
            return lambda v: v != arg
        if op == "in":
            if not isinstance(arg, list):
                raise self._fail(node, f"'in' for {key!r} needs a list", key)
            return lambda v: v in arg
        if op == "not_in":
            if not isinstance(arg, list):
                raise self._fail(node, f"'not_in' for {key!r} needs a list", key)
            return lambda v: v not in arg
        if op in _COMPARE:
            compare = _COMPARE[op]
            return lambda v: isinstance(v, int | float) and compare(v, arg)
        if op in ("any_bits", "all_bits", "no_bits"):
            if not isinstance(arg, int):
                raise self._fail(node, f"{op!r} for {key!r} needs an integer mask", key)
            if op == "any_bits":
                return lambda v: isinstance(v, int) and bool(v & arg)
            if op == "all_bits":
                return lambda v: isinstance(v, int) and v & arg == arg
            return lambda v: isinstance(v, int) and not v & arg
        if op == "present":
            return lambda v: (not _empty(v)) == bool(arg)
        raise self._fail(
            node,
            f"unknown test {op!r} for {key!r}; expected eq ne in not_in lt le gt ge "
            "any_bits all_bits no_bits present",
            key,
        )

    def _kinds(self, raw: LocatedDict) -> list[tuple[str, tuple[Predicate, ...]]]:
        node = raw.get("kinds")
        if not isinstance(node, LocatedDict) or not node:
            raise self._fail(raw, "'kinds' must be a non-empty mapping of kind name: {when: ...}", "kinds")
        kinds = []
        for name, spec in node.items():
            if not isinstance(spec, LocatedDict) or set(spec) != {"when"}:
                raise self._fail(node, f"kind {name!r} must be {{when: CONDITION}}", name)
            kinds.append((str(name), self._condition(spec["when"])))
        return kinds

    def _value_spec(self, node: LocatedDict, key: str, spec: Any) -> ValueSpec:
        if not isinstance(spec, dict):
            return ValueSpec(const=spec)
        if set(spec) == {"const"}:
            return ValueSpec(const=spec["const"])
        allowed = {"from", "fn", "map", "default"}
        if "from" not in spec or not set(spec) <= allowed:
            raise self._fail(
                node,
                f"value of {key!r} must be a constant, {{const: ..}} or "
                f"{{from: PATH[, fn, map, default]}}; got keys {sorted(spec)}",
                key,
            )
        fn = spec.get("fn", "")
        if fn and fn not in TRANSFORMS:
            raise self._fail(node, f"unknown fn {fn!r} for {key!r}; known: {sorted(TRANSFORMS)}", key)
        table = spec.get("map")
        if isinstance(table, str):
            if table not in self.tables:
                known = sorted(self.tables)
                raise self._fail(node, f"unknown table {table!r} for {key!r}; known: {known}", key)
            table = self.tables[table]
        elif table is not None and not isinstance(table, dict):
            raise self._fail(node, f"'map' for {key!r} must be a table name or a mapping", key)
        path = self._path(spec, spec["from"], "from")
        return ValueSpec(
            path=path,
            fn=fn,
            table=dict(table) if table is not None else None,
            default=spec.get("default", _MISSING),
            get=_getter(path),
        )

    def _items(self, raw: LocatedDict) -> list[Item]:
        node = raw.get("items")
        if not isinstance(node, LocatedList) or not node:
            raise self._fail(raw, "'items' must be a non-empty list", "items")
        known_kinds = {name for name, _ in self.kinds}
        seen: set[str] = set()
        items = []
        for entry in node:
            if not isinstance(entry, LocatedDict):
                raise self._fail(node, "every item must be a mapping with id and set")
            self._check_keys(entry, {"id", "kinds", "when", "set"}, "item")
            item_id = self._str(entry, "id")
            if item_id in seen:
                raise self._fail(entry, f"duplicate item id {item_id!r}", "id")
            seen.add(item_id)
            kinds = entry.get("kinds")
            if kinds is not None:
                if not isinstance(kinds, list) or not kinds:
                    raise self._fail(entry, "'kinds' must be a non-empty list", "kinds")
                for kind in kinds:
                    if kind not in known_kinds:
                        declared = sorted(known_kinds)
                        raise self._fail(entry, f"unknown kind {kind!r}; declared: {declared}", "kinds")
            sets = entry.get("set")
            if not isinstance(sets, LocatedDict) or not sets:
                where = "set" if "set" in entry else None
                raise self._fail(entry, "'set' must be a non-empty mapping of field: value", where)
            items.append(
                Item(
                    id=item_id,
                    location=self._where(entry),
                    kinds=frozenset(kinds) if kinds is not None else None,
                    when=self._condition(entry["when"]) if "when" in entry else (),
                    sets=tuple(
                        (str(k), tuple(str(k).split(".")), self._value_spec(sets, k, v))
                        for k, v in sets.items()
                    ),
                )
            )
        return items
