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
    Resolution,
    decode_event,
    encode_event,
    evidence_ref,
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
    "Resolution",
    "decode_event",
    "encode_event",
    "evidence_ref",
]
