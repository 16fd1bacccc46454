"""Load the YAML config, apply overrides, and refuse bad input whole.

Order of precedence (last wins): schema defaults < YAML file < PROVEX_* env
variables < `--set key=value` flags < dedicated CLI flags (`--schema`, ...).

Every error is one line that names what the user typed (the flag, the
`--set` key, the variable, or file:line and key), the value, and what is
allowed; an unknown key gets the nearest known one as a suggestion.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from exporter.config.schema import Config
from exporter.config.validate import check_values

ENV_PREFIX = "PROVEX_"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key, where, and why."""


@dataclass
class Origins:
    """Where each key's value came from, to name it the way the user typed it."""

    file: str = ""
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    overrides: dict[tuple[str, ...], str] = field(default_factory=dict)  # key -> "--schema", ...

    def label(self, key: tuple[str, ...], with_key: bool = True) -> str:
        """`--schema`, `--set output.schema`, `environment PROVEX_...`, or `file:line: key x.y`
        (`file:line` alone when the message names the key itself)."""
        for length in range(len(key), 0, -1):
            source = self.overrides.get(key[:length])
            if source is not None:
                return source
        for typed, source in self.overrides.items():  # `--set a.b=1` refused at `a`
            if typed[: len(key)] == key:
                return source
        named = f": key {'.'.join(key) or '<root>'}" if with_key else ""
        for length in range(len(key), 0, -1):
            line = self.lines.get(key[:length])
            if line is not None:
                return f"{self.file}:{line}{named}"
        if self.file:
            return f"{self.file}{named}"
        return named.removeprefix(": ") or "config"

    def labels(self) -> dict[tuple[str, ...], str]:
        """What the user typed for each key set in the file, a variable or a flag."""
        return {key: self.label(key) for key in [*self.lines, *self.overrides]}


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML document to its 1-based line number."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, str(key_node.value))
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                key = (*path, str(i))
                index[key] = item.start_mark.line + 1
                walk(item, key)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return index


_PATH_RE = re.compile(r"at `\$((?:\.[A-Za-z0-9_]+|\[\d+\])*)`")
_UNKNOWN_RE = re.compile(r"unknown field `([^`]+)`")


def _error_path(message: str) -> tuple[tuple[str, ...], bool]:
    """The key path a msgspec validation message points at, and whether the key is unknown."""
    match = _PATH_RE.search(message)
    parts: list[str] = []
    if match:
        parts = [a or b for a, b in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(1))]
    unknown = _UNKNOWN_RE.search(message)
    if unknown:
        parts.append(unknown.group(1))
    return tuple(parts), unknown is not None


def parse_value(text: str) -> Any:
    """A --set / env value: YAML scalar or flow syntax (`true`, `5`, `[a, b]`)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """PROVEX_OUTPUT__SCHEMA=ecs -> ("output.schema", "ecs")."""
    out = []
    for name, value in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            out.append((dotted, value))
    return out


# ---------------------------------------------------------------- messages


def _struct_fields(tp: Any) -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(tp)}


def all_keys(tp: Any = Config, prefix: str = "") -> list[str]:
    """Every dotted config key (`output.otlp.endpoint`, ...)."""
    keys = []
    for name, sub in _struct_fields(tp).items():
        if isinstance(sub, type) and issubclass(sub, msgspec.Struct):
            keys += all_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _type_at(path: tuple[str, ...]) -> Any:
    """The schema type of the value at `path` (a list index gives the item type)."""
    tp: Any = Config
    for part in path:
        if part.isdigit() and typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            tp = _struct_fields(tp).get(part)
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def describe(tp: Any) -> str:
    """What a value of type `tp` looks like, for an error message."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of: " + ", ".join(repr(a) if a == "" else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" (or empty)" if type(None) in args else "")
    if origin is list:
        item = describe(args[0])
        if item.startswith("one of"):
            return f"a list, e.g. [a, b], of {item}"
        return f"a list of {item.removeprefix('a ').removeprefix('an ')}s, e.g. [a, b]"
    if origin is dict:
        return "a map of key: value"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return f"a section with keys {', '.join(_struct_fields(tp))}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, str(tp))


def _value_at(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _problem(data: dict[str, Any], path: tuple[str, ...], unknown: bool, message: str) -> str:
    if unknown:
        dotted = ".".join(path)
        parent = _type_at(path[:-1])
        siblings = list(_struct_fields(parent)) if parent is not None else []
        near = difflib.get_close_matches(path[-1], siblings, 1, 0.7)
        if near:
            return f"unknown key {dotted}; did you mean {'.'.join((*path[:-1], near[0]))}?"
        return f"unknown key {dotted}; known here: {', '.join(siblings)}"
    tp = _type_at(path)
    value = _value_at(data, path)
    if tp is None:
        return message
    return f"{value!r} is not allowed; expected {describe(tp)}"


# ---------------------------------------------------------------- loading


def _flag_value(dotted: str, value: Any) -> Any:
    """A flag's text as typed for string keys (`--node-name 007` stays "007"), YAML otherwise."""
    if not isinstance(value, str):
        return value
    tp = _type_at(tuple(dotted.split(".")))
    if tp is str or typing.get_origin(tp) is typing.Literal:
        return value
    return parse_value(value)


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    flags: Iterable[tuple[str, str, Any]] = (),
    origins: Origins | None = None,
) -> Config:
    """Build the effective config. Raises ConfigError naming key, location and reason.

    `flags` are (flag as typed, dotted key, value) from the CLI, applied last;
    `origins`, when given, is filled with where each key came from.
    """
    environ = os.environ if environ is None else environ
    origins = origins if origins is not None else Origins()
    data: dict[str, Any] = {}
    if path:
        origins.file = str(path)
        try:
            text = Path(path).read_text()
        except IsADirectoryError:
            raise ConfigError(f"--config {path}: is a directory, expected a YAML file") from None
        except OSError as exc:
            raise ConfigError(f"--config {path}: cannot read config: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
            origins.lines = _line_index(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}:1: expected a mapping of sections, got {type(loaded).__name__}")
        data = loaded

    for dotted, raw in env_overrides(environ):
        _set_path(data, dotted, parse_value(raw))
        origins.overrides[tuple(dotted.split("."))] = (
            f"environment {ENV_PREFIX}{dotted.upper().replace('.', '__')}"
        )
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set output.schema=ecs")
        dotted, raw = (part.strip() for part in item.split("=", 1))
        _set_path(data, dotted, parse_value(raw))
        origins.overrides[tuple(dotted.split("."))] = f"--set {dotted}"
    for flag, dotted, value in flags:
        _set_path(data, dotted, _flag_value(dotted, value))
        origins.overrides[tuple(dotted.split("."))] = flag

    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        key_path, unknown = _error_path(str(exc))
        problem = _problem(data, key_path, unknown, str(exc))
        raise ConfigError(f"{origins.label(key_path, with_key=not unknown)}: {problem}") from None
    for key, problem in check_values(config):
        raise ConfigError(f"{origins.label(key)}: {problem}")
    return config


def config_to_yaml(config: Config) -> str:
    """The effective config, as `provex run --print-config` shows it."""
    return yaml.safe_dump(msgspec.to_builtins(config), sort_keys=False)
