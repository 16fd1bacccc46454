"""One reader of host and port text, for the health address, API-server addresses and
a connect's destination."""

from __future__ import annotations

import pytest

from exporter.model.addresses import parse_host_port, split_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:6443", ("10.0.0.1", "6443")),
        ("[fd00::1]:443", ("fd00::1", "443")),
        (":9464", ("", "9464")),
        ("node-a", ("node-a", None)),
        ("fd00::1", ("fd00::1", None)),  # a bare IPv6 address: its colons are not a port
        ("[fd00::1]", ("fd00::1", None)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, str | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":9464", ("127.0.0.1", 9464)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:80", ("::1", 80))],
)
def test_listening_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9464", "'9464' is not HOST:PORT (e.g. 127.0.0.1:9464)"),
        ("::1:9464", "'::1:9464' is not HOST:PORT"),  # ambiguous: write [::1]:9464
        ("a b:80", "'a b:80': 'a b' is not a host name or IP address"),
        ("host:65536", "'host:65536': port '65536' is not a number 0..65535"),
        ("[::1]x:80", "'[::1]x:80': expected [IPv6]:PORT"),
    ],
)
def test_listening_address_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_host_port(text)
    assert str(exc.value).startswith(message)
