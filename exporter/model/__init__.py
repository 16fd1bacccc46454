"""Typed records shared by every stage."""

from exporter.model.events import (
    Alert,
    ContainerInfo,
    Event,
    EventType,
    EvidenceRef,
    FileRef,
    HostMount,
    PodInfo,
    ProcessInfo,
    Resolution,
    SummaryInfo,
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
    "FileRef",
    "HostMount",
    "PodInfo",
    "ProcessInfo",
    "Resolution",
    "SummaryInfo",
    "decode_event",
    "encode_event",
    "evidence_ref",
]
