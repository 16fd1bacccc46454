"""What really happened to an export: the collector's answer, not only "it returned".

The OpenTelemetry SDK's OTLP exporters return SUCCESS for any answered
request, and drop the answer: an `ExportLogsServiceResponse` whose
`partial_success` says the collector rejected some (or all) records counted
as delivered. They also retry inside one `export()` call, invisibly.

`tap(exporter)` hooks the SDK's gRPC stub or HTTP transport of one exporter so
every attempt reports here: each failed attempt (with its status) and each
answer's `partial_success`. Reports go to the calling thread's `Outcome` (one
export queue worker per exporter), which `ExportQueueProcessor` reads after
each `export()`. Exporters of our own (the OTLP-JSON file) report directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

log = logging.getLogger("provex.emit")


@dataclass
class Outcome:
    rejected: int = 0  # records the collector said it rejected (partial_success)
    message: str = ""  # partial_success.error_message: why it rejected them, or a warning
    cause: str = ""  # the last failed attempt's cause: "unavailable", "http_503", "no_space", ...
    detail: str = ""  # and what it said
    failed_attempts: int = 0
    on_failure: Callable[[str], None] | None = None  # told of each failed attempt, as it happens


_local = threading.local()


def begin(on_failure: Callable[[str], None] | None = None) -> Outcome:
    """A fresh Outcome for the export about to run on this thread."""
    _local.outcome = Outcome(on_failure=on_failure)
    return _local.outcome


def current() -> Outcome | None:
    return getattr(_local, "outcome", None)


def attempt_failed(cause: str, message: str) -> None:
    outcome = current()
    if outcome is None:
        return
    outcome.failed_attempts += 1
    outcome.cause, outcome.detail = cause, message
    if outcome.on_failure is not None:
        outcome.on_failure(cause)


def answered(response: ExportLogsServiceResponse) -> None:
    outcome = current()
    if outcome is None or not response.HasField("partial_success"):
        return
    outcome.rejected += response.partial_success.rejected_log_records
    if response.partial_success.error_message:
        outcome.message = response.partial_success.error_message


# -- hooks into the SDK's exporters ---------------------------------------------------------


def tap(exporter: Any) -> bool:
    """Hook an SDK OTLP log exporter so its attempts report here; False if it is not one
    we know (then only its SUCCESS/FAILURE result is seen)."""
    # By the SDK class it is or extends (provex's gRPC exporter only changes the encoding).
    modules = [cls.__module__ for cls in type(exporter).__mro__]
    try:
        if any(m.startswith("opentelemetry.exporter.otlp.proto.grpc") for m in modules):
            return _tap_grpc(exporter)
        if any(m.startswith("opentelemetry.exporter.otlp.proto.http") for m in modules):
            return _tap_http(exporter)
    except AttributeError as exc:  # the SDK's internals moved: accounting falls back to the result
        log.warning(
            "cannot read the collector's answers with this OpenTelemetry SDK: partial rejections "
            "will count as exported",
            extra={"fields": {"exporter": type(exporter).__name__, "error": str(exc)}},
        )
    return False


def _tap_grpc(exporter: Any) -> bool:
    import grpc

    original = exporter._stub
    if getattr(original, "provex_tapped", False):
        return True

    class TappedStub:
        provex_tapped = True

        def __init__(self, channel: Any) -> None:
            self._inner = original(channel)

        def Export(self, request: Any, metadata: Any = None, timeout: Any = None) -> Any:
            try:
                response = self._inner.Export(request=request, metadata=metadata, timeout=timeout)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                attempt_failed(code.name.lower() if code is not None else "rpc_error", str(details or ""))
                raise
            answered(response)
            return response

    exporter._stub = TappedStub
    # The SDK rebuilds its client from _stub when it reconnects; rebuild it now too.
    exporter._client = TappedStub(exporter._channel)
    return True


def _tap_http(exporter: Any) -> bool:
    client = exporter._client
    transport = client._transport
    if getattr(transport, "provex_tapped", False):
        return True
    client._transport = _TappedTransport(transport)
    return True


class _TappedTransport:
    """Wraps the SDK's HTTP transport: reads each answer's status and body."""

    provex_tapped = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self._inner.request(*args, **kwargs)
        except Exception as exc:
            attempt_failed("connection", f"{type(exc).__name__}: {exc}")
            raise
        status = getattr(result, "status_code", None)
        if status is None:
            error = getattr(result, "error", None)
            attempt_failed("connection", str(error or "no answer"))
        elif 200 <= status < 300:
            # An empty or non-protobuf body: nothing was rejected that we can tell.
            with contextlib.suppress(Exception):
                answered(ExportLogsServiceResponse.FromString(result.content()))
        else:
            attempt_failed(f"http_{status}", _status_message(result))
        return result


def _status_message(result: Any) -> str:
    """The collector's google.rpc.Status message of an error answer, else the HTTP reason."""
    try:
        from google.rpc import status_pb2

        message = status_pb2.Status.FromString(result.content()).message
    except Exception:  # not a Status body
        message = ""
    return message or str(getattr(result, "reason", "") or "")
