"""Value checks beyond a field's type and bounds (which msgspec enforces from
exporter.config.schema): the named checks of exporter.config.checks, and keys that
contradict each other.

`check_values(config)` yields (key path, problem) for each value the agent could not
use; the loader names where the value came from.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

import msgspec

from exporter.config.checks import CHECKS, check_name
from exporter.config.schema import Config

Problem = tuple[tuple[str, ...], str]


def url_problem(text: str) -> str | None:
    """Why `text` is not a usable http(s) URL, or None."""
    problem = CHECKS["url"].problem(text)
    if problem and "://" not in text and not CHECKS["url"].problem("http://" + text):
        problem += f"; a URL needs its scheme: http://{text} or https://{text}?"
    return problem


def check_values(config: Config) -> Iterator[Problem]:
    yield from named_checks(config, Config)
    p, s = config.probes, config.server
    if p.cgroup_subtree and p.monitor == "all":
        yield ("probes", "cgroup_subtree"), "is set with monitor=all; the subtree scopes monitor=containers"
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        missing = "tls_key_file" if s.tls_cert_file else "tls_cert_file"
        yield ("server", missing), "is empty: TLS needs both server.tls_cert_file and server.tls_key_file"


def named_checks(value: Any, tp: Any, path: tuple[str, ...] = ()) -> Iterator[Problem]:
    """The named check of every annotated field under `value` (a `tp`), list items included."""
    name = check_name(tp)
    if name is not None:
        problem = url_problem(value) if name == "url" else CHECKS[name].problem(value)
        if problem:
            yield path, problem
        return
    tp = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is not None:
            members = [t for t in typing.get_args(tp) if t is not type(None)]
            yield from named_checks(value, members[0], path)
    elif typing.get_origin(tp) is list:
        for i, item in enumerate(value):
            yield from named_checks(item, typing.get_args(tp)[0], (*path, str(i)))
    elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        for field in msgspec.structs.fields(tp):
            yield from named_checks(getattr(value, field.name), field.type, (*path, field.encode_name))
