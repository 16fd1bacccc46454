"""What really happened to an export: the collector's answer, not only "it returned".

The OpenTelemetry SDK's OTLP exporters return SUCCESS for any answered request and drop the
answer: an `ExportLogsServiceResponse` whose `partial_success` says the collector rejected
some (or all) records would count as delivered. They also retry inside one export,
invisibly. So every attempt reports here (exporter.emit.sdkcompat hooks the SDK's gRPC stub
and HTTP transport; the OTLP-JSON file reports directly): each failed attempt with its
cause, and each answer's `partial_success`. Reports go to the calling thread's `Outcome`
(one export queue worker per exporter), which the export queue reads after each export.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse


@dataclass
class Outcome:
    rejected: int = 0  # records the collector said it rejected (partial_success)
    message: str = ""  # partial_success.error_message: why it rejected them, or a warning
    cause: str = ""  # the last failed attempt's cause: "unavailable", "http_503", "no_space", ...
    detail: str = ""  # and what it said
    failed_attempts: int = 0
    on_failure: Callable[[str, str], None] | None = None  # told of each failed attempt, as it happens


_local = threading.local()


def begin(on_failure: Callable[[str, str], None] | None = None) -> Outcome:
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
        outcome.on_failure(cause, message)


def answered(response: ExportLogsServiceResponse) -> None:
    outcome = current()
    if outcome is None or not response.HasField("partial_success"):
        return
    outcome.rejected += response.partial_success.rejected_log_records
    if response.partial_success.error_message:
        outcome.message = response.partial_success.error_message
