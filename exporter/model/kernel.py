"""The event types the kernel reports (every one has a T_* bit in bpf/provex.h, mirrored by
exporter/probes/layout.py TYPE_BITS), as opposed to the agent's own records (`context` from
/proc, `summary`). The configuration names them (`probes.wakeup_types`) without importing the
probes, which sit a floor above it."""

from __future__ import annotations

from exporter.model.events import EventType

KERNEL_EVENT_TYPES: tuple[EventType, ...] = (
    EventType.EXEC,
    EventType.OPEN,
    EventType.MOUNT,
    EventType.SETNS,
    EventType.UNSHARE,
    EventType.CONNECT,
    EventType.FORK,
    EventType.EXIT,
    EventType.CHDIR,
    EventType.CHROOT,
    EventType.LINK,
    EventType.RENAME,
    EventType.DUP,
    EventType.ACCEPT,
)
