"""Live source: records from the two BPF ring buffers, decoded by the layout table and
merged by time."""

from __future__ import annotations

import ctypes
import heapq
import logging
import select
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from exporter.metrics import REGISTRY
from exporter.model import Event, EventType, SummaryInfo
from exporter.probes.layout import (
    CGROUP,
    FAMILY_EXTRAS,
    HDR_RUNTIME,
    SYSCALLS,
    EventHeader,
    Limits,
    c_string,
    min_record_size,
    payload_structs,
)
from exporter.source import drain

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


def count_decode_errors(decoder: Any, counted: dict[str, int]) -> None:
    """Add what the compiled `decoder` counted since `counted` to DECODE_ERRORS."""
    for cause, total in (("short", decoder.short_records), ("unknown_syscall", decoder.unknown_syscall)):
        if total != counted[cause]:
            DECODE_ERRORS.labels(cause).inc(total - counted[cause])
            counted[cause] = total


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
    """Turns raw ring-buffer records into Events, table-driven. With `identity` (the probes
    judge files by identity and track the container runtime), every event says whether
    its process is the runtime's (Event.by_runtime); without it, that stays unknown."""

    def __init__(self, limits: Limits, offset_ns: int, identity: bool = False) -> None:
        self.offset_ns = offset_ns
        self.identity = identity
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

    def decode(self, data: int, size: int) -> Event | tuple[int, int, str, bool] | None:
        """An Event, a control record (cgroup id, hierarchy, path, removed), or None if corrupt."""
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
            return payload.id, payload.hierarchy, c_string(payload.path), sc.name == "cgroup_rmdir"
        ts_ns = header.ts + self.offset_ns
        kwargs: dict[str, Any] = {}
        for event_field, payload_field, is_text in copies:
            value = getattr(payload, payload_field)
            kwargs[event_field] = c_string(value) if is_text else value
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
            by_runtime=bool(header.flags & HDR_RUNTIME) if self.identity else None,
            **kwargs,
        )


