"""Load the YAML config, apply overrides, and refuse bad input whole.

Order of precedence (last wins): schema defaults < YAML file < PROVEX_* env
variables < `--set key=value` flags < dedicated CLI flags (applied by the CLI).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from exporter.config.schema import Config

ENV_PREFIX = "PROVEX_"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key, where, and why."""


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


def _error_path(message: str) -> tuple[str, ...]:
    """The key path a msgspec validation message points at."""
    match = _PATH_RE.search(message)
    parts: list[str] = []
    if match:
        parts = re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(1))  # type: ignore[assignment]
        parts = [a or b for a, b in parts]  # type: ignore[misc]
    unknown = _UNKNOWN_RE.search(message)
    if unknown:
        parts.append(unknown.group(1))
    return tuple(parts)


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


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config. Raises ConfigError naming key, location and reason."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    where = "<defaults>"
    if path:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read config: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
            lines = _line_index(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ConfigError(f"{where}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}:1: expected a mapping of sections, got {type(loaded).__name__}")
        data = loaded

    origin: dict[tuple[str, ...], str] = {}
    for dotted, raw in env_overrides(environ):
        _set_path(data, dotted, parse_value(raw))
        origin[tuple(dotted.split("."))] = f"environment {ENV_PREFIX}{dotted.upper().replace('.', '__')}"
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. output.schema=ecs")
        dotted, raw = item.split("=", 1)
        _set_path(data, dotted.strip(), parse_value(raw))
        origin[tuple(dotted.strip().split("."))] = f"--set {dotted.strip()}"

    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        key_path = _error_path(message)
        key = ".".join(key_path) or "<root>"
        for set_key, source in origin.items():
            if set_key[: len(key_path)] == key_path or key_path[: len(set_key)] == set_key:
                raise ConfigError(f"{source}: key {key}: {message}") from None
        for length in range(len(key_path), 0, -1):
            prefix = key_path[:length]
            if prefix in lines:
                raise ConfigError(f"{where}:{lines[prefix]}: key {key}: {message}") from None
        raise ConfigError(f"{where}: key {key}: {message}") from None
    _check(config, where)
    return config


def _check(config: Config, where: str) -> None:
    """Constraints a type cannot say."""
    pages = config.probes.ring_buffer_pages
    if pages <= 0 or pages & (pages - 1):
        raise ConfigError(f"{where}: key probes.ring_buffer_pages: expected a power of two, got {pages}")
    if not 16 <= config.probes.path_max <= 4096:
        raise ConfigError(f"{where}: key probes.path_max: expected 16..4096, got {config.probes.path_max}")
    if config.probes.drain_interval_ms <= 0:
        raise ConfigError(f"{where}: key probes.drain_interval_ms: expected > 0")


def config_to_yaml(config: Config) -> str:
    """The effective config, as `provex run --print-config` shows it."""
    return yaml.safe_dump(msgspec.to_builtins(config), sort_keys=False)
