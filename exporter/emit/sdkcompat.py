"""Every private name of the OpenTelemetry SDK provex uses, in this one module.

provex writes its OTLP requests itself (exporter.emit.otlpproto) and sends those bytes
through the SDK's own OTLP log exporters, so that everything the SDK does to deliver a
request stays the SDK's:

- configuration: the exporter's constructor reads the OTEL_EXPORTER_OTLP_[LOGS_]*
  variables (endpoint, headers, certificate, client key and certificate, compression,
  timeout, insecure; gRPC's credential provider) wherever provex's config leaves a value
  unset, exactly as for any OpenTelemetry program;
- delivery: retries with exponential back-off and jitter on the retryable gRPC codes and
  HTTP statuses, the collector's RetryInfo / Retry-After, the per-export deadline,
  reconnecting after UNAVAILABLE, compression, and the exporter's own metrics
  (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED) are the SDK's code, run per request.

What provex changes, through private names (`PRIVATE_NAMES`, checked against the SDK in
tests/emit/test_sdkcompat.py for the versions pyproject.toml declares):

- gRPC: the exporter's stub class (`_stub`) and client (`_client`, rebuilt from `_stub`
  when the SDK reconnects its `_channel`) send the request's bytes as they are (no protobuf
  message is built and serialized again) and report each attempt to
  exporter.emit.outcome; `_translate_data` and `_count_data` hand the SDK's retry loop
  (`_export`) those bytes and their record count;
- HTTP: the bytes go to the exporter's HTTP client (`_client.export`: compression, POST,
  retries), inside the exporter's metrics (`_metrics`); its transport
  (`_client._transport`) is wrapped to report each answer to exporter.emit.outcome;
- `_SUPPRESS_INSTRUMENTATION_KEY`: the exporter's own HTTP/gRPC calls are not traced.

Nothing here imports gRPC unless a gRPC exporter is made, nor requests and protobuf unless
an exporter to a collector is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from typing import Any, NamedTuple

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from exporter.emit import outcome

log = logging.getLogger("provex.emit")

# The SDK releases this module is written for and tested with (pyproject.toml pins the same).
SDK_RANGE = ((1, 45), (1, 46))  # >= 1.45, < 1.46
PRIVATE_NAMES = {
    "opentelemetry.context": ["_SUPPRESS_INSTRUMENTATION_KEY"],
    "grpc exporter": ["_stub", "_client", "_channel", "_translate_data", "_count_data", "_export"],
    "http exporter": ["_client", "_client._transport", "_client.export", "_metrics", "_shutdown"],
}
_LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"  # the OTLP gRPC method


def sdk_version() -> tuple[int, int]:
    major, minor = version("opentelemetry-sdk").split(".")[:2]
    return int(major), int(minor)


def sdk_supported() -> bool:
    low, high = SDK_RANGE
    return low <= sdk_version() < high


@contextlib.contextmanager
def instrumentation_suppressed() -> Iterator[None]:
    """The exporter's own HTTP/gRPC calls must not be traced into the export again."""
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        detach(token)


class _Request(NamedTuple):
    """What provex hands the SDK's gRPC retry loop in place of a batch of SDK records."""

    payload: bytes  # an ExportLogsServiceRequest, serialized
    records: int


# -- gRPC ------------------------------------------------------------------------------------


