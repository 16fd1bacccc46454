"""Typed records shared by every stage."""

from exporter.model.events import (
    Alert,
    ContainerInfo,
    Event,
    EventType,
    EvidenceRef,
    HostMount,
    PodInfo,
    ProcessInfo,
    decode_event,
    encode_event,
)

__all__ = [
    "Alert",
    "ContainerInfo",
    "Event",
    "EventType",
    "EvidenceRef",
    "HostMount",
    "PodInfo",
    "ProcessInfo",
    "decode_event",
    "encode_event",
]
