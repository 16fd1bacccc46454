"""Named checks of config values a type cannot express: URL, HOST:PORT, IP[:PORT], a cgroup
path without `..`, an absolute path without `..`.

Each is one regular expression in the common subset of Python's `re`, Go's RE2 (Helm) and
ECMAScript (JSON Schema), so the agent (`fullmatch`) and the chart's values.schema.json
(`^(?:...)$`) decide every value alike. A field names its check in its annotation
(`checked(str, "url")`, see exporter.config.schema): the loader runs it, and the JSON
Schema generator emits it. tests/test_config_bounds.py proves that both sides agree, and
that what a check admits, the code that later uses the value accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

_HEX = "[0-9A-Fa-f]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"


def _ipv6() -> str:
    """An IPv6 address as Python's ipaddress reads it (no zone): eight groups, or fewer
    around one `::` (which stands for at least one group); the last two groups may be
    written as an IPv4 address."""
    h = _HEX

    def groups(n: int) -> str:
        return {0: "", 1: h}.get(n, rf"({h}:){{{n - 1}}}{h}")

    def upto(n: int, last: str) -> str:  # at most n groups, each followed by a colon, then `last`
        return last if n == 0 else rf"({h}:){{0,{n}}}{last}"

    forms = [rf"({h}:){{7}}{h}", rf"({h}:){{6}}{IPV4}"]
    for left in range(8):
        right = 7 - left
        forms.append(groups(left) + "::" + (f"({upto(right - 1, h)})?" if right else ""))
    for left in range(6):
        forms.append(groups(left) + "::" + upto(5 - left, IPV4))
    return "(" + "|".join(forms) + ")"


IPV6 = _ipv6()
# A DNS name or an IPv4 literal (exporter.model.addresses: is_host), at most 253 characters.
HOSTNAME = r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?"
PORT = r"0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
PORT_OR_ZERO = rf"(0+|{PORT})"
_COMPONENT = r"([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+|\.)"  # a path component that is not ..


@dataclass(frozen=True)
class Check:
    """One rule: `pattern` (whole value) and, for messages and docs, what it admits."""

    pattern: str
    allowed: str
    example: str

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value`, or None when the check admits it."""
        if not isinstance(value, str) or re.fullmatch(self.pattern, value):
            return None  # a wrong type is the schema's to refuse
        return f"{value!r} is not allowed; expected {self.allowed} (e.g. {self.example})"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^(?:{self.pattern})$"}


CHECKS: dict[str, Check] = {
    "url": Check(
        rf"(https?://({HOSTNAME}|\[{IPV6}\])(:{PORT})?(/[^\s?#]*)?)?",
        "an http(s) URL, http(s)://HOST[:PORT][/path] (port 1..65535), or empty",
        "http://collector:4317",
    ),
    "host_port": Check(
        rf"(({HOSTNAME}|\[{IPV6}\])?:{PORT_OR_ZERO})?",
        "HOST:PORT, [IPv6]:PORT or :PORT (127.0.0.1), port 0..65535, or empty (off)",
        "127.0.0.1:9464",
    ),
    "ip_port": Check(
        rf"{IPV4}|{IPV6}|{IPV4}:{PORT}|\[{IPV6}\]:{PORT}",
        "IP, IP:PORT or [IPv6]:PORT (port 1..65535)",
        "10.96.0.1:443",
    ),
    "cgroup_path": Check(
        rf"/*({_COMPONENT}(/+{_COMPONENT})*)?/*",
        "a cgroup v2 path without .. components",
        "/kubepods.slice",
    ),
    "abs_path": Check(
        rf"/+({_COMPONENT}(/+{_COMPONENT})*/*)?",
        "an absolute path without .. components",
        "/usr/bin/runc",
    ),
}


def checked(tp: Any, name: str) -> Any:
    """`tp` annotated with the named check: the loader runs it, the JSON Schema carries it."""
    check = CHECKS[name]
    return Annotated[
        tp,
        msgspec.Meta(description=check.allowed, extra={"check": name}, extra_json_schema=check.json_schema()),
    ]


def check_name(tp: Any) -> str | None:
    """The named check an annotated type carries, if any."""
    for meta in getattr(tp, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.extra and "check" in meta.extra:
            return str(meta.extra["check"])
    return None
