"""Live source: records from the BPF ring buffer, decoded by the layout table."""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from exporter.metrics import REGISTRY
from exporter.model import Event
from exporter.probes.layout import (
    CGROUP,
    FAMILY_EXTRAS,
    SYSCALLS,
    EventHeader,
    Limits,
    _text,
    min_record_size,
    payload_structs,
)

log = logging.getLogger("provex.source")

RING_LAG = Histogram(
    "provex_ring_lag_seconds",
    "How long the oldest record of each drain waited in the ring buffer (syscall to decode)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
DECODE_ERRORS = Counter(
    "provex_decode_errors",
    "Ring-buffer records that could not be decoded, by cause",
    ["cause"],
    registry=REGISTRY,
)


def boot_to_wall_offset_ns() -> int:
    """Add to a bpf_ktime_get_boot_ns() value to get wall-clock ns.

    Measured once, so every event of a run is converted the same way (wall
    clock steps during the run do not reorder events).
    """
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    wall = time.time_ns()
    after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return wall - (before + after) // 2


class Decoder:
    """Turns raw ring-buffer records into Events, table-driven."""

    def __init__(self, limits: Limits, offset_ns: int) -> None:
        self.offset_ns = offset_ns
        structs = payload_structs(limits)
        # Per syscall id: (row, payload struct, its size, field copies as (event, payload, is_text)).
        self._rows: list[tuple[Any, type[ctypes.Structure], int, list[tuple[str, str, bool]]]] = []
        for sc in SYSCALLS:
            struct = structs[sc.family]
            text_fields = {
                name for name, ctype in struct._fields_ if getattr(ctype, "_type_", None) is ctypes.c_char
            }
            copies = [(ev, pl, pl in text_fields) for ev, pl in sc.fields.items()]
            self._rows.append((sc, struct, min_record_size(sc.family, struct), copies))

    def decode(self, data: int, size: int) -> Event | tuple[int, int, str] | None:
        """An Event, a control record (cgroup id, hierarchy, path), or None if corrupt."""
        if size < ctypes.sizeof(EventHeader):
            DECODE_ERRORS.labels("short").inc()
            return None
        header = EventHeader.from_address(data)
        if header.sc >= len(self._rows):
            DECODE_ERRORS.labels("unknown_syscall").inc()
            return None
        sc, struct, min_size, copies = self._rows[header.sc]
        if size < min_size:
            DECODE_ERRORS.labels("short").inc()
            return None
        # A short record's struct view reaches past its end into ring memory (mapped twice,
        # so always readable): only the used part of the tail is read (NUL, argc bound it).
        payload = struct.from_address(data)
        if sc.family == CGROUP:
            return payload.id, payload.hierarchy, _text(payload.path)
        ts_ns = header.ts + self.offset_ns
        kwargs: dict[str, Any] = {}
        for event_field, payload_field, is_text in copies:
            value = getattr(payload, payload_field)
            kwargs[event_field] = (
                value.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") if is_text else value
            )
        extra = FAMILY_EXTRAS.get(sc.family)
        if extra is not None:
            extra(kwargs, payload)
        return Event(
            id=f"{ts_ns:x}-{header.tid:x}-{header.sc}",
            type=sc.type,
            syscall=sc.name,
            ts_ns=ts_ns,
            pid=header.pid,
            tid=header.tid,
            uid=header.uid,
            gid=header.gid,
            comm=header.comm.decode("utf-8", "surrogateescape"),
            cgroup_id=header.cgroup_id,
            ret=header.ret,
            **kwargs,
        )


class LiveSource:
    """Drains the ring buffer in batches.

    `poll()` waits up to the drain interval for a wakeup (decisive events wake
    it at once), then consumes what is queued, including records the kernel
    queued without a wakeup, up to `probes.drain_max_records` records or
    `probes.drain_max_ms`: under a flood the producer never lets the ring run
    dry, and an unbounded drain would hold every record (and every other
    container's decisive event) in one growing batch. What is left stays in
    the ring for the next poll, which returns at once.
    """

    def __init__(self, probes: Any, on_cgroup: Callable[[int, str], None] | None = None) -> None:
        self.probes = probes
        # Also told of each new cgroup v2 directory (e.g. enrichment's path cache).
        self.on_cgroup = on_cgroup
        self.decoder = Decoder(probes.limits, boot_to_wall_offset_ns())
        self._batch: list[Event] = []
        self.max_records = max(1, probes.config.drain_max_records)
        self.max_ns = probes.config.drain_max_ms * 1_000_000
        self._deadline = 0
        self._full = False
        self.lag_ns = 0  # how long the oldest record of the last drain waited in the ring
        self._callback = self._on_record  # keep a reference: BCC holds only a C pointer
        probes.open_ring_buffer(self._callback)

    def _on_record(self, _ctx: Any, data: int, size: int) -> int:
        record = self.decoder.decode(data, size)
        if isinstance(record, Event):
            batch = self._batch
            batch.append(record)
            # libbpf stops consuming on a negative return; this record is kept (it was decoded).
            if len(batch) >= self.max_records or (
                len(batch) % 256 == 0 and time.monotonic_ns() >= self._deadline
            ):
                self._full = True
                return -1
        elif record is not None:
            cgroup_id, hierarchy, path = record
            self.probes.on_cgroup_created(cgroup_id, hierarchy, path)
            if hierarchy == 0 and self.on_cgroup is not None:
                self.on_cgroup(cgroup_id, path)
        return 0  # returning None costs BCC a caught exception per record

    def poll(self, timeout_ms: int | None = None) -> list[Event]:
        wait = self.probes.config.drain_interval_ms if timeout_ms is None else timeout_ms
        self._full = False
        self._deadline = time.monotonic_ns() + wait * 1_000_000 + self.max_ns
        self.probes.poll(wait)
        if not self._full:
            self.probes.consume()
        batch, self._batch = self._batch, []
        self.lag_ns = time.time_ns() - batch[0].ts_ns if batch else 0
        if batch:
            RING_LAG.observe(self.lag_ns / 1e9)
        return batch

    @property
    def backlog(self) -> bool:
        """The last poll stopped at its bound: more is waiting in the ring."""
        return self._full
