"""Host and port as people and events write them: `HOST:PORT`, `[IPv6]:PORT`, a bare
address. One parser for the health address, the API-server addresses and a connect's
destination; each caller says what it accepts."""

from __future__ import annotations

import ipaddress
import re

LOCALHOST = "127.0.0.1"
# A DNS name or an IP literal; anything with spaces, slashes or other punctuation is not a host.
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


def split_host_port(text: str) -> tuple[str, str | None]:
    """The host and the port text of `HOST:PORT`, `[v6]:PORT`, `:PORT`, `HOST`, `[v6]` or a
    bare IPv6 address (whose colons are not a port): port None when there is none.
    Only the syntax; ValueError for an unclosed or trailing bracket."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def is_host(host: str) -> bool:
    """A host name or an IP literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and len(host) <= 253
    return True


def normalize_ip(text: str) -> str | None:
    """An IP address in its canonical form (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return str(addr)


def _port(text: str, port: str, low: int) -> int:
    if not port.isdigit() or not low <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port {port!r} is not a number {low}..65535")
    return int(port)


def parse_host_port(text: str, default_host: str = LOCALHOST) -> tuple[str, int]:
    """A listening address: `HOST:PORT`, `[v6]:PORT` or `:PORT` (the default host); port 0
    lets the kernel choose. ValueError says why not."""
    host, port = split_host_port(text)
    if port is None:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    number = _port(text, port, 0)
    host = host or default_host
    if not is_host(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or IP address (expected HOST:PORT)")
    return host, number


def parse_ip_port(text: str) -> tuple[str, int | None]:
    """An address to recognise: `IP`, `IP:PORT` or `[IPv6]:PORT` -> (canonical IP, port or
    None for any port). ValueError says why not."""
    host, port = split_host_port(text.strip())
    ip = normalize_ip(host)
    if ip is None:
        raise ValueError(f"{text!r} is not allowed; expected IP, IP:PORT or [IPv6]:PORT")
    return ip, None if port is None else _port(text, port, 1)
