"""The set of addresses that mean "the Kubernetes API server"."""

from __future__ import annotations

import re

import pytest

from exporter.enrich.apiserver import ApiServerRefresher, ApiServerSet
from exporter.enrich.kubeclient import KubeAuth, KubeClient, server_addresses
from exporter.model.addresses import parse_ip_port
from tests.enrich.conftest import metric
from tests.helpers.apiserver import FaultyApiServer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", ("10.0.0.1", None)),
        ("10.0.0.1:6443", ("10.0.0.1", 6443)),
        ("[fd00::1]:443", ("fd00::1", 443)),
        ("fd00:0::1", ("fd00::1", None)),
        ("::ffff:10.0.0.1", ("10.0.0.1", None)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_ip_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kubernetes.default", "expected IP, IP:PORT or [IPv6]:PORT"),
        ("10.0.0.1:0", "port '0' is not a number 1..65535"),
        ("10.0.0.1:http", "port 'http' is not a number 1..65535"),
        ("[fd00::1]:99999", "port '99999' is not a number 1..65535"),
        ("[fd00::1", "expected [IPv6]:PORT"),
    ],
)
def test_parse_address_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_ip_port(text)


def test_sources_combine_and_replace() -> None:
    s = ApiServerSet(["192.168.0.10", "10.0.0.5:6443"])
    assert s.is_apiserver("192.168.0.10", 1) and s.is_apiserver("10.0.0.5", 6443)
    assert not s.is_apiserver("10.0.0.5", 443) and not s.is_apiserver("", 0)
    assert not s.is_apiserver("not-an-ip", 443)
    s.set_source("endpoints", [("172.18.0.2", 6443)])
    assert s.is_apiserver("172.18.0.2", 6443)
    s.set_source("endpoints", [("172.18.0.3", 6443)])  # the API server moved
    assert not s.is_apiserver("172.18.0.2", 6443) and s.is_apiserver("172.18.0.3", 6443)
    s.update_from_service({"spec": {"clusterIPs": ["10.96.0.1", "fd00:10:96::1"], "ports": [{"port": 443}]}})
    assert s.is_apiserver("10.96.0.1", 443) and s.is_apiserver("fd00:10:96:0::1", 443)
    s.update_from_service({"spec": {"clusterIP": "None", "ports": [{"port": 443}]}})  # headless: nothing
    assert not s.is_apiserver("10.96.0.1", 443)


def test_refresh_from_the_api_and_errors(api: FaultyApiServer) -> None:
    api.endpoints = [("172.18.0.2", 6443), ("172.18.0.3", 6443)]
    s = ApiServerSet()
    client = KubeClient(KubeAuth(server=api.url), timeout_s=5)
    s.set_source("kubeconfig", server_addresses(client.auth))
    r = ApiServerRefresher(client, s)
    r.refresh()
    assert s.pairs() == {
        ("127.0.0.1", api.port),
        ("10.96.0.1", 443),
        ("172.18.0.2", 6443),
        ("172.18.0.3", 6443),
    }
    api.endpoints = [("172.18.0.4", 6443)]
    r.refresh()
    assert s.is_apiserver("172.18.0.4", 6443) and not s.is_apiserver("172.18.0.2", 6443)
    before = metric("provex_k8s_apiserver_refresh_errors_total", cause="refused")
    api.stop()
    r.refresh()  # keeps what it knew
    assert metric("provex_k8s_apiserver_refresh_errors_total", cause="refused") == before + 2
    assert s.is_apiserver("172.18.0.4", 6443)
