"""Load the YAML config, apply overrides, and refuse bad input whole.

Order of precedence (last wins): schema defaults < YAML file < PROVEX_* env
variables < `--set key=value` flags < dedicated CLI flags (`--schema`, ...).

Every error is one line that names what the user typed (the flag, the
`--set` key, the variable, or file:line and key), the value, and what is
allowed; an unknown key gets the nearest known one as a suggestion.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import yaml

from exporter import yamlfile
from exporter.config.schema import Config
from exporter.config.validate import check_values
from exporter.errors import InputError, Source, raise_all
from exporter.yamlfile import shape_problems, type_at

ENV_PREFIX = "PROVEX_"


class ConfigError(InputError):
    """A config value that cannot be used: where it was typed, and why."""


@dataclass
class Origins:
    """Where each key's value came from, to name it the way the user typed it."""

    file: str = ""
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    overrides: dict[tuple[str, ...], str] = field(default_factory=dict)  # key -> "--schema", ...

    def label(self, key: tuple[str, ...], with_key: bool = True) -> str:
        """`--schema`, `--set output.schema`, `environment PROVEX_...`, or `file:line: key x.y`
        (`file:line` alone when the message names the key itself)."""
        typed = self._typed(key)
        if typed is not None:
            return typed
        source, named = self._in_file(key, with_key)
        return f"{source}: {named}" if source and named else str(source or named or "config")

    def error(self, key: tuple[str, ...], problem: str, with_key: bool = True) -> ConfigError:
        """`problem` of the value at `key`, located where the user typed it."""
        typed = self._typed(key)
        if typed is not None:
            return ConfigError(problem, typed)
        source, named = self._in_file(key, with_key)
        return ConfigError(f"{named}: {problem}" if named else problem, source)

    def _typed(self, key: tuple[str, ...]) -> str | None:
        """The flag, `--set` or variable that set `key` (or a key above or below it)."""
        for length in range(len(key), 0, -1):
            source = self.overrides.get(key[:length])
            if source is not None:
                return source
        for typed, source in self.overrides.items():  # `--set a.b=1` refused at `a`
            if typed[: len(key)] == key:
                return source
        return None

    def _in_file(self, key: tuple[str, ...], with_key: bool) -> tuple[Source | None, str]:
        named = f"key {'.'.join(key) or '<root>'}" if with_key else ""
        for length in range(len(key), 0, -1):
            line = self.lines.get(key[:length])
            if line is not None:
                return Source(self.file, line), named
        return (Source(self.file) if self.file else None), named

    def labels(self) -> dict[tuple[str, ...], str]:
        """What the user typed for each key set in the file, a variable or a flag."""
        return {key: self.label(key) for key in [*self.lines, *self.overrides]}


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


# ---------------------------------------------------------------- loading


def _flag_value(dotted: str, value: Any) -> Any:
    """A flag's text as typed for string keys (`--node-name 007` stays "007"), YAML otherwise."""
    if not isinstance(value, str):
        return value
    tp = type_at(Config, tuple(dotted.split(".")))
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
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
    """Build the effective config. Raises ConfigError naming key, location and reason
    (InputErrors with every one when there are several).

    `flags` are (flag as typed, dotted key, value) from the CLI, applied last;
    `origins`, when given, is filled with where each key came from.
    """
    environ = os.environ if environ is None else environ
    origins = origins if origins is not None else Origins()
    data: dict[str, Any] = {}
    if path:
        origins.file = str(path)
        try:
            doc = yamlfile.load(path)
        except IsADirectoryError:
            raise ConfigError("is a directory; expected a YAML file", f"--config {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read it ({exc.strerror})", f"--config {path}") from None
        except yamlfile.YamlFileError as exc:
            raise ConfigError(exc.problem, exc.source) from None
        origins.lines = doc.lines
        if doc.data is None:
            doc.data = {}
        if not isinstance(doc.data, dict):
            raise ConfigError(
                f"expected a mapping of sections, got {type(doc.data).__name__}", Source(str(path), doc.start)
            )
        data = doc.data

    for dotted, raw in env_overrides(environ):
        _set_path(data, dotted, parse_value(raw))
        origins.overrides[tuple(dotted.split("."))] = (
            f"environment {ENV_PREFIX}{dotted.upper().replace('.', '__')}"
        )
    for item in overrides:
        if "=" not in item:
            raise ConfigError("expected KEY=VALUE (e.g. --set output.schema=ecs)", f"--set {item!r}")
        dotted, raw = (part.strip() for part in item.split("=", 1))
        _set_path(data, dotted, parse_value(raw))
        origins.overrides[tuple(dotted.split("."))] = f"--set {dotted}"
    for flag, dotted, value in flags:
        _set_path(data, dotted, _flag_value(dotted, value))
        origins.overrides[tuple(dotted.split("."))] = flag

    shape = shape_problems(data, Config)
    raise_all(origins.error(p.path, p.text, with_key=not p.names_key) for p in shape)
    config = msgspec.convert(data, Config, strict=True)
    raise_all(origins.error(key, problem) for key, problem in check_values(config))
    return config


def config_to_yaml(config: Config) -> str:
    """The effective config, as `provex run --print-config` shows it."""
    return yaml.safe_dump(msgspec.to_builtins(config), sort_keys=False)
