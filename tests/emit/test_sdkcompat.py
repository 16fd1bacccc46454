"""The OpenTelemetry SDK's private names provex uses (exporter/emit/sdkcompat.py) exist in
the SDK installed, which is in the range pyproject.toml pins: an SDK upgrade that moves them
fails here, loudly, not as records silently counted as delivered."""

from __future__ import annotations

import operator
import threading
import tomllib
from importlib.metadata import version

import grpc
import pytest
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value

from bench.helpers.otlp_receiver import OtlpReceiver
from exporter.emit import sdkcompat
from exporter.emit.factory import OtlpTarget, make_exporter
from exporter.emit.otlpproto import ProtoEncoder
from tests.conftest import REPO
from tests.emit.encoding_cases import RESOURCES, SCOPES, odd, ours
from tests.emit.test_resilience import wait_until

PACKAGES = [
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-proto",
]


def test_the_pin_is_the_range_sdkcompat_is_written_for() -> None:
    (low_major, low_minor), (high_major, high_minor) = sdkcompat.SDK_RANGE
    pin = f">={low_major}.{low_minor},<{high_major}.{high_minor}"
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for package in PACKAGES:
        assert f"{package}{pin}" in dependencies, package
        installed = tuple(int(p) for p in version(package).split(".")[:2])
        assert sdkcompat.SDK_RANGE[0] <= installed < sdkcompat.SDK_RANGE[1], (package, installed)
    assert sdkcompat.sdk_supported()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_every_private_name_exists(protocol: str) -> None:
    exporter = make_exporter(OtlpTarget(protocol=protocol, endpoint="http://127.0.0.1:9", insecure=True))
    try:
        names = sdkcompat.PRIVATE_NAMES["grpc exporter" if protocol == "grpc" else "http exporter"]
        for name in names:
            operator.attrgetter(name)(exporter.sdk)  # type: ignore[attr-defined]
    finally:
        exporter.shutdown()
    assert sdkcompat.PRIVATE_NAMES["opentelemetry.context"] == ["_SUPPRESS_INSTRUMENTATION_KEY"]


def test_exports_run_with_instrumentation_suppressed() -> None:
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None
    with sdkcompat.instrumentation_suppressed():
        assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is True
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None


def test_the_grpc_exporter_keeps_sending_bytes_after_the_sdk_reconnects() -> None:
    """On UNAVAILABLE the SDK closes its channel and builds a new client from `_stub`: the
    retry must still send the request's bytes (the SDK's own stub would refuse them)."""
    request = ours(ProtoEncoder, RESOURCES[0], SCOPES[0], odd(["one"]))
    with OtlpReceiver("grpc") as receiver:
        receiver.grpc_status = grpc.StatusCode.UNAVAILABLE
        exporter = make_exporter(OtlpTarget(protocol="grpc", endpoint=receiver.endpoint, timeout_s=5.0))
        channel = exporter.sdk._channel  # type: ignore[attr-defined]

        def heal() -> None:  # the first attempt fails; the SDK's retry (after ~1 s) succeeds
            wait_until(lambda: receiver.attempts >= 1)
            receiver.grpc_status = None

        healer = threading.Thread(target=heal)
        healer.start()
        assert exporter.export(request, 1, "alerts") is True
        healer.join()
        assert exporter.sdk._channel is not channel  # type: ignore[attr-defined]
        assert receiver.attempts == 2 and [r.body for r in receiver.records()] == ["one"]
        exporter.shutdown()
