"""A mapping file compiled to Python: one function per document kind.

`Mapping.apply` (exporter.mapping.engine) interprets a mapping item by item for every record:
a closure per getter and setter, a generic walk per path, provenance bookkeeping per field.
That is ~130 us of interpreter time per raw event. `compile_mapping` writes, from the same
loaded Mapping, the source of one function per kind that does the same work in straight
lines: paths become attribute reads (typed from the record classes, so a `str` field needs
no conversion and an `int` field no emptiness test), shared prefixes (`event.container`) are
read once, and `when` tests are inline comparisons. A function fills a flat map of numbered
fields (`Fields`; `Layout` numbers the fields' paths); its nested body is made only when asked
for, and the emit stage encodes the flat fields directly (exporter.emit.shapes). The source is exec'd once when the Mapper is built; the mapping stays
data.

Which item set a field stays provable: every assignment in the source is preceded by a comment
naming its item and file:line (`CompiledMapping.source`), and the reference engine, which
records each field's item (`Mapper.explain`), gives byte-identical documents on every golden
fixture and mapping fixture (tests/mapping/test_compiled.py).

A kind whose fields nest inside each other (one item sets `a`, another `a.b`) keeps the
engine's semantics of replacing and merging subtrees only in the engine: such a kind is not
compiled and its records go through `Mapping.apply` (`CompiledMapping.interpreted` names
them; the shipped mappings have none).
"""

from __future__ import annotations

import functools
import linecache
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi

from exporter.mapping.engine import (
    _MISSING,
    _SCALARS,
    Document,
    Item,
    Mapping,
    Predicate,
    ValueSpec,
    _empty,
    _plain,
    _PlainView,
)
from exporter.mapping.functions import TRANSFORMS
from exporter.model import Alert, Event
from exporter.taxonomy.fields import FIELDS, EventView

KindFunction = Callable[[str, Event | None, Alert | None, dict[str, Any]], dict[int, Any]]


# -- what the compiler knows of a value's type -----------------------------------------------


@dataclass(frozen=True)
class _Type:
    """The static type of a value a path yields, as far as the record classes say."""

    shape: str  # struct | dict | str | number | enum | list | unknown
    optional: bool = False  # may be None
    cls: type | None = None  # struct: its class
    item: _Type | None = None  # list: the type of its items

    def field(self, name: str) -> _Type | None:
        """A struct field's type; None when the struct has no such field."""
        assert self.cls is not None
        info = _fields(self.cls).get(name)
        return _from_info(info) if info is not None else None


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """A record class's fields and their types (msgspec.inspect: slow, so once per class)."""
    return {f.name: f.type for f in mi.type_info(cls).fields}  # type: ignore[attr-defined]


_UNKNOWN = _Type("unknown", optional=True)


def _from_info(info: Any) -> _Type:
    if isinstance(info, mi.UnionType):
        others = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(others) == 1:
            inner = _from_info(others[0])
            return _Type(inner.shape, True, inner.cls, inner.item)
        return _UNKNOWN
    if isinstance(info, mi.StructType):
        return _Type("struct", cls=info.cls)
    if isinstance(info, mi.StrType):
        return _Type("str")
    if isinstance(info, mi.IntType | mi.FloatType | mi.BoolType):
        return _Type("number")
    if isinstance(info, mi.EnumType):
        return _Type("enum")
    if isinstance(info, mi.DictType):
        return _Type("dict")
    if isinstance(info, mi.ListType):
        return _Type("list", item=_from_info(info.item_type))
    return _UNKNOWN


def _class_type(cls: type, optional: bool) -> _Type:
    return _Type("struct", optional=optional, cls=cls)


# -- runtime helpers the generated code calls -------------------------------------------------


def _step(value: Any, part: str) -> Any:
    """One step of the engine's path walk (engine._resolve), for a value of unknown type."""
    if value is None:
        return None
    return value.get(part) if isinstance(value, dict | EventView) else getattr(value, part, None)


def _fn_arg(raw: Any) -> Any:
    """A transform's argument, as the engine hands it over (engine._fn_input)."""
    if raw.__class__ in _SCALARS:
        return raw
    return _PlainView(raw) if isinstance(raw, msgspec.Struct) else _plain(raw)


