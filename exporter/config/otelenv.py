"""The OpenTelemetry variables that shape provex's log export, checked before anything starts.

The SDK reads these itself when its exporter and LoggerProvider are built, which in the
agent is after the probes compiled; there a bad value is a warning and a default
(OTEL_EXPORTER_OTLP_TIMEOUT=soon), an exception (an unknown compression), or a silent
no-op (OTEL_SDK_DISABLED=true). `otel_problems` refuses each the way a config key is
refused, naming the variable. What is read, and how (opentelemetry-sdk 1.45: the
`OTEL_EXPORTER_OTLP_LOGS_*` variable first, then `OTEL_EXPORTER_OTLP_*`):

  ENDPOINT, PROTOCOL   decided by exporter.config.output (checked there)
  TIMEOUT              seconds, a number > 0 (the Python SDK reads seconds, not ms)
  HEADERS              key=value[,key=value...]
  COMPRESSION          gRPC: gzip; HTTP: none, gzip, deflate
  CERTIFICATE, CLIENT_KEY, CLIENT_CERTIFICATE   readable files
  INSECURE             true or false
  OTEL_RESOURCE_ATTRIBUTES   key=value[,key=value...] (values URL-encoded)
  OTEL_SDK_DISABLED    must not be true: the LoggerProvider would drop every record
  OTEL_[LOGRECORD_]ATTRIBUTE_{COUNT,VALUE_LENGTH}_LIMIT   an integer >= 0
provex uses no BatchLogRecordProcessor (its own export queues: output.otlp.*), so
OTEL_BLRP_* are not read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping

from exporter.config.schema import OtlpConfig
from exporter.errors import InputError

_PREFIXES = ("OTEL_EXPORTER_OTLP_LOGS_", "OTEL_EXPORTER_OTLP_")
_KEY_VALUE = re.compile(r"\s*[^\s=,][^=,]*=[^,]*")  # key=value, the key not empty
_COMPRESSION = {"grpc": ("gzip",), "http/protobuf": ("none", "gzip", "deflate")}
_LIMITS = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
)


def _read(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The variable the SDK takes for `name` (LOGS_ first), and its value."""
    for prefix in _PREFIXES:
        value = environ.get(prefix + name)
        if value:
            return prefix + name, value
    return None


def _key_values(text: str) -> bool:
    return all(_KEY_VALUE.fullmatch(item) for item in text.split(",") if item.strip())


def otel_problems(environ: Mapping[str, str], otlp: OtlpConfig) -> Iterator[InputError]:
    """Every OTEL_* variable the SDK would read for an export configured by `otlp` (endpoint
    and protocol decided) that it cannot use. The exporter's variables count only when there
    is an endpoint, and not those output.otlp sets (the SDK then does not read them); the
    LoggerProvider's variables always."""
    in_config = {
        "HEADERS": otlp.headers,
        "TIMEOUT": otlp.timeout_s,
        "INSECURE": otlp.insecure,
        "CERTIFICATE": otlp.certificate,
        "CLIENT_KEY": otlp.client_key,
        "CLIENT_CERTIFICATE": otlp.client_certificate,
    }
    overridden = {name for name, value in in_config.items() if value not in ("", None, {})}
    protocol, export = otlp.protocol, bool(otlp.endpoint)

    def read(name: str) -> tuple[str, str] | None:
        return None if name in overridden else _read(environ, name)

    def refuse(var: str, value: str, allowed: str) -> InputError:
        return InputError(f"{value!r} is not allowed", f"environment {var}", f"expected {allowed}")

    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        yield InputError(
            "'true' turns the OpenTelemetry SDK off: provex would ship nothing",
            "environment OTEL_SDK_DISABLED",
            "unset it, or false",
        )
    for name in _LIMITS:
        value = environ.get(name, "").strip()
        if value and value.lower() != "unset" and not value.isdigit():
            yield refuse(name, value, "an integer >= 0")
    resource = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if resource and not _key_values(resource):
        yield refuse("OTEL_RESOURCE_ATTRIBUTES", resource, "key=value[,key=value...]")
    if not export:
        return
    found = read("TIMEOUT")
    if found:
        var, value = found
        try:
            ok = float(value) > 0
        except ValueError:
            ok = False
        if not ok:
            yield refuse(var, value, "a number of seconds > 0 (the OpenTelemetry Python SDK reads seconds)")
    found = read("HEADERS")
    if found and not _key_values(found[1]):
        yield refuse(*found, "key=value[,key=value...] (values URL-encoded)")
    found = read("COMPRESSION")
    allowed = _COMPRESSION.get(protocol, ())
    if found and allowed and found[1].strip().lower() not in allowed:
        yield refuse(*found, f"one of {', '.join(allowed)} over {protocol}")
    found = read("INSECURE")
    if found and found[1].strip().lower() not in ("true", "false"):
        yield refuse(*found, "true or false")
    for name in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
        found = read(name)
        if found:
            problem = file_problem(found[1])
            if problem:
                yield InputError(
                    problem, f"environment {found[0]}={found[1]}", "expected a readable PEM file"
                )


def file_problem(path: str) -> str | None:
    """Why a file we must read cannot be, or None."""
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.exists(path):
        return "no such file"
    if not os.access(path, os.R_OK):
        return "cannot be read"
    return None
