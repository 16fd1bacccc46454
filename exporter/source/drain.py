"""The compiled ring-buffer drain (`_drain.pyx`) and the decode table it is given.

`probes.drain` picks the consumer: `native` (the compiled drain: the ring walked with the GIL
released, each record decoded in C), `python` (bpfsys.RingBuffer and live.Decoder, the
reference it is tested against), or `auto` (the default: native when it is built from these
sources, else Python, said once in the log). The compiled decoder reads its offsets and field
copies from exporter/probes/layout.py, so a layout changes in one place; what a family does
beyond plain copies (layout.FAMILY_EXTRAS) is written twice, in Python and in C, and
tests/source/test_drain_differential.py holds the two to the same Events.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from exporter import compiled
from exporter.model import Event, FileRef
from exporter.probes.bpfsys import RINGBUF_HDR, RingBuffer
from exporter.probes.layout import (
    ACCEPT,
    CGROUP,
    CONNECT,
    EXEC,
    FAMILY_EXTRAS,
    HDR_RUNTIME,
    OPEN,
    SYSCALLS,
    VERDICTS,
    EventHeader,
    FileIdentity,
    Limits,
    min_record_size,
    payload_structs,
)

log = logging.getLogger("provex.source")

HERE = Path(__file__).resolve().parent
SOURCES = ("_drain.pyx",)  # hatch_build.DRAIN: what the digest covers

# The families the compiled decoder does more for than copy fields (its FAMILY_* numbers),
# the Event fields that work sets, in the order it passes them, and the payload fields it reads.
FAMILIES = {OPEN: 1, EXEC: 2, CONNECT: 3, ACCEPT: 4, CGROUP: 5}
EXTRA_FIELDS = {
    OPEN: ("file", "verdict", "repeats", "resolve"),
    EXEC: ("argv", "file", "stdin", "stdout", "exe_name"),
    CONNECT: ("file", "path", "daddr"),
    ACCEPT: ("file", "saddr"),
}
EXTRA_PAYLOAD = {
    OPEN: ("file", "verdict", "repeats", "resolve"),
    EXEC: ("argc", "argv", "exe", "stdin_file", "stdout_file", "exe_name"),
    CONNECT: ("family", "addr", "file", "path"),
    ACCEPT: ("family", "addr", "file"),
    CGROUP: ("id", "hierarchy", "path"),
}
# Every payload field of EXTRA_PAYLOAD, in the order of the compiled decoder's X_* slots.
EXTRA_SLOTS = (
    "file",
    "verdict",
    "repeats",
    "resolve",
    "argc",
    "argv",
    "exe",
    "stdin_file",
    "stdout_file",
    "exe_name",
    "family",
    "addr",
    "path",
    "id",
    "hierarchy",
)
HEADER_FIELDS = (
    "id",
    "type",
    "syscall",
    "ts_ns",
    "pid",
    "tid",
    "uid",
    "gid",
    "comm",
    "cgroup_id",
    "ret",
    "by_runtime",
)
COPY_KINDS = {
    ctypes.c_int32: 0,
    ctypes.c_uint32: 1,
    ctypes.c_uint16: 2,
    ctypes.c_uint64: 3,
    ctypes.c_int64: 4,
}
COPY_TEXT = 5
FIELD_ORDER = {name: index for index, name in enumerate(Event.__struct_fields__)}


class DrainUnavailable(RuntimeError):
    """The compiled drain cannot be used here (the message says why and what to do)."""


def source_digest() -> str:
    """The digest hatch_build.py compiles into the module (hatch_build.source_digest)."""
    return compiled.source_digest(HERE, SOURCES)


def _problem(module: ModuleType) -> str:
    """Why this build of the module does not fit these sources and layouts ("" when it does)."""
    if all((HERE / name).exists() for name in SOURCES) and source_digest() != module.SOURCE_DIGEST:
        return f"it was built from other sources ({module.SOURCE_DIGEST}, these are {source_digest()})"
    sc_offset = EventHeader.sc.offset
    if module.header_layout() != (ctypes.sizeof(EventHeader), sc_offset, ctypes.sizeof(FileIdentity)):
        return "its record header differs from exporter/probes/layout.py's"
    if module.HDR_RUNTIME != HDR_RUNTIME:
        return "its HDR_RUNTIME differs from exporter/probes/layout.py's"
    unknown = set(FAMILY_EXTRAS) - set(EXTRA_FIELDS)
    if unknown:
        return f"layout.FAMILY_EXTRAS has work for {sorted(unknown)} that it does not do"
    return ""


_module: ModuleType | None = None
_error = ""


def load() -> ModuleType:
    """The compiled drain; DrainUnavailable when it is missing, stale or of other layouts."""
    global _module, _error
    if _module is not None:
        return _module
    if not _error:
        try:
            from exporter.source import _drain
        except ImportError as exc:
            _error = f"the compiled ring-buffer drain is not built ({exc})"
        else:
            _error = _problem(_drain)
            if not _error:
                _module = _drain
                return _drain
            _error = f"the compiled ring-buffer drain cannot be used: {_error}"
    raise DrainUnavailable(
        f"{_error}; rebuild it (`make setup` or `python hatch_build.py`) or set probes.drain: python"
    )


_fallback_logged = False


def wanted(mode: str) -> bool:
    """probes.drain: "native" must have the compiled drain (DrainUnavailable says why not);
    "auto" takes it when it is built and says once when it is not."""
    global _fallback_logged
    if mode == "python":
        return False
    try:
        load()
    except DrainUnavailable as exc:
        if mode == "native":
            raise
        if not _fallback_logged:
            _fallback_logged = True
            log.warning("draining the ring buffers in Python", extra={"fields": {"reason": str(exc)}})
        return False
    return True


def _copy_kind(ctype: Any) -> int:
    if getattr(ctype, "_type_", None) is ctypes.c_char:
        return COPY_TEXT
    if ctype not in COPY_KINDS:
        raise DrainUnavailable(f"the compiled decoder copies no field of type {ctype.__name__}")
    return COPY_KINDS[ctype]


def decode_table(limits: Limits) -> list[tuple[Any, ...]]:
    """Per syscall id, what the compiled decoder needs: (name, EventType, family number,
    minimum size, copies as (offset, length, kind), the fields its family's extra work reads
    as (offset, size) in EXTRA_SLOTS order ((0, 0): not read), the Event's keyword names in its field order, and which of the
    values made (header, copies, extras) goes at each of their positions)."""
    structs = payload_structs(limits)
    rows = []
    for sc in SYSCALLS:
        struct = structs[sc.family]
        ctypes_of = dict(struct._fields_)
        copies = []
        for payload_field in sc.fields.values():
            member = getattr(struct, payload_field)
            copies.append((member.offset, member.size, _copy_kind(ctypes_of[payload_field])))
        read = EXTRA_PAYLOAD.get(sc.family, ())
        extras = [
            (getattr(struct, name).offset, getattr(struct, name).size) if name in read else (0, 0)
            for name in EXTRA_SLOTS
        ]
        made = (*HEADER_FIELDS, *sc.fields, *EXTRA_FIELDS.get(sc.family, ()))
        if len(set(made)) != len(made):
            raise DrainUnavailable(f"{sc.name}: a field is both copied and set by its family's work")
        order = sorted(range(len(made)), key=lambda i: FIELD_ORDER[made[i]])
        kwnames = tuple(made[i] for i in order)
        family = FAMILIES.get(sc.family, 0)
        rows.append(
            (sc.name, sc.type, family, min_record_size(sc.family, struct), copies, extras, kwnames, order)
        )
    return rows


def compiled_decoder(limits: Limits, offset_ns: int, identity: bool = False) -> Any:
    """The compiled twin of live.Decoder(limits, offset_ns, identity)."""
    argv_shape = (limits.arg_len, limits.argv_max)
    return load().Decoder(decode_table(limits), Event, FileRef, VERDICTS, offset_ns, identity, argv_shape)


def largest_record(limits: Limits) -> int:
    """The most bytes a decoder reads from a record's start (its largest payload struct)."""
    return max(ctypes.sizeof(struct) for struct in payload_structs(limits).values())


def compiled_ring(ring: RingBuffer, decoder: Any, limits: Limits) -> Any:
    """The compiled consumer of a mapped ring buffer. A decoder reads a record's whole
    struct (a short record's tail reaches past its end), which the ring's double mapping
    keeps readable only while a struct fits in the ring."""
    if largest_record(limits) + RINGBUF_HDR > ring.size:
        raise DrainUnavailable(
            f"a record of up to {largest_record(limits)} bytes does not fit a ring of {ring.size}"
        )
    return load().Ring(ring, ring.consumer, ring.producer, ring.data, ring.size, decoder)
