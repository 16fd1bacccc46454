"""Body encoders compiled per document shape: a compiled mapping's fields straight to bytes.

A compiled mapping (exporter.mapping.compiled) gives a document as numbered fields in the
order they were first set. Documents of one kind mostly have the same fields in the same
order: the same *shape* (the tuple of field numbers). For each shape it meets, an encoder
writes once the source of a function that lays out the whole body around the values, every
key and every nested map already in place, as OTLP-JSON (`json_body`) or OTLP/protobuf
(`proto_body`). What is left per document is to encode the values and join the pieces:
no walk over nested dicts, no call per leaf. The bytes are those of the generic encoders on
the nested body (tests/emit/test_shapes.py).

A shape is the fields' numbers and their values' types (a field a transform fills may hold a
str in one document and a list in the next), so that strings, the bulk of a document, are
written inline. Bounded: at most MAX_SHAPES shapes per mapping and format (~6 MB at most;
the soak's node mix makes 10 per format); documents of further shapes take the generic
encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.mapping.compiled import Fields, Layout

MAX_SHAPES = 128  # a function is ~50 KB; a node's stream shows 10-20 shapes per kind mix
Body = Callable[[tuple[Any, ...]], bytes]
Shape = tuple[tuple[int, ...], tuple[type, ...]]  # the fields' numbers, their values' types
Tree = dict[str, "Tree | int"]  # a map of the body: key -> nested map, or the value's index


def _tree(layout: Layout, numbers: tuple[int, ...]) -> Tree:
    """The body's maps, in the order their first field was set (as the nested body)."""
    root: Tree = {}
    for index, number in enumerate(numbers):
        *parents, leaf = layout.paths[number]
        node = root
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = index
    return root


class Source:
    """Where a shape's layout is written: constant bytes, and per value how it is encoded
    (`string`: a str as JSON, `integer`: an int's digits, `any`: the format's value
    encoder). `_Source` writes a Python function; exporter.emit.native a C program."""

    def const(self, data: bytes) -> None:
        raise NotImplementedError

    def string(self, index: int) -> None:
        raise NotImplementedError

    def integer(self, index: int) -> None:
        raise NotImplementedError

    def any(self, index: int) -> None:
        raise NotImplementedError

    def function(self) -> Body:
        raise NotImplementedError


class _Source(Source):
    """A Python function being written: the pieces of its result, constants merged."""

    def __init__(self, helpers: dict[str, Any] | None = None) -> None:
        self.helpers = helpers or {}
        self.namespace: dict[str, Any] = {}
        self.statements: list[str] = []
        self.pieces: list[str] = []
        self._constant = b""

    def const(self, data: bytes) -> None:
        self._constant += data

    def expr(self, code: str) -> None:
        self._flush()
        self.pieces.append(code)

    def _flush(self) -> None:
        if self._constant:
            name = f"K{len(self.namespace)}"
            self.namespace[name] = self._constant
            self.pieces.append(name)
            self._constant = b""

    def string(self, index: int) -> None:
        self.expr(f"_json(v[{index}])")

    def integer(self, index: int) -> None:
        self.expr(f"b'%d' % v[{index}]")

    def any(self, index: int) -> None:
        self.expr(f"_any(v[{index}])")

    def function(self) -> Body:
        self._flush()
        lines = ["def body(v):", *(f"    {s}" for s in self.statements)]
        lines.append(f"    return b''.join(({', '.join(self.pieces)},))" if self.pieces else "    return b''")
        namespace = {**self.helpers, **self.namespace}
        exec(compile("\n".join(lines), "<provex body shape>", "exec"), namespace)
        return namespace["body"]  # type: ignore[no-any-return]


class ShapeEncoder:
    """The body of `Fields` through the function of its shape, compiled on first sight."""

    def __init__(self, name: str, write: Callable[[Layout, Shape], Body]) -> None:
        self.name = name  # the format, the key under which a layout keeps its functions
        self._write = write

    def encode(self, fields: Fields) -> bytes | None:
        """The body's bytes; None when this shape has no function (the caller encodes the
        nested body)."""
        layout = fields.layout
        functions = layout.encoders.get(self.name)
        if functions is None:
            functions = layout.encoders[self.name] = {}
        values = tuple(fields.values.values())
        shape = (tuple(fields.values), tuple(map(type, values)))
        function = functions.get(shape)
        if function is None:
            if len(functions) >= MAX_SHAPES:
                return None
            function = functions[shape] = self._write(layout, shape)
        return function(values)