def grpc_exporter(
    endpoint: str,
    insecure: bool | None,
    credentials: Any,
    headers: Mapping[str, str] | None,
    timeout: float | None,
) -> GrpcExporter:
    """An exporter (exporter.emit.processor.Exporter) over the SDK's OTLP/gRPC log exporter;
    None arguments leave the SDK to its OTEL_* variables."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    class BytesLogExporter(OTLPLogExporter):
        def _translate_data(self, data: Any) -> Any:  # type: ignore[override]
            return data.payload

        def _count_data(self, data: Any) -> int:  # type: ignore[override]
            return int(data.records)

    sdk = BytesLogExporter(
        endpoint=endpoint, insecure=insecure, credentials=credentials, headers=headers, timeout=timeout
    )
    stub = _bytes_stub()
    sdk._stub = stub
    sdk._client = stub(sdk._channel)  # the SDK builds its client from _stub when it reconnects
    return GrpcExporter(sdk, f"collector {endpoint} (grpc)")


def _bytes_stub() -> type:
    """A LogsService stub whose Export takes the request's bytes and reports every attempt."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    class BytesLogsStub:
        def __init__(self, channel: Any) -> None:
            self._export = channel.unary_unary(
                _LOGS_EXPORT,
                request_serializer=None,  # the bytes as they are
                response_deserializer=ExportLogsServiceResponse.FromString,
            )

        def Export(self, request: bytes, metadata: Any = None, timeout: Any = None) -> Any:
            try:
                response = self._export(request, metadata=metadata, timeout=timeout)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                outcome.attempt_failed(
                    code.name.lower() if code is not None else "rpc_error", str(details or "")
                )
                raise
            outcome.answered(response)
            return response

    return BytesLogsStub


class GrpcExporter:
    encoding = "protobuf"

    def __init__(self, sdk: Any, name: str) -> None:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        self.sdk = sdk
        self.name = name
        self._success = LogRecordExportResult.SUCCESS

    def export(self, request: bytes, records: int, signal: str) -> bool:
        return bool(self.sdk._export(_Request(request, records)) == self._success)

    def shutdown(self) -> None:
        self.sdk.shutdown()


# -- HTTP ------------------------------------------------------------------------------------


def http_exporter(pin_ca_bundle: bool = False, **kwargs: Any) -> HttpExporter:
    """An exporter over the SDK's OTLP/HTTP log exporter (its keyword arguments; None leaves
    a value to the OTEL_* variables). `pin_ca_bundle`: the configured CA bundle must beat
    $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, which requests otherwise lets override a
    session's."""
    import requests
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    class PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings["verify"] = self.verify
            return settings

    sdk = OTLPLogExporter(session=PinnedVerifySession() if pin_ca_bundle else None, **kwargs)
    client = sdk._client
    client._transport = _TappedTransport(client._transport)
    return HttpExporter(sdk, f"collector {kwargs.get('endpoint')} (http/protobuf)")


class HttpExporter:
    encoding = "protobuf"

    def __init__(self, sdk: Any, name: str) -> None:
        self.sdk = sdk
        self.name = name

    def export(self, request: bytes, records: int, signal: str) -> bool:
        if self.sdk._shutdown:
            outcome.attempt_failed("closed", "exporter shut down")
            return False
        with self.sdk._metrics.export_operation(records) as operation:
            answer = self.sdk._client.export(request)
            if not answer.success:
                operation.error = answer.error or RuntimeError(answer.reason or "export failed")
        return bool(answer.success)

    def shutdown(self) -> None:
        self.sdk.shutdown()


class _TappedTransport:
    """Wraps the SDK's HTTP transport: reads each answer's status and body."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self._inner.request(*args, **kwargs)
        except Exception as exc:
            outcome.attempt_failed("connection", f"{type(exc).__name__}: {exc}")
            raise
        status = getattr(result, "status_code", None)
        if status is None:
            error = getattr(result, "error", None)
            outcome.attempt_failed("connection", str(error or "no answer"))
        elif 200 <= status < 300:
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

            # An empty or non-protobuf body: nothing was rejected that we can tell.
            with contextlib.suppress(Exception):
                outcome.answered(ExportLogsServiceResponse.FromString(result.content()))
        else:
            outcome.attempt_failed(f"http_{status}", _status_message(result))
        return result


def _status_message(result: Any) -> str:
    """The collector's google.rpc.Status message of an error answer, else the HTTP reason."""
    try:
        from google.rpc import status_pb2

        message = status_pb2.Status.FromString(result.content()).message
    except Exception:  # not a Status body
        message = ""
    return message or str(getattr(result, "reason", "") or "")
