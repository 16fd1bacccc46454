"""Emit stage: sinks where events and alerts leave the agent.

`build_sink(OutputConfig, ...)` is the entry point.
"""

from exporter.emit.factory import build_resource, build_sink, resolve_otlp
from exporter.emit.otlp import OtlpSink
from exporter.emit.processor import ExportQueue

__all__ = ["ExportQueue", "OtlpSink", "build_resource", "build_sink", "resolve_otlp"]
