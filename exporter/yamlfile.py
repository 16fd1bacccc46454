"""YAML files written by people: parsed with the line of every key, checked against a
msgspec Struct, and refused with `file:line`, the key and what was expected.

The config, the mapping files, the Sigma rules and the scenario library all read
their files here. A document's shape is one msgspec Struct with
`forbid_unknown_fields`; its error names the key the way the file spells it
(`items.3.set`), the value and what the schema allows, and an unknown key gets the
nearest known one.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from exporter.errors import InputError, Source

KeyPath = tuple[str, ...]  # a key path in a document; list items by their index ("0", "1", ...)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlFileError(InputError):
    """A file that cannot be used; `str()` is `file:line[:column]: problem`."""

    def __init__(self, file: str, line: int, problem: str, column: int = 0) -> None:
        super().__init__(problem, Source(file, line, column))


@dataclass
class YamlDoc:
    """One YAML document: its data, and the line of every key and list item in it."""

    file: str
    data: Any
    start: int = 1  # the document's first line
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, *path: object) -> int:
        """The line of `path`, else of its nearest ancestor found, else the document's."""
        parts = tuple(str(p) for p in path)
        for end in range(len(parts), 0, -1):
            line = self.lines.get(parts[:end])
            if line is not None:
                return line
        return self.start

    def error(self, problem: str, *path: object) -> YamlFileError:
        return YamlFileError(self.file, self.line(*path), problem)

    def regex(self, pattern: str, *path: object) -> re.Pattern[str]:
        """`pattern` compiled; a bad one raises YamlFileError at the line of `path`."""
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise self.error(f"not a regular expression: {exc}", *path) from None

    def convert(self, tp: type[Any], *at: object, data: Any = ...) -> Any:
        """The value at `at` (or `data`, which came from there) as a `tp`; a value of
        the wrong shape raises YamlFileError at the line of the key that is wrong."""
        prefix = tuple(str(p) for p in at)
        value = _value_at(self.data, prefix) if data is ... else data
        try:
            return msgspec.convert(value, tp, strict=True)
        except msgspec.ValidationError as exc:
            problem = shape_problem(exc, value, tp, prefix)
            raise self.error(str(problem), *problem.path) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # SafeConstructor refuses it with its own message
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _index(root: yaml.Node) -> dict[KeyPath, int]:
    """The 1-based line of each key and list item under `root`."""
    lines: dict[KeyPath, int] = {}
    seen: set[int] = set()  # an alias repeats a node (possibly itself): index it once

    def walk(node: yaml.Node, path: KeyPath) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, str(key_node.value))
                lines.setdefault(key, key_node.start_mark.line + 1)
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    walk(root, ())
    return lines