def _lookup(table: dict[Any, Any], value: Any) -> Any:
    """A `map:` table applied as the engine applies it (engine.Mapping._value)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [table.get(v, v) for v in value]
    return table.get(value, _MISSING)


# -- the code generator -------------------------------------------------------------------------


class _Writer:
    """Writes one kind's function; `scopes` are the values known at the current line
    (a local read or a parent object made in an enclosing block is valid inside it)."""

    def __init__(self, compiler: _Compiler, kind: str, records: set[str]) -> None:
        self.compiler = compiler
        self.kind = kind
        self.lines: list[str] = []
        self.indent = 1
        self.scopes: list[dict[Any, str]] = [{}]
        self.names = 0
        only_events, only_alerts = records == {"event"}, records == {"alert"}
        none = _Type("unknown", optional=True)
        self.roots: dict[str, _Type] = {
            "record": _Type("str"),
            "event": _class_type(Event, optional=not only_events),
            "alert": none if only_events else _class_type(Alert, optional=not only_alerts),
            "agent": _Type("dict"),
        }
        self.records = records
        self._types: dict[tuple[str, ...], _Type] = {}  # of the paths read so far

    # -- bookkeeping --
    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def local(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def known(self, key: Any) -> str | None:
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        return None

    def remember(self, key: Any, name: str) -> None:
        self.scopes[-1][key] = name

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        self.emit(header)
        self.indent += 1
        self.scopes.append({})
        try:
            yield
        finally:
            self.scopes.pop()
            self.indent -= 1

    # -- reading the record --
    def read(self, path: tuple[str, ...]) -> tuple[str, _Type]:
        """A local holding the raw value at `path` (engine._raw_getter), and its type."""
        root = path[0]
        if root == "alert" and "alert" not in self.records:
            return "None", _Type("unknown", optional=True)
        if len(path) == 1:
            return root, self.roots[root]
        cached = self.known(("read", path))
        if cached is not None:
            return cached, self._types[path]
        if root == "rule":
            extractor = self.compiler.const(FIELDS[path[1]].get, "R")
            expr = f"{extractor}(event)"
            if self.roots["event"].optional:
                expr = f"{expr} if event is not None else None"
            kind = _UNKNOWN
        else:
            parent, ptype = self.read(path[:-1])
            part = path[-1]
            if ptype.shape == "struct" and (ftype := ptype.field(part)) is not None:
                expr, kind = f"{parent}.{part}", ftype
                if ptype.optional:
                    expr = f"{expr} if {parent} is not None else None"
                    kind = _Type(ftype.shape, True, ftype.cls, ftype.item)
            elif ptype.shape == "dict":
                expr, kind = f"{parent}.get({part!r})", _UNKNOWN
                if ptype.optional:
                    expr = f"{expr} if {parent} is not None else None"
            else:
                expr, kind = f"_step({parent}, {part!r})", _UNKNOWN
        name = self.local("g")
        self.emit(f"{name} = {expr}")
        self.remember(("read", path), name)
        self._types[path] = kind
        return name, kind

    def plain(self, path: tuple[str, ...]) -> tuple[str, _Type]:
        """The value at `path` made plain (engine ValueSpec.get)."""
        name, kind = self.read(path)
        if kind.shape in ("str", "number"):
            return name, kind
        cached = self.known(("plain", path))
        if cached is not None:
            return cached, kind
        out = self.local("p")
        if kind.shape == "list" and kind.item is not None and kind.item.shape in ("str", "number"):
            expr = f"list({name})" + (f" if {name} is not None else None" if kind.optional else "")
        elif kind.shape == "enum":
            expr = f"str({name}.value)" + (f" if {name} is not None else None" if kind.optional else "")
        else:
            expr = f"{name} if {name}.__class__ in _SCALARS else _plain({name})"
        self.emit(f"{out} = {expr}")
        self.remember(("plain", path), out)
        return out, kind

    def fn_input(self, path: tuple[str, ...]) -> str:
        """A transform's argument (engine._fn_input), made once per document."""
        name, kind = self.read(path)
        if kind.shape in ("str", "number"):
            return name
        if kind.shape == "list" and kind.item is not None and kind.item.shape in ("str", "number"):
            return self.plain(path)[0]  # the engine's copy: a list of the same scalars
        cached = self.known(("fn", path))
        if cached is not None:
            return cached
        out = self.local("a")
        self.emit(f"{out} = _fn_arg({name})")
        self.remember(("fn", path), out)
        return out

    # -- tests --
    def test(self, predicate: Predicate) -> str:
        """The engine's test (engine._OPERATORS) as an expression; a number's type check is
        left out where the record class says the field is a number (bool is an int too)."""
        name, kind = self.read(predicate.path)
        op, arg = predicate.op, predicate.arg
        number = kind.shape == "number" and not kind.optional
        if op in ("eq", "ne") and (arg is None or isinstance(arg, bool | int | float | str)):
            return f"{name} {'==' if op == 'eq' else '!='} {arg!r}"
        if op in ("eq", "ne", "in_", "not_in"):
            symbol = {"eq": "==", "ne": "!=", "in_": "in", "not_in": "not in"}[op]
            return f"{name} {symbol} {self.compiler.const(arg, 'C')}"
        if op in ("lt", "le", "gt", "ge"):
            symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            check = "" if number else f"isinstance({name}, _NUMBER) and "
            return f"{check}{name} {symbol} {arg!r}"
        if op in ("any_bits", "all_bits", "no_bits"):
            check = "" if number else f"isinstance({name}, int) and "
            test = {
                "any_bits": f"{name} & {arg!r} != 0",
                "all_bits": f"{name} & {arg!r} == {arg!r}",
                "no_bits": f"not {name} & {arg!r}",
            }[op]
            return check + test
        if op == "present":
            present = name if kind.shape in ("str", "list", "dict") else f"({_not_empty(name)})"
            return present if arg else f"not {present}"
        raise AssertionError(f"operator {op} has no compiled form")

    # -- writing the document --
    def value(self, spec: ValueSpec) -> tuple[str, str]:
        """A local (or constant) holding the value to set, and the test that it is not
        empty ("" when it never is)."""
        if spec.const is not _MISSING:
            return self.compiler.const(spec.const, "C"), ""
        if not spec.fn and spec.table is None and spec.default is _MISSING:
            name, kind = self.plain(spec.path)
            if kind.shape == "number":
                return name, f"{name} is not None" if kind.optional else ""
            if kind.shape in ("str", "list", "dict", "enum", "struct"):
                return name, name
            return name, _not_empty(name)
        out = self.local("v")
        if spec.fn:
            fn = self.compiler.const(TRANSFORMS[spec.fn], "F")
            self.emit(f"{out} = {fn}({self.fn_input(spec.path)}, _tables)")
        else:
            self.emit(f"{out} = {self.plain(spec.path)[0]}")
        if spec.table is not None:
            self.emit(f"{out} = _lookup({self.compiler.const(spec.table, 'T')}, {out})")
        if spec.default is not _MISSING:
            with self.block(f"if {out} is _MISSING or _empty({out}):"):
                self.emit(f"{out} = {self.compiler.const(spec.default, 'C')}")
        elif spec.table is not None:
            self.emit(f"{out} = None if {out} is _MISSING else {out}")
        return out, _not_empty(out)

    def item(self, item: Item) -> None:
        self.emit(f"# item {item.id} ({item.location})")
        with self._guards(list(item.when)):
            for dotted, parts, spec in item.sets:
                if spec.const is not _MISSING and _empty(spec.const):
                    continue  # the engine never writes an empty constant
                self.emit(f"# {dotted} <- {item.id}")
                value, keep = self.value(spec)
                slot = self.compiler.slot(parts)
                if keep:
                    with self.block(f"if {keep}:"):
                        self.emit(f"fields[{slot}] = {value}")
                else:
                    self.emit(f"fields[{slot}] = {value}")

    @contextmanager
    def _guards(self, predicates: list[Predicate]) -> Iterator[None]:
        """Nested `if`s, one per test, so that a path is read only when the tests before it
        held (as the engine's all() stops at the first that fails)."""
        if not predicates:
            yield
            return
        with self.block(f"if {self.test(predicates[0])}:"), self._guards(predicates[1:]):
            yield

    def function(self, name: str, items: list[Item]) -> list[str]:
        for item in items:
            self.item(item)
        head = [f"def {name}(record, event, alert, agent):", "    fields = {}"]
        return [*head, *self.lines, "    return fields"]