def json_writer(
    head: Callable[[Any], bytes],
    json: Callable[[Any], bytes],
    any_: Callable[[Any], bytes],
    source_of: Callable[[], Source] | None = None,
) -> Callable[[Layout, Shape], Body]:
    """OTLP-JSON bodies: `head(key)` is `{"key":K,"value":`, `json` encodes a str, `any_` an
    AnyValue; `source_of()` where the layout is written (a Python function by default)."""

    def write(layout: Layout, shape: Shape) -> Body:
        numbers, types = shape
        source = source_of() if source_of is not None else _Source({"_json": json, "_any": any_})

        def kvlist(node: Tree) -> None:
            source.const(b'{"kvlistValue":{"values":[')
            for n, (key, child) in enumerate(node.items()):
                source.const((b"," if n else b"") + head(key))
                if isinstance(child, dict):
                    kvlist(child)
                elif types[child] is str:
                    source.const(b'{"stringValue":')
                    source.string(child)
                    source.const(b"}")
                elif types[child] is int:  # int64 is a string in protobuf's JSON
                    source.const(b'{"intValue":"')
                    source.integer(child)
                    source.const(b'"}')
                else:
                    source.any(child)
                source.const(b"}")
            source.const(b"]}}")

        root = _tree(layout, numbers)
        if root:
            kvlist(root)
        else:
            source.const(b'{"kvlistValue":{}}')
        return source.function()

    return write


def proto_writer(
    key_field: Callable[[Any], bytes],
    any_: Callable[[Any], bytes],
    varint: Callable[[int], bytes],
    small_varints: list[bytes],
    string_head: Callable[[Any, int], bytes],
    heads: Callable[[Any], list[bytes | None] | None],
) -> Callable[[Layout, Shape], Body]:
    """OTLP/protobuf bodies (an AnyValue holding a KeyValueList): `key_field(key)` is a
    KeyValue's key field, `any_` encodes an AnyValue, `varint` a length (`small_varints[n]`
    for n < 16384); `string_head(key, n)` is a map entry up to its string of n bytes, cached
    for short strings in the list `heads(key)`. Lengths are worked out inside first, so that
    each piece is written once."""

    def write(layout: Layout, shape: Shape) -> Body:
        numbers, types = shape
        source = _Source({"_any": any_, "_varint": varint, "_V": small_varints, "_head": string_head})
        names = iter(range(1 << 30))

        def length_of_varint(var: str) -> str:
            return f"(1 if {var} < 128 else 2 if {var} < 16384 else len(_varint({var})))"

        def value(child: Tree | int) -> tuple[str, list[Callable[[], None]]]:
            """Statements for one value: the variable of its AnyValue's length, and how to
            write its pieces (after every length is known)."""
            n = next(names)
            if isinstance(child, dict):
                entries = [entry(key, grandchild) for key, grandchild in child.items()]
                source.statements.append(f"c{n} = {' + '.join(e[0] for e in entries)}")
                source.statements.append(f"a{n} = 1 + {length_of_varint(f'c{n}')} + c{n}")

                def pieces() -> None:
                    source.const(b"\x32")
                    source.expr(f"_V[c{n}] if c{n} < 16384 else _varint(c{n})")
                    for _, write_entry in entries:
                        write_entry()

                return f"a{n}", [pieces]
            if types[child] is str:
                source.statements.append(f"d{n} = v[{child}].encode()")
                source.statements.append(f"n{n} = len(d{n})")
                source.statements.append(f"a{n} = 1 + {length_of_varint(f'n{n}')} + n{n}")

                def pieces() -> None:
                    source.const(b"\x0a")
                    source.expr(f"_V[n{n}] if n{n} < 16384 else _varint(n{n})")
                    source.expr(f"d{n}")

                return f"a{n}", [pieces]
            source.statements.append(f"d{n} = _any(v[{child}])")
            source.statements.append(f"a{n} = len(d{n})")
            return f"a{n}", [lambda: source.expr(f"d{n}")]

        def entry(key: str, child: Tree | int) -> tuple[str, Callable[[], None]]:
            """A KeyValue entry of a map (field 1): the expression of its whole length, and
            how to write it."""
            if not isinstance(child, dict) and types[child] is str:
                return string_entry(key, child)
            any_length, write_value = value(child)
            n = next(names)
            field = key_field(key)
            source.statements.append(
                f"k{n} = {len(field) + 1} + {length_of_varint(any_length)} + {any_length}"
            )

            def pieces() -> None:
                source.const(b"\x0a")
                source.expr(f"_V[k{n}] if k{n} < 16384 else _varint(k{n})")
                source.const(field + b"\x12")
                source.expr(f"_V[{any_length}] if {any_length} < 16384 else _varint({any_length})")
                for write in write_value:
                    write()

            return f"(1 + {length_of_varint(f'k{n}')} + k{n})", pieces

        def string_entry(key: str, child: int) -> tuple[str, Callable[[], None]]:
            """An entry whose value is a str: its head from the key's cache, then the bytes."""
            n = next(names)
            source.namespace[f"Y{n}"] = key
            cached = heads(key)
            if cached is not None:
                source.namespace[f"H{n}"] = cached
                head = f"(H{n}[n{n}] if n{n} < {len(cached)} else None) or _head(Y{n}, n{n})"
            else:
                head = f"_head(Y{n}, n{n})"
            source.statements += [f"d{n} = v[{child}].encode()", f"n{n} = len(d{n})", f"h{n} = {head}"]

            def pieces() -> None:
                source.expr(f"h{n}")
                source.expr(f"d{n}")

            return f"(len(h{n}) + n{n})", pieces

        root = _tree(layout, numbers)
        if not root:
            source.const(b"\x32\x00")
            return source.function()
        _, write_root = value(root)
        for write_pieces in write_root:
            write_pieces()
        return source.function()

    return write