def parse(text: str, file: str) -> list[YamlDoc]:
    """Every document of a YAML stream; bad YAML raises YamlFileError at its line."""
    loader = _Loader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            lines = _index(node)  # before constructing: a merge key (<<) rewrites the node
            docs.append(YamlDoc(file, loader.construct_document(node), node.start_mark.line + 1, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise YamlFileError(file, line, f"not valid YAML: {exc.problem or exc}", column) from None
    except yaml.YAMLError as exc:
        raise YamlFileError(file, 0, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return docs


def load(path: str | Path) -> YamlDoc:
    """The one document of a file (data None when it is empty). OSError when the file
    cannot be read; YamlFileError when it is not one document of valid UTF-8 YAML."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(file, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    docs = parse(text, file)
    if len(docs) > 1:
        raise docs[1].error("expected one YAML document, found a second one")
    return docs[0] if docs else YamlDoc(file, None)


# ---------------------------------------------------------------- shape errors

_AT = re.compile(r" - at `\$((?:\.[A-Za-z0-9_-]+|\[\d+\]|\[\.\.\.\])*)`")
_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _error_path(exc: msgspec.ValidationError) -> tuple[KeyPath, str]:
    """The key path a msgspec error points at, and what kind of problem it is: "unknown"
    (the last key is not in the schema), "missing" (the last key is required), "value",
    or "inexact": msgspec writes a dict key as `[...]`, so the path stops before it."""
    message = str(exc)
    match = _AT.search(message)
    where = match.group(1) if match else ""
    parts = [name or index for name, index in _PART.findall(where.split("[...]")[0])]
    if "[...]" in where:
        return tuple(parts), "inexact"
    for kind, pattern in (("unknown", _UNKNOWN), ("missing", _MISSING)):
        found = pattern.search(message)
        if found:
            return (*parts, found.group(1)), kind
    return tuple(parts), "value"


def _strip(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def _struct_fields(tp: Any) -> dict[str, Any]:
    """A Struct's keys as the file spells them, and their types."""
    return {f.encode_name: f.type for f in msgspec.structs.fields(tp)}


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _unwrap(tp: Any) -> Any:
    """`tp` without Annotated and, for `X | None`, without the None."""
    tp = _strip(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = _strip(members[0]) if len(members) == 1 else None
    return tp


def type_at(tp: Any, path: KeyPath) -> Any:
    """The schema type of the value at `path` under `tp` (None when unknown)."""
    for part in path:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if part.isdigit() and origin is list:
            tp = typing.get_args(tp)[0]
        elif _is_struct(tp):
            tp = _struct_fields(tp).get(part)
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


_BOUNDS = ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt"))


def describe(tp: Any) -> str:
    """What a value of type `tp` looks like, for an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        metas = [m for m in args[1:] if isinstance(m, msgspec.Meta)]
        if any(m.description for m in metas):
            return next(m.description for m in metas if m.description)
        text = describe(args[0])
        if any(m.min_length == 1 for m in metas):
            text = "a non-empty " + text.removeprefix("a ").removeprefix("an ")
        bounds = {op: getattr(m, name) for m in metas for op, name in _BOUNDS if getattr(m, name) is not None}
        if ">=" in bounds and "<=" in bounds:
            return f"{text} {bounds['>=']}..{bounds['<=']}"
        parts = [f"{op} {value}" for op, value in bounds.items()]
        return f"{text} {' and '.join(parts)}" if parts else text
    if origin is typing.Literal:
        return "one of: " + ", ".join(repr(a) if a == "" else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a not in (type(None), msgspec.UnsetType)]
        return " or ".join(parts) + (" (or empty)" if type(None) in args else "")
    if origin is list:
        item = describe(args[0])
        if typing.get_origin(args[0]) is typing.Annotated:
            return f"a list, e.g. [a, b], each {item}"
        if item.startswith("one of"):
            return f"a list, e.g. [a, b], of {item}"
        return f"a list of {item.removeprefix('a ').removeprefix('an ')}s, e.g. [a, b]"
    if origin is dict:
        return "a map of key: value"
    if _is_struct(tp):
        return f"a mapping with keys {', '.join(_struct_fields(tp))}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, "any value" if tp is Any else str(tp))


def _value_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part, data.get(int(part)) if part.isdigit() else None)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _nearest(name: str, known: list[str]) -> str | None:
    """The known key `name` is likely a typo of, compared without the prefix all known
    keys share (`x-provex-lineage` is no typo of `x-provex-key`)."""
    prefix = os.path.commonprefix(known) if len(known) > 1 else ""  # noqa: RUF071 (text, not paths)
    if not name.startswith(prefix):
        prefix = ""
    rest = {k[len(prefix) :]: k for k in known}
    near = difflib.get_close_matches(name[len(prefix) :], list(rest), 1, 0.7)
    return rest[near[0]] if near else None


@dataclass(frozen=True)
class ShapeProblem:
    """What is wrong where: `text` names the key itself when `names_key`."""

    path: KeyPath
    text: str
    names_key: bool

    def __str__(self) -> str:
        return self.text if self.names_key else f"key {'.'.join(self.path) or '<root>'}: {self.text}"


def shape_problem(exc: msgspec.ValidationError, data: Any, tp: Any, prefix: KeyPath = ()) -> ShapeProblem:
    """Where a msgspec error is (the full key path, `prefix` first) and what to say:
    `unknown key a.b; did you mean a.c?`, `missing key a.b; expected ...`, or for a
    value `'x' is not allowed; expected an integer` (the key is said by the caller)."""
    rel, kind = _error_path(exc)
    path = (*prefix, *rel)
    if kind == "unknown":
        return _unknown_key(path, _unwrap(type_at(tp, rel[:-1])))
    expected = type_at(tp, rel)
    if kind == "missing":
        return _missing_key(path, expected)
    if kind == "inexact" or expected is None:
        return ShapeProblem(path, str(exc), False)
    value = _value_at(data, rel)
    return ShapeProblem(path, f"{_shown(value)} is not allowed; expected {describe(expected)}", False)


def _unknown_key(path: KeyPath, parent: Any) -> ShapeProblem:
    dotted = ".".join(path)
    known = list(_struct_fields(parent)) if _is_struct(parent) else []
    near = _nearest(path[-1], known)
    if near:
        return ShapeProblem(path, f"unknown key {dotted}; did you mean {'.'.join((*path[:-1], near))}?", True)
    return ShapeProblem(path, f"unknown key {dotted}; known here: {', '.join(known)}", True)


def _missing_key(path: KeyPath, expected: Any) -> ShapeProblem:
    return ShapeProblem(path, f"missing key {'.'.join(path)}; expected {describe(expected)}", True)


def shape_problems(data: Any, tp: Any, prefix: KeyPath = ()) -> list[ShapeProblem]:
    """Every shape problem of `data` as a `tp`, not only the first (msgspec stops there):
    the keys of a Struct are checked one by one, so all errors of a file come together."""
    struct = _unwrap(tp)
    if not (_is_struct(struct) and isinstance(data, dict)):
        try:
            msgspec.convert(data, tp, strict=True)
        except msgspec.ValidationError as exc:
            return [shape_problem(exc, data, tp, prefix)]
        return []
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    out: list[ShapeProblem] = []
    for key, value in data.items():
        spec = fields.get(key) if isinstance(key, str) else None
        if spec is None:
            out.append(_unknown_key((*prefix, str(key)), struct))
        else:
            out += shape_problems(value, spec.type, (*prefix, key))
    out += [
        _missing_key((*prefix, name), f.type) for name, f in fields.items() if f.required and name not in data
    ]
    return out
