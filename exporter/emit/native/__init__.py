"""The emit stage's encoders in C: a compiled mapping's documents straight to bytes.

`_encode.pyx` (Cython, built by hatch_build.py beside the correlation core) runs a
`Program`: the constant bytes of one document shape around its values, laid out here once
per shape from the same tree the Python shape functions use (exporter.emit.shapes). It
writes ECS/OCSF JSON documents (`document_json`), OTLP-JSON and OTLP/protobuf bodies; the
Python encoders (the nested body through msgspec, the generated shape functions) stay as the
reference,
and a test compares their bytes on every recorded, fixture, soak and hostile record
(tests/emit/test_native_encode.py).

`output.encoder` picks one: `native` (when built), `python`, or `auto` (native when it is
built, else python, said once in the log).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from exporter import compiled
from exporter.emit.shapes import MAX_SHAPES, Body, Shape, Source, Tree, _tree
from exporter.mapping.compiled import Fields, Layout

log = logging.getLogger("provex.emit")

HERE = Path(__file__).resolve().parent
SOURCES = ("_encode.pyx",)  # hatch_build.ENCODER: what the digest covers


class EncoderUnavailable(RuntimeError):
    """The compiled encoder cannot be used here (the message says why and what to do)."""


def source_digest() -> str:
    """The digest hatch_build.py compiles into the module (hatch_build.source_digest)."""
    return compiled.source_digest(HERE, SOURCES)


def _import() -> ModuleType:
    try:
        from exporter.emit.native import _encode
    except ImportError as exc:
        raise EncoderUnavailable(f"the native encoder is not built ({exc})") from None
    if all((HERE / name).exists() for name in SOURCES) and source_digest() != _encode.SOURCE_DIGEST:
        raise EncoderUnavailable(
            f"the native encoder was built from other sources ({_encode.SOURCE_DIGEST}, these are "
            f"{source_digest()})"
        )
    return _encode


_loaded: ModuleType | EncoderUnavailable | None = None
_fallback_logged = False


def _load_once() -> ModuleType | EncoderUnavailable:
    """The compiled encoder, or why it cannot be used (with what to do), found once."""
    global _loaded
    if _loaded is None:
        try:
            _loaded = _import()
        except EncoderUnavailable as exc:
            _loaded = EncoderUnavailable(
                f"{exc}; rebuild it (`make setup` or `python hatch_build.py`) or set output.encoder: python"
            )
    return _loaded


def load() -> ModuleType:
    """The compiled encoder; EncoderUnavailable when it is missing or stale."""
    loaded = _load_once()
    if isinstance(loaded, EncoderUnavailable):
        raise loaded
    return loaded


def encoder_problem() -> str | None:
    """Why output.encoder native cannot be had here, or None (checked before the start)."""
    loaded = _load_once()
    return str(loaded) if isinstance(loaded, EncoderUnavailable) else None


def wanted(choice: str) -> bool:
    """output.encoder: "native" must have the extension (EncoderUnavailable says why not);
    "auto" takes it when it is built and says once when it is not; "python" never."""
    global _fallback_logged
    problem = None if choice == "python" else encoder_problem()
    if problem and choice == "native":
        raise EncoderUnavailable(problem)
    if problem and not _fallback_logged:
        _fallback_logged = True
        log.warning("encoding in Python", extra={"fields": {"reason": problem}})
    return choice != "python" and problem is None


class ProgramSource(Source):
    """A shape's bytes laid out as a native Program: constants merged, an op per value (and
    per open and close of a length-delimited field)."""

    def __init__(self, delegate: Callable[[Any], bytes]) -> None:
        self.encode = load()
        self.delegate = delegate
        self.consts: list[bytes] = [b""]
        self.ops: list[int] = []
        self.indices: list[int] = []

    def const(self, data: bytes) -> None:
        self.consts[-1] += data

    def op(self, name: str, index: int = -1) -> None:
        """A value written by the program's op `name` (OP_* of _encode.pyx); an op without a
        value (OP_OPEN, OP_CLOSE: a length-delimited field's content) has index -1."""
        self.ops.append(getattr(self.encode, name))
        self.indices.append(index)
        self.consts.append(b"")

    def string(self, index: int) -> None:
        self.op("OP_STRING", index)

    def integer(self, index: int) -> None:
        self.op("OP_INT", index)

    def any(self, index: int) -> None:
        self.op("OP_DELEGATE", index)

    def function(self) -> Body:
        return self.encode.Program(tuple(self.consts), tuple(self.ops), tuple(self.indices), self.delegate)  # type: ignore[no-any-return]


_json = msgspec.json.Encoder().encode


def _document(source: ProgramSource, node: Tree) -> None:
    """A JSON object as msgspec writes the nested body: keys in the order first set."""
    source.const(b"{")
    for n, (key, child) in enumerate(node.items()):
        source.const((b"," if n else b"") + _json(key) + b":")
        if isinstance(child, dict):
            _document(source, child)
        else:
            source.op("OP_JSON", child)
    source.const(b"}")


class NativeShapes:
    """A layout's shapes as native programs (the C `Shapes`, kept by the layout under
    `name`), written by `write(layout, shape)`: the interface of exporter.emit.shapes'
    ShapeEncoder, with the shape found in C. `typed`: the values' types are part of the
    shape (the OTLP layouts write a str or an int inline)."""

    def __init__(self, name: str, write: Callable[[Layout, Shape], Body], typed: bool = True) -> None:
        self.name = name
        self._write = write
        self._typed = typed

    def encode(self, fields: Fields) -> bytes | None:
        layout = fields.layout
        shapes = layout.encoders.get(self.name)
        if shapes is None:
            write = functools.partial(self._write, layout)
            shapes = layout.encoders[self.name] = load().Shapes(write, MAX_SHAPES, self._typed)
        return shapes.encode(fields.values)  # type: ignore[no-any-return]


def _write_document(layout: Layout, shape: Shape) -> Body:
    source = ProgramSource(_json)
    _document(source, _tree(layout, shape[0]))
    return source.function()


def proto_writer(
    key_field: Callable[[Any], bytes], any_: Callable[[Any], bytes]
) -> Callable[[Layout, Shape], Body]:
    """OTLP/protobuf bodies (an AnyValue holding a KeyValueList), the bytes of
    exporter.emit.shapes.proto_writer's functions: `key_field(key)` is a KeyValue's key
    field, `any_` encodes an AnyValue. AnyValue: string_value 1, bool_value 2, int_value 3,
    kvlist_value 6;
    KeyValueList: values 1; KeyValue: key 1, value 2."""

    def write(layout: Layout, shape: Shape) -> Body:
        numbers, types = shape
        source = ProgramSource(any_)

        def value(child: Tree | int) -> None:
            if isinstance(child, dict):
                source.const(b"\x32")
                source.op("OP_OPEN")
                for key, grandchild in child.items():
                    source.const(b"\x0a")
                    source.op("OP_OPEN")
                    source.const(key_field(key) + b"\x12")
                    source.op("OP_OPEN")
                    value(grandchild)
                    source.op("OP_CLOSE")
                    source.op("OP_CLOSE")
                source.op("OP_CLOSE")
            elif types[child] is str:
                source.const(b"\x0a")
                source.op("OP_OPEN")
                source.op("OP_UTF8", child)
                source.op("OP_CLOSE")
            elif types[child] is int:
                source.op("OP_ANY_INT", child)
            elif types[child] is bool:
                source.op("OP_ANY_BOOL", child)
            else:
                source.any(child)

        value(_tree(layout, numbers))
        return source.function()

    return write


_DOCUMENTS = NativeShapes("document-json-native", _write_document, typed=False)


def document_json(fields: Fields) -> bytes | None:
    """A compiled document as the JSON msgspec writes of its nested body; None past
    MAX_SHAPES shapes (the caller encodes the nested body). Raises UnicodeEncodeError where
    msgspec would (a string that is not UTF-8): the caller's reference path escapes it."""
    return _DOCUMENTS.encode(fields)


__all__ = [
    "EncoderUnavailable",
    "NativeShapes",
    "ProgramSource",
    "document_json",
    "encoder_problem",
    "load",
    "wanted",
]
