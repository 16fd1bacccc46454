"""The chart refuses exactly what the agent refuses: for every bound of every config key, a
value just inside passes `provex` (load_config), the generated values.schema.json
(jsonschema) and the real `helm template`; a value just outside fails all three.

The bounds are found by walking the config Structs (exporter/config/schema.py), so a key
that gains a bound is tested without a line here; the named checks (URL, HOST:PORT,
IP[:PORT], a cgroup path without ..) bring their edge cases from SAMPLES, each of which
must exist, and what a check admits must also be accepted by the code that uses the value.
"""

from __future__ import annotations

import copy
import json
import subprocess
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import msgspec
import pytest
import yaml

from exporter.config import load_config
from exporter.config.checks import CHECKS, check_name
from exporter.config.schema import Config
from exporter.errors import InputError
from exporter.model.addresses import parse_host_port, parse_ip_port
from tests.deploy.chart import CHART

Case = tuple[str, Any, bool]  # dotted key, value, accepted?

# Edge cases of the named checks: (value, accepted).
SAMPLES: dict[str, list[tuple[str, bool]]] = {
    "url": [
        ("", True),
        ("http://collector:4317", True),
        ("https://collector.example:443/v1/logs", True),
        ("http://127.0.0.1", True),
        ("http://[::1]:4317", True),
        ("http://[::ffff:10.0.0.1]:65535", True),
        ("http://c:1", True),
        ("ftp://x", False),
        ("garbage", False),
        ("collector:4317", False),
        ("http://[::1:4317", False),
        ("http://[1.2.3.4]:4317", False),
        ("http://c:0", False),
        ("http://c:65536", False),
        ("http://c:", False),
        ("http://", False),
        ("http://a b:4317", False),
        ("http://c:4317/x?y=1", False),
        ("http://user@c:4317", False),
        ("http://c:4317\n", False),
    ],
    "host_port": [
        ("", True),
        (":9464", True),
        ("127.0.0.1:9464", True),
        ("[::1]:9464", True),
        ("node-a:0", True),
        ("h:65535", True),
        ("abc", False),
        ("9464", False),
        ("::1:9464", False),
        ("[::1]", False),
        ("[1.2.3.4]:80", False),
        ("h:65536", False),
        ("h:", False),
        ("a b:80", False),
        ("[::1:80", False),
        ("h:80\n", False),
    ],
    "ip_port": [
        ("10.96.0.1", True),
        ("10.96.0.1:443", True),
        ("fd00::1", True),
        ("[fd00::1]:6443", True),
        ("10.96.0.256", False),
        ("kubernetes:443", False),
        ("10.96.0.1:0", False),
        ("10.96.0.1:65536", False),
        ("[fd00::1]", False),
        ("01.2.3.4", False),
    ],
    "cgroup_path": [
        ("", True),
        ("/", True),
        ("/node-a", True),
        ("kubepods.slice/x", True),
        ("/a/.../b", True),
        ("/a/..b/.c", True),
        ("..", False),
        ("/..", False),
        ("/a/../b", False),
        ("a/..", False),
        ("../x", False),
    ],
    "abs_path": [
        ("/", True),
        ("/usr/bin/runc", True),
        ("/host/", True),
        ("//usr//sbin/.x/runc", True),
        ("", False),
        ("usr/bin/runc", False),
        ("/usr/../bin/runc", False),
        ("/..", False),
    ],
}


def _strip(tp: Any) -> tuple[Any, list[msgspec.Meta]]:
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        return args[0], [m for m in args[1:] if isinstance(m, msgspec.Meta)]
    return tp, []


def _number_cases(key: str, tp: Any, metas: list[msgspec.Meta]) -> list[Case]:
    step = 1 if tp is int else 0.001
    cases: list[Case] = []
    for meta in metas:
        if meta.ge is not None:
            cases += [(key, meta.ge, True), (key, meta.ge - step, False)]
        if meta.gt is not None:
            cases += [(key, meta.gt + step, True), (key, meta.gt, False)]
        if meta.le is not None:
            cases += [(key, meta.le, True), (key, meta.le + step, False)]
        if meta.lt is not None:
            cases += [(key, meta.lt - step, True), (key, meta.lt, False)]
    return cases


def _literal_cases(key: str, members: tuple[Any, ...]) -> list[Case]:
    """The first and last member inside; outside, a near miss of the same kind."""
    cases: list[Case] = [(key, m, True) for m in (members[0], members[-1])]
    if all(isinstance(m, int) for m in members):
        near = next(m + 1 for m in members if m + 1 not in members)
        outside = [near, max(members) * 2]
    else:
        outside = ["bogus", *[str(m).upper() for m in members[:1] if str(m).upper() not in members]]
    return cases + [(key, v, False) for v in outside]


def bound_cases(tp: Any = Config, prefix: str = "") -> list[Case]:
    """A value just inside and one just outside every bound under `tp`."""
    cases: list[Case] = []
    for field in msgspec.structs.fields(tp):
        key = f"{prefix}{field.encode_name}"
        cases += _cases_for(key, field.type)
    return cases


