"""The mapping engine: apply a mapping file (data) to an event or alert.

A mapping file declares record `kinds` (first match wins) and an ordered list
of `items`. Each item, guarded by the kinds it applies to and a `when`
condition, sets document fields from constants or from paths in the record,
optionally through a named transform or a lookup table. Later items override
earlier ones, and every field of a document remembers the item that set it
(its provenance), so a test or a reader can ask "who set event.type?".

File grammar (see mappings/ecs.yaml for a commented example):

    schema: ecs | ocsf
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
`rule`: `rule.NAME` is the rule field NAME (exporter/taxonomy/FIELDS.md) of
that event, the very value the Sigma rules matched, so a document field set
from it carries what the rules used (exporter/siem/homes.py names it as the
field's home in the SIEM).
"""

from __future__ import annotations

import collections.abc
import enum
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from exporter import yamlfile
from exporter.errors import InputError
from exporter.mapping.functions import TRANSFORMS
from exporter.model import Alert, Event
from exporter.taxonomy.fields import FIELDS, EventView
from exporter.yamlfile import YamlFileError

ROOTS = ("record", "event", "alert", "agent", "rule")
_MISSING = object()


class MappingError(InputError):
    """A mapping file (or schema name) that cannot be used, located in the file."""


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
    op: str = "eq"  # what `test` does (an _OPERATORS name), for exporter.mapping.compiled
    arg: Any = None
    get: Callable[[dict[str, Any]], Any] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.get is None:
            object.__setattr__(self, "get", _raw_getter(self.path))

    def holds(self, ctx: dict[str, Any]) -> bool:
        return self.test(self.get(ctx))


@dataclass(frozen=True)
class ValueSpec:
    const: Any = _MISSING
    path: tuple[str, ...] = ()
    fn: str = ""
    table: dict[Any, Any] | None = None
    default: Any = _MISSING
    # `path` compiled (a constant has none): as stored, and made plain
    raw: Callable[[dict[str, Any]], Any] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    get: Callable[[dict[str, Any]], Any] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.path:
            raw = _raw_getter(self.path)
            object.__setattr__(self, "raw", raw)
            object.__setattr__(self, "get", _made_plain(raw))


@dataclass(frozen=True)
class Item:
    id: str
    location: Location
    kinds: frozenset[str] | None
    when: tuple[Predicate, ...]
    sets: tuple[tuple[str, tuple[str, ...], ValueSpec], ...]
    # `sets` compiled: (dotted, parent keys, leaf key, value of ctx or None when nothing is
    # to be written)
    setters: tuple[tuple[str, tuple[str, ...], str, Callable[[dict[str, Any]], Any]], ...] = ()


class Document:
    """One mapped document and, per dotted field, the item that set it (recorded by
    `Mapping.apply`; a compiled mapping's documents carry none: Mapper.explain has it).
    A compiled mapping gives the document's flat `fields` (exporter.mapping.compiled.Fields);
    its nested `body` is made from them when first read."""

    __slots__ = ("_body", "fields", "kind", "provenance")

    def __init__(
        self,
        kind: str,
        body: dict[str, Any] | None = None,
        provenance: dict[str, Item] | None = None,
        fields: Any = None,
    ) -> None:
        self.kind = kind
        self._body = body
        self.provenance = provenance if provenance is not None else {}
        self.fields = fields

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            self._body = self.fields.nested() if self.fields is not None else {}
        return self._body

    def set_by(self, dotted: str) -> str:
        """The id of the item that set `dotted` (or its nearest set ancestor)."""
        if not self.provenance and self.body:
            raise LookupError("this document carries no provenance: Mapper.explain(record) records it")
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            item = self.provenance.get(".".join(parts[:end]))
            if item is not None:
                return item.id
        raise KeyError(dotted)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """A Struct tree as dicts, keeping default values (paths must resolve). Exact types are
    tried first: an alert made plain is ~130 calls of this."""
    cls = value.__class__
    if cls in _SCALARS:
        return value
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if cls is list or cls is tuple:
        return [_plain(v) for v in value]
    if cls is dict:
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return str(value.value)
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


