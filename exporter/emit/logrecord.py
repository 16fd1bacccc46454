"""What the OTLP encoders write: a log record's fields, and the scope a batch is under."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class LogRecord(NamedTuple):
    """The LogRecord fields provex sets (logs/v1; no trace context)."""

    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: Mapping[str, Any]
    event_name: str


class Scope(NamedTuple):
    """OTLP's InstrumentationScope (and the ScopeLogs' schema URL)."""

    name: str
    version: str = ""
    attributes: Mapping[str, Any] = {}
    schema_url: str = ""