def _cases_for(key: str, tp: Any) -> list[Case]:
    name = check_name(tp)
    if name is not None:
        return [(key, value, ok) for value, ok in SAMPLES[name]]
    tp, metas = _strip(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return bound_cases(tp, key + ".")
    if origin in (typing.Union, types.UnionType):
        (member,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _cases_for(key, member)
    if origin is list:  # each item's bound, as a one-item list
        return [(k, [v], ok) for k, v, ok in _cases_for(key, typing.get_args(tp)[0])]
    if origin is typing.Literal:
        return _literal_cases(key, typing.get_args(tp))
    if tp in (int, float):
        return _number_cases(key, tp, metas)
    return []


CASES = bound_cases()


def nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def agent_accepts(key: str, value: Any) -> bool:
    try:
        load_config(None, environ={}, flags=[(f"--set {key}", key, value)])
    except InputError:
        return False
    return True


def _values_schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def schema_accepts(key: str, value: Any) -> bool:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    values = copy.deepcopy(defaults)
    values["agent"]["config"] = nested(key, value)
    return not list(jsonschema.Draft7Validator(_values_schema()).iter_errors(values))


def test_every_kind_of_bound_is_found() -> None:
    keys = {k for k, _, _ in CASES}
    # one of each: integer and float bounds, an enum, a power of two, each named check, list items
    for key in [
        "probes.path_max",
        "correlate.window_s",
        "output.schema",
        "probes.ring_buffer_pages",
        "output.otlp.endpoint",
        "server.health_addr",
        "enrich.apiserver_addresses",
        "probes.cgroup_subtree",
        "probes.wakeup_types",
        "output.otlp.timeout_s",
    ]:
        assert key in keys
    assert {check_name_of(k) for k in keys} >= set(CHECKS)
    assert all(any(ok for _, ok in s) and any(not ok for _, ok in s) for s in SAMPLES.values())


def check_name_of(key: str) -> str | None:
    from exporter.yamlfile import type_at

    tp = type_at(Config, tuple(key.split(".")))
    if typing.get_origin(_strip(tp)[0]) is list:
        tp = typing.get_args(_strip(tp)[0])[0]
    return check_name(tp)


@pytest.mark.parametrize(("key", "value", "accepted"), CASES, ids=[f"{k}={v!r}" for k, v, _ in CASES])
def test_agent_and_values_schema_agree(key: str, value: Any, accepted: bool) -> None:
    assert agent_accepts(key, value) is accepted, f"provex {'refused' if accepted else 'accepted'} {value!r}"
    if isinstance(value, str) and value.endswith("\n"):
        return  # Python's `$` (this stand-in's) admits a final newline; helm's Go `$` does not (below)
    assert schema_accepts(key, value) is accepted, (
        f"values.schema.json {'refused' if accepted else 'accepted'} {value!r}"
    )


def test_the_reported_values_pass_neither() -> None:
    # The values of the issue, each of which `helm install` took and every node refused.
    for key, value in [
        ("probes.ring_buffer_pages", 3),
        ("probes.ring_buffer_pages", 1073741824),
        ("correlate.window_s", -5),
        ("correlate.max_nodes", 0),
        ("output.otlp.endpoint", "ftp://x"),
        ("server.health_addr", "abc"),
    ]:
        assert not agent_accepts(key, value) and not schema_accepts(key, value), (key, value)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_what_a_check_admits_the_code_that_uses_it_accepts(name: str) -> None:
    use = {
        "url": lambda v: (urlsplit(v).port, urlsplit(v).hostname),
        "host_port": parse_host_port,
        "ip_port": parse_ip_port,
        "cgroup_path": lambda v: None,
        "abs_path": lambda v: None,
    }[name]
    for value, accepted in SAMPLES[name]:
        assert (CHECKS[name].problem(value) is None) is accepted, value
        if accepted and value:
            use(value)  # no ValueError later, where the agent uses it


# --- the same through the real helm (Go's regexp and JSON Schema) ------------------------


def _rounds(accepted: bool) -> list[dict[str, Any]]:
    """The cases of one kind as few values files as keys allow: round i sets each key to
    its i-th value (one value per key and file)."""
    per_key: dict[str, list[Any]] = {}
    for key, value, ok in CASES:
        if ok is accepted:
            per_key.setdefault(key, []).append(value)
    rounds: list[dict[str, Any]] = []
    for key, values in per_key.items():
        for i, value in enumerate(values):
            while len(rounds) <= i:
                rounds.append({})
            rounds[i][key] = value
    return rounds


def _helm_template(helm: str, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    merged: dict[str, Any] = {}
    for key, value in config.items():
        _merge(merged, nested(key, value))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"agent": {"config": merged}}))
    return subprocess.run(
        [helm, "template", "provex", str(CHART), "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def test_helm_installs_every_value_just_inside(helm: str, tmp_path: Path) -> None:
    config_rounds = _rounds(accepted=True)
    # the cross-key rule (a subtree scopes monitor=containers) is the agent's alone
    for config in config_rounds:
        result = _helm_template(helm, config, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]


def test_helm_refuses_every_value_just_outside(helm: str, tmp_path: Path) -> None:
    for config in _rounds(accepted=False):
        result = _helm_template(helm, config, tmp_path)
        assert result.returncode != 0
        for key, value in config.items():
            path = "/agent/config/" + key.replace(".", "/") + ("/0" if isinstance(value, list) else "")
            assert f"at '{path}'" in result.stderr, f"helm did not refuse {key}={value!r}"
