"""Emit stage: sinks where events and alerts leave the agent.

`build_sink(OutputConfig, ...)` is the entry point; `MemorySink` is for tests.
"""

from exporter.emit.factory import build_resource, build_sink, resolve_otlp
from exporter.emit.memory import MemorySink
from exporter.emit.otlp import OtlpSink
from exporter.emit.processor import ExportQueueProcessor

__all__ = ["ExportQueueProcessor", "MemorySink", "OtlpSink", "build_resource", "build_sink", "resolve_otlp"]