class LiveSource:
    """Drains the two ring buffers in batches, merged by time.

    `poll()` waits up to the drain interval for a wakeup (decisive records wake it at
    once), then drains the decisive ring whole (the kernel bounds it: a budget per cgroup
    and kind) and the bulk ring up to `probes.drain_max_records` records or
    `probes.drain_max_ms`: under a flood the producer never lets the bulk ring run dry, and
    an unbounded drain would hold every record in one growing batch. What is left stays in
    the ring for the next poll, which returns at once.

    The two rings are merged by the kernel's timestamps, each ring's order kept: a
    process's chdir (bulk) comes before its exec (decisive). While the bulk ring has a
    backlog, a decisive record newer than the bulk records drained so far waits for them,
    at most `decisive_hold_ms`, so a flood costs it no more than that and its context
    still comes first when the agent keeps up.
    """

    DECISIVE_MAX = 65536  # records per drain of the decisive ring (its budgets bound it first)

    def __init__(
        self,
        probes: Any,
        on_cgroup: Callable[[int, str], None] | None = None,
        decisive_hold_ms: float = 2.0,
        on_cgroup_gone: Callable[[int], None] | None = None,
    ) -> None:
        self.probes = probes
        # Also told of each new cgroup v2 directory (e.g. enrichment's path cache), and of
        # each removed one (what is kept of its container can go).
        self.on_cgroup = on_cgroup
        self.on_cgroup_gone = on_cgroup_gone
        self.decoder = Decoder(
            probes.limits, boot_to_wall_offset_ns(), getattr(probes, "file_identity", False)
        )
        self._batch: list[Event] = []
        self._limit = 0  # the current drain's record bound
        self.max_records = max(1, probes.config.drain_max_records)
        self.max_ns = probes.config.drain_max_ms * 1_000_000
        self.hold_ns = int(decisive_hold_ms * 1_000_000)
        self._deadline = 0
        self._full = False
        self._held: list[Event] = []  # decisive records waiting for older bulk ones
        self._backlog = False
        self.lag_ns = 0  # how long the oldest bulk record of the last drain waited in the ring
        self._callback = self._on_record  # keep a reference: BCC holds only a C pointer
        self._decisive, self._bulk = probes.open_ring_buffers(self._callback)
        self._decode_errors = {"short": 0, "unknown_syscall": 0}  # the compiled decoder's, counted so far
        self._compiled = self._use_compiled_drain()
        self._epoll = select.epoll()
        for ring in (self._decisive, self._bulk):
            self._epoll.register(ring.fd, select.EPOLLIN)

    def _on_record(self, _ctx: Any, data: int, size: int) -> int:
        record = self.decoder.decode(data, size)
        if isinstance(record, Event):
            batch = self._batch
            batch.append(record)
            # A negative return stops consuming; this record is kept (it was decoded).
            if len(batch) >= self._limit or (len(batch) % 256 == 0 and time.monotonic_ns() >= self._deadline):
                self._full = True
                return -1
        elif record is not None:
            self._on_control(record)
        return 0  # returning None costs BCC a caught exception per record

    def _on_control(self, record: tuple[int, int, str, bool]) -> None:
        cgroup_id, hierarchy, path, removed = record
        if hierarchy != 0:
            return  # cgroup v1 hierarchies have ids of their own
        if removed:
            if self.on_cgroup_gone is not None:
                self.on_cgroup_gone(cgroup_id)
            return
        self.probes.on_cgroup_created(cgroup_id, hierarchy, path)
        if self.on_cgroup is not None:
            self.on_cgroup(cgroup_id, path)

    def _use_compiled_drain(self) -> dict[int, Any]:
        """The compiled consumer of each ring, by fd (probes.drain), or {}: drain in Python."""
        mode = getattr(self.probes.config, "drain", "auto")
        if not drain.wanted(mode):
            return {}
        try:
            self._compiled_decoder = drain.compiled_decoder(
                self.probes.limits, self.decoder.offset_ns, self.decoder.identity
            )
            return {
                ring.fd: drain.compiled_ring(ring, self._compiled_decoder, self.probes.limits)
                for ring in (self._decisive, self._bulk)
            }
        except drain.DrainUnavailable as exc:
            if mode == "native":
                raise
            log.warning("draining the ring buffers in Python", extra={"fields": {"reason": str(exc)}})
            return {}

    def _drain(self, ring: Any, limit: int) -> list[Event]:
        compiled = self._compiled.get(ring.fd)
        if compiled is not None:
            batch, self._full = compiled.drain(limit, self._deadline, self._on_control)
            count_decode_errors(self._compiled_decoder, self._decode_errors)
            return batch
        self._full = False
        self._limit = limit
        ring.consume()
        batch, self._batch = self._batch, []
        return batch

    def poll(self, timeout_ms: int | None = None) -> list[Event]:
        wait = self.probes.config.drain_interval_ms if timeout_ms is None else timeout_ms
        if not self._held and not self._decisive.pending() and not self._bulk.pending():
            self._epoll.poll(wait / 1000 if wait >= 0 else -1)
        self._deadline = time.monotonic_ns() + self.max_ns
        decisive = self._drain(self._decisive, self.DECISIVE_MAX)
        bulk = self._drain(self._bulk, self.max_records)
        backlog = self._full
        now = time.time_ns()
        self.lag_ns = now - bulk[0].ts_ns if bulk else 0
        if bulk:
            RING_LAG.observe(self.lag_ns / 1e9)
        if self._held:
            decisive = list(heapq.merge(self._held, decisive, key=_ts))
            self._held = []
        if backlog and decisive:
            # Older bulk records may still be in the ring: hold what is newer than the
            # last one drained, unless it has waited long enough.
            newest = bulk[-1].ts_ns if bulk else 0
            hold_until = now - self.hold_ns
            ready = [e for e in decisive if e.ts_ns <= newest or e.ts_ns < hold_until]
            self._held = [e for e in decisive if not (e.ts_ns <= newest or e.ts_ns < hold_until)]
            decisive = ready
        self._backlog = backlog or bool(self._held) or self._decisive.pending()
        if not decisive:
            return bulk
        if not bulk:
            return decisive
        return list(heapq.merge(decisive, bulk, key=_ts))

    @property
    def backlog(self) -> bool:
        """The last poll stopped at its bound, or holds records: more is waiting."""
        return self._backlog

    def take_summaries(self) -> list[Event]:
        """The kernel's summaries of decisive events past a cgroup's budget, as events (one
        per cgroup and kind, at the time of the last one summarized), oldest first."""
        names = [sc.name for sc in SYSCALLS]
        offset = self.decoder.offset_ns
        out = []
        for cgroup_id, kind, (
            count,
            first,
            last,
            first_pid,
            last_pid,
            first_sc,
            last_sc,
        ) in self.probes.take_summaries():
            ts_ns = last + offset
            out.append(
                Event(
                    id=f"{ts_ns:x}-{cgroup_id:x}-summary-{kind}",
                    type=EventType.SUMMARY,
                    syscall=names[last_sc] if last_sc < len(names) else "",
                    ts_ns=ts_ns,
                    pid=last_pid,
                    tid=last_pid,
                    cgroup_id=cgroup_id,
                    summary=SummaryInfo(
                        kind=kind,
                        count=count,
                        first_ns=first + offset,
                        first_pid=first_pid,
                        first_syscall=names[first_sc] if first_sc < len(names) else "",
                        last_syscall=names[last_sc] if last_sc < len(names) else "",
                    ),
                )
            )
        return sorted(out, key=_ts)

    def close(self) -> None:
        self._epoll.close()


def _ts(event: Event) -> int:
    return event.ts_ns