def _fn_input(spec: ValueSpec, ctx: dict[str, Any]) -> Any:
    """A function's argument. A scalar is passed as it is; anything larger is made plain
    once per document: several functions read the same record (the three ATT&CK tactic
    fields read the whole alert, which took 0.2 ms of an alert's 0.5 ms mapping), and a
    whole record is a lazy view. Functions build new values and never change their input."""
    raw = spec.raw(ctx)
    if raw.__class__ in _SCALARS:
        return raw
    memo = ctx.get(_INPUTS)
    if memo is None:
        memo = ctx[_INPUTS] = {}
    value = memo.get(spec.path, _MISSING)
    if value is _MISSING:
        value = memo[spec.path] = _PlainView(raw) if isinstance(raw, msgspec.Struct) else _plain(raw)
    return value


_INPUTS = "_fn_inputs"  # the per-document memo in the context (not a ROOT: no path reaches it)


class _PlainView(collections.abc.Mapping):
    """A record handed to a function whole, as a read-only mapping whose fields are made
    plain when read: the ATT&CK tactic functions read two fields of an alert, not its
    decisive event and evidence (which made the whole alert plain in ~70 us)."""

    __slots__ = ("_fields", "_record")

    def __init__(self, record: msgspec.Struct) -> None:
        self._record = record
        self._fields: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        value = self._fields.get(name, _MISSING)
        if value is _MISSING:
            if name not in self._record.__struct_fields__:
                raise KeyError(name)
            value = self._fields[name] = _plain(getattr(self._record, name))
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._record.__struct_fields__)

    def __len__(self) -> int:
        return len(self._record.__struct_fields__)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _raw_getter(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """`_resolve(ctx, path)` compiled once per path: this runs for every field of every
    document, so the common shapes (a rule field, one attribute) skip the generic walk."""
    root, rest = path[0], path[1:]
    if not rest:
        return lambda ctx: ctx.get(root)
    if root == "rule":  # rule.NAME (the only shape the loader accepts under `rule`)
        name = rest[0]

        def rule_field(ctx: dict[str, Any]) -> Any:
            view = ctx["rule"]
            return view.get(name) if view is not None else None

        return rule_field
    if len(rest) == 1:
        attr = rest[0]

        def attribute(ctx: dict[str, Any]) -> Any:
            value = ctx.get(root)
            if value is None:
                return None
            return value.get(attr) if isinstance(value, dict) else getattr(value, attr, None)

        return attribute
    return lambda ctx: _resolve(ctx, path)


def _made_plain(raw: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """A getter's value made plain (Structs and enums as JSON-ready values)."""

    def plain(ctx: dict[str, Any]) -> Any:
        value = raw(ctx)
        return value if value.__class__ in _SCALARS else _plain(value)

    return plain


class Mapping:
    """A compiled mapping file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._doc = yamlfile.load(path)
        except YamlFileError as exc:
            raise MappingError(exc.problem, exc.source) from None
        except OSError as exc:
            raise MappingError(f"cannot read mapping: {exc.strerror}", str(path)) from None
        spec = self._convert(_MappingFile)
        self.schema = spec.schema
        self.tables = spec.tables
        self.kinds = [
            (name, self._condition(self._convert(_KindSpec, "kinds", name).when, "kinds", name, "when"))
            for name in spec.kinds
        ]
        self.items = self._items(spec.items)
        self._by_kind = {
            name: [i for i in self.items if i.kinds is None or name in i.kinds] for name, _ in self.kinds
        }
        # Kinds that only ask what record and event type it is are remembered per pair.
        self.decided_by_type = all(
            p.path in (("record",), ("event", "type")) for _, ps in self.kinds for p in ps
        )
        self._kind_by_type: dict[tuple[str, Any], str | None] | None = {} if self.decided_by_type else None

    # -- applying -----------------------------------------------------------

    def context(self, record: Event | Alert, agent: dict[str, Any]) -> dict[str, Any]:
        # `rule`: the rule fields of the event, computed on first use (EventView caches them).
        if isinstance(record, Alert):
            view = EventView(record.event) if record.event is not None else None
            return {"record": "alert", "alert": record, "event": record.event, "agent": agent, "rule": view}
        return {"record": "event", "event": record, "alert": None, "agent": agent, "rule": EventView(record)}

    def items_of(self, kind: str) -> list[Item]:
        """The items that apply to documents of `kind`, in order."""
        return self._by_kind[kind]

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
            if all(p.holds(ctx) for p in predicates):
                return name
        return None

    def apply(self, ctx: dict[str, Any]) -> Document | None:
        """The document for one record, or None when no kind matches it."""
        kind = self.kind_of(ctx)
        if kind is None:
            return None
        doc = Document(kind=kind, body={})
        body, provenance = doc.body, doc.provenance
        for item in self._by_kind[kind]:
            if item.when and not all(p.holds(ctx) for p in item.when):
                continue
            for dotted, parents, leaf, value_of in item.setters:
                value = value_of(ctx)
                if value is None:
                    continue
                node = body
                for part in parents:
                    child = node.get(part)
                    if not isinstance(child, dict):
                        child = node[part] = {}
                    node = child
                replaced = node.get(leaf)
                node[leaf] = value
                if isinstance(replaced, dict):
                    # A whole subtree replaced: forget what set its old leaves.
                    prefix = dotted + "."
                    for key in [k for k in provenance if k.startswith(prefix)]:
                        del provenance[key]
                provenance[dotted] = item
        return doc

    def _setter(self, spec: ValueSpec) -> Callable[[dict[str, Any]], Any]:
        """`_value(spec, ctx)`, None when empty, specialised for the common shapes: a
        constant, and a plain path with nothing to transform (most fields of a document)."""
        if spec.const is not _MISSING:
            const = None if _empty(spec.const) else spec.const
            return lambda ctx: const
        if not spec.fn and spec.table is None and spec.default is _MISSING:
            get = spec.get

            def plain(ctx: dict[str, Any]) -> Any:
                value = get(ctx)
                return None if value == "" or value == [] or value == {} else value

            return plain

        def general(ctx: dict[str, Any]) -> Any:
            value = self._value(spec, ctx)
            return None if _empty(value) else value

        return general

    def _value(self, spec: ValueSpec, ctx: dict[str, Any]) -> Any:
        if spec.const is not _MISSING:
            return spec.const
        value = TRANSFORMS[spec.fn](_fn_input(spec, ctx), self.tables) if spec.fn else spec.get(ctx)
        if spec.table is not None and value is not None:
            if isinstance(value, list):
                value = [spec.table.get(v, v) for v in value]
            else:
                value = spec.table.get(value, _MISSING)
        if (value is _MISSING or _empty(value)) and spec.default is not _MISSING:
            return spec.default
        return None if value is _MISSING else value

    # -- compiling ----------------------------------------------------------

    def _fail(self, message: str, *path: object) -> MappingError:
        return MappingError(message, self._doc.error(message, *path).source)

    def _convert(self, tp: type[Any], *at: object, data: Any = ...) -> Any:
        try:
            return self._doc.convert(tp, *at, data=data)
        except YamlFileError as exc:
            raise MappingError(exc.problem, exc.source) from None

    def _path(self, text: str, *at: object) -> tuple[str, ...]:
        parts = tuple(text.split("."))
        if parts[0] not in ROOTS:
            raise self._fail(f"path {text!r} must start with one of {list(ROOTS)}", *at)
        if parts[0] == "rule" and (len(parts) != 2 or parts[1] not in FIELDS):
            raise self._fail(
                f"path {text!r} must be rule.NAME with NAME a rule field "
                "(exporter/taxonomy/FIELDS.md, `provex rules fields`)",
                *at,
            )
        return parts

    def _condition(self, when: dict[str, Any], *at: object) -> tuple[Predicate, ...]:
        predicates = []
        for key, spec in when.items():
            op, arg = self._test(spec, *at, key)
            predicates.append(Predicate(self._path(key, *at, key), _OPERATORS[op](arg), op, arg))
        return tuple(predicates)

    def _test(self, spec: Any, *at: object) -> tuple[str, Any]:
        """The operator and argument of one test (a list is `in`, a scalar `eq`)."""
        if isinstance(spec, list):
            return "in_", list(spec)
        if not isinstance(spec, dict):
            return "eq", spec
        test = self._convert(_Test, *at, data=spec)
        given = [(name, value) for name, value in msgspec.structs.asdict(test).items() if value is not UNSET]
        if len(given) != 1:
            raise self._fail(f"a test has exactly one operator; got {sorted(spec)}", *at)
        ((op, arg),) = given
        return op, arg

    def _value_spec(self, spec: Any, *at: object) -> ValueSpec:
        if not isinstance(spec, dict):
            return ValueSpec(const=spec)
        if "const" in spec:
            return ValueSpec(const=self._convert(_Const, *at, data=spec).const)
        value = self._convert(_ValueFrom, *at, data=spec)
        if value.fn and value.fn not in TRANSFORMS:
            raise self._fail(f"unknown fn {value.fn!r}; known: {sorted(TRANSFORMS)}", *at, "fn")
        table = value.map
        if isinstance(table, str):
            if table not in self.tables:
                raise self._fail(f"unknown table {table!r}; known: {sorted(self.tables)}", *at, "map")
            table = self.tables[table]
        path = self._path(value.from_, *at, "from")
        return ValueSpec(
            path=path,
            fn=value.fn,
            table=table,
            default=_MISSING if value.default is UNSET else value.default,
        )

    def _items(self, specs: list[_ItemSpec]) -> list[Item]:
        known_kinds = {name for name, _ in self.kinds}
        seen: set[str] = set()
        items = []
        for i, spec in enumerate(specs):
            at = ("items", i)
            if spec.id in seen:
                raise self._fail(f"duplicate item id {spec.id!r}", *at, "id")
            seen.add(spec.id)
            for kind in spec.kinds or ():
                if kind not in known_kinds:
                    raise self._fail(f"unknown kind {kind!r}; declared: {sorted(known_kinds)}", *at, "kinds")
            sets = tuple(
                (key, tuple(key.split(".")), self._value_spec(value, *at, "set", key))
                for key, value in spec.set.items()
            )
            items.append(
                Item(
                    id=spec.id,
                    location=Location(self._doc.file, self._doc.line(*at)),
                    kinds=frozenset(spec.kinds) if spec.kinds is not None else None,
                    when=self._condition(spec.when, *at, "when"),
                    sets=sets,
                    setters=tuple(
                        (key, parts[:-1], parts[-1], self._setter(value)) for key, parts, value in sets
                    ),
                )
            )
        return items


# The shape of a mapping file (see the grammar above). Each kind, `when` test and
# value spec is converted on its own, so an error names its own line.
_NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class _MappingFile(msgspec.Struct, forbid_unknown_fields=True):
    schema: _NonEmptyStr
    kinds: Annotated[
        dict[str, Any], msgspec.Meta(min_length=1, description="a non-empty map of NAME: {when: CONDITION}")
    ]
    items: Annotated[list[_ItemSpec], msgspec.Meta(min_length=1)]
    tables: dict[str, dict[Any, Any]] = {}


class _KindSpec(msgspec.Struct, forbid_unknown_fields=True):
    when: dict[str, Any]


class _ItemSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: _NonEmptyStr
    set: Annotated[dict[str, Any], msgspec.Meta(min_length=1, description="a non-empty map of FIELD: VALUE")]
    kinds: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    when: dict[str, Any] = {}


class _Const(msgspec.Struct, forbid_unknown_fields=True):
    const: Any


class _ValueFrom(msgspec.Struct, forbid_unknown_fields=True, rename={"from_": "from"}):
    from_: _NonEmptyStr
    fn: str = ""
    map: str | dict[Any, Any] | None = None  # a table's name or the table itself
    default: Any = UNSET


class _Test(msgspec.Struct, forbid_unknown_fields=True, rename={"in_": "in"}):
    """One operator of a `when` test (exactly one is given)."""

    eq: Any = UNSET
    ne: Any = UNSET
    in_: list[Any] | UnsetType = UNSET
    not_in: list[Any] | UnsetType = UNSET
    lt: float | UnsetType = UNSET
    le: float | UnsetType = UNSET
    gt: float | UnsetType = UNSET
    ge: float | UnsetType = UNSET
    any_bits: int | UnsetType = UNSET
    all_bits: int | UnsetType = UNSET
    no_bits: int | UnsetType = UNSET
    present: bool | UnsetType = UNSET


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any], Callable[[Any], bool]]:
    return lambda arg: lambda v: isinstance(v, int | float) and op(v, arg)


_OPERATORS: dict[str, Callable[[Any], Callable[[Any], bool]]] = {
    "eq": lambda arg: lambda v: v == arg,
    "ne": lambda arg: lambda v: v != arg,
    "in_": lambda arg: lambda v: v in arg,
    "not_in": lambda arg: lambda v: v not in arg,
    "lt": _compare(operator.lt),
    "le": _compare(operator.le),
    "gt": _compare(operator.gt),
    "ge": _compare(operator.ge),
    "any_bits": lambda arg: lambda v: isinstance(v, int) and bool(v & arg),
    "all_bits": lambda arg: lambda v: isinstance(v, int) and v & arg == arg,
    "no_bits": lambda arg: lambda v: isinstance(v, int) and not v & arg,
    "present": lambda arg: lambda v: (not _empty(v)) == arg,
}