def _not_empty(name: str) -> str:
    """engine._empty negated, with the common case (a true value) first."""
    return f'{name} or ({name} is not None and {name} != "" and {name} != [] and {name} != {{}})'


class _Compiler:
    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.namespace: dict[str, Any] = {
            "_MISSING": _MISSING,
            "_NUMBER": (int, float),
            "_SCALARS": _SCALARS,
            "_empty": _empty,
            "_plain": _plain,
            "_step": _step,
            "_fn_arg": _fn_arg,
            "_lookup": _lookup,
            "_tables": mapping.tables,
        }
        self._consts: dict[int, str] = {}
        self.layout = Layout()

    def slot(self, parts: tuple[str, ...]) -> int:
        """The number of the document field at `parts`."""
        layout = self.layout
        number = layout.numbers.get(parts)
        if number is None:
            number = layout.numbers[parts] = len(layout.paths)
            layout.paths.append(parts)
        return number

    def const(self, value: Any, prefix: str) -> str:
        """A name in the generated module's namespace bound to `value`."""
        name = self._consts.get(id(value))
        if name is None:
            name = self._consts[id(value)] = f"{prefix}{len(self._consts) + 1}"
            self.namespace[name] = value
        return name


def _records(predicates: tuple[Predicate, ...]) -> set[str]:
    """Which records ("event", "alert") a kind's `when` admits, by its tests of `record`."""
    records = {"event", "alert"}
    for p in predicates:
        if p.path == ("record",):
            records = {r for r in records if p.test(r)}
    return records


def _nested(items: list[Item]) -> list[str]:
    """Fields of one kind that lie inside another of its fields (`a` and `a.b`)."""
    fields = {dotted for item in items for dotted, _, _ in item.sets}
    return sorted(f for f in fields if any(f.startswith(other + ".") for other in fields))


class Layout:
    """The document fields a compiled mapping sets, numbered: each field's path."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, ...]] = []
        self.numbers: dict[tuple[str, ...], int] = {}
        # What an encoder compiles for these fields, kept by it here (exporter.emit.shapes).
        self.encoders: dict[str, Any] = {}


class Fields:
    """A compiled document: its fields by number, in the order they were first set (which
    is the order of the maps the engine builds: `nested` builds the same)."""

    __slots__ = ("layout", "values")

    def __init__(self, layout: Layout, values: dict[int, Any]) -> None:
        self.layout = layout
        self.values = values

    def nested(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        paths = self.layout.paths
        for number, value in self.values.items():
            *parents, leaf = paths[number]
            node = body
            for part in parents:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                node = child
            node[leaf] = value
        return body


@dataclass
class CompiledMapping:
    """The functions of one mapping, and the source they were made from."""

    mapping: Mapping
    functions: dict[str, KindFunction]
    interpreted: dict[str, list[str]]  # kind -> nested fields: these kinds use the engine
    source: str
    layout: Layout

    def __post_init__(self) -> None:
        # (record, event type) -> kind, where kinds are decided by those two alone
        self._by_type: dict[tuple[str, Any], str | None] | None = {} if self.mapping.decided_by_type else None

    def map(self, record: Event | Alert, agent: dict[str, Any]) -> Document | None:
        """The document for `record` (no provenance: Mapper.explain has it), or None when
        the mapping has no kind for it."""
        if isinstance(record, Alert):
            which, event, alert = "alert", record.event, record
        else:
            which, event, alert = "event", record, None
        by_type = self._by_type
        if by_type is None:
            kind = self.mapping.kind_of(self.mapping.context(record, agent))
        else:
            key = (which, event.type if event is not None else None)
            kind = by_type.get(key, _MISSING)
            if kind is _MISSING:
                kind = by_type[key] = self.mapping.kind_of(self.mapping.context(record, agent))
        if kind is None:
            return None
        function = self.functions.get(kind)
        if function is None:  # a kind the compiler leaves to the engine
            return self.mapping.apply(self.mapping.context(record, agent))
        return Document(kind, fields=Fields(self.layout, function(which, event, alert, agent)))


def compile_mapping(mapping: Mapping) -> CompiledMapping:
    """One function per kind of `mapping` (see the module's docstring)."""
    compiler = _Compiler(mapping)
    sources = [f"# {mapping.path}, compiled by exporter.mapping.compiled: one function per kind\n"]
    functions: dict[str, KindFunction] = {}
    interpreted: dict[str, list[str]] = {}
    for kind, predicates in mapping.kinds:
        items = mapping.items_of(kind)
        nested = _nested(items)
        if nested:
            interpreted[kind] = nested
            continue
        name = "kind_" + re.sub(r"\W", "_", kind)
        lines = [f"# kind {kind}", *_Writer(compiler, kind, _records(predicates)).function(name, items)]
        source = "\n".join(lines) + "\n"
        # One kind at a time: compiling the whole file at once held ~10 MB of syntax tree.
        filename = f"<compiled {mapping.path}: {kind}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks
        exec(compile(source, filename, "exec"), compiler.namespace)
        functions[kind] = compiler.namespace[name]
        sources.append(source)
    return CompiledMapping(mapping, functions, interpreted, "\n".join(sources), compiler.layout)
