"""A BPF ring buffer in user memory, and raw records of every layout, for the drain's tests and
bench/drain_bench.py.

`MemoryRing` lays pages out as the kernel's ring buffer does (kernel/bpf/ringbuf.c, as the
consumer sees it through mmap): a consumer-position page, a producer-position page, then the
data area mapped twice in a row (one memfd's pages), so a record that wraps past the end is
contiguous. The test is the producer: `write` reserves a record (BUSY set, producer position
advanced, as bpf_ringbuf_reserve does), copies it and commits it (BUSY cleared, or DISCARD set)
unless asked to leave it busy. Both consumers, bpfsys.RingBuffer and the compiled drain, read it
exactly as they read the kernel's.

`random_record` fills a layout's ctypes struct (exporter/probes/layout.py) with random values;
`hostile=True` also breaks it: strings without NUL or not UTF-8, argc past the array, sizes
short of the layout, unknown syscall ids, timestamps near 2**64.
"""

from __future__ import annotations

import ctypes
import os
import random
import struct
from collections.abc import Callable
from typing import Any

from exporter.config.schema import ProbesConfig
from exporter.probes.bpfsys import _MAP_FAILED, RINGBUF_BUSY, RINGBUF_DISCARD, RINGBUF_HDR, RingBuffer, _libc
from exporter.probes.layout import (
    CGROUP,
    CONNECT,
    SYSCALLS,
    VARIABLE_TAIL,
    EventHeader,
    Limits,
    min_record_size,
    payload_structs,
)

PROT_RW, MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 3, 0x01, 0x02, 0x10, 0x20


def _mmap(address: int | None, length: int, flags: int, fd: int, offset: int) -> int:
    got = _libc.mmap(address, length, PROT_RW, flags, fd, offset)
    if got in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap: {os.strerror(err)}")
    return got


class MemoryRing:
    """A ring buffer of `size` data bytes (a power of two, a multiple of the page size)."""

    def __init__(self, size: int) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        if size & (size - 1) or size % self.page:
            raise ValueError(f"a ring's data area is a power of two of pages, not {size}")
        self.size, self.mask = size, size - 1
        self.memfd = os.memfd_create("provex-test-ring")
        os.ftruncate(self.memfd, 2 * self.page + size)
        self.fd = os.eventfd(0)  # what a consumer waits on (epoll refuses a memfd)
        self.consumer = _mmap(None, self.page, MAP_SHARED, self.memfd, 0)
        # Producer page and data area, then the data area again right after it.
        self.producer = _mmap(None, self.page + 2 * size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        _mmap(self.producer, self.page + size, MAP_SHARED | MAP_FIXED, self.memfd, self.page)
        _mmap(self.producer + self.page + size, size, MAP_SHARED | MAP_FIXED, self.memfd, 2 * self.page)
        self.data = self.producer + self.page
        self._cons = ctypes.c_uint64.from_address(self.consumer)
        self._prod = ctypes.c_uint64.from_address(self.producer)

    def set_positions(self, position: int) -> None:
        """Start empty at `position` (e.g. just short of the end, to make records wrap)."""
        self._cons.value = self._prod.value = position

    @property
    def consumed(self) -> int:
        return self._cons.value

    def free(self) -> int:
        return self.size - (self._prod.value - self._cons.value)

    def write(self, record: bytes, busy: bool = False, discard: bool = False) -> int | None:
        """Put one record in (None when it does not fit); its header's position."""
        need = (len(record) + RINGBUF_HDR + 7) & ~7
        if need > self.free():
            return None
        position = self._prod.value
        header = self.data + (position & self.mask)
        ctypes.c_uint32.from_address(header).value = len(record) | RINGBUF_BUSY
        self._prod.value = position + need
        ctypes.memmove(header + RINGBUF_HDR, record, len(record))
        if not busy:
            self.commit(position, discard)
        return position

    def commit(self, position: int, discard: bool = False) -> None:
        length = ctypes.c_uint32.from_address(self.data + (position & self.mask))
        length.value = (length.value & ~RINGBUF_BUSY) | (RINGBUF_DISCARD if discard else 0)

    def python_consumer(self, callback: Callable[[object, int, int], int]) -> RingBuffer:
        """The reference consumer (bpfsys.RingBuffer) over this memory instead of a BPF map's."""
        ring = RingBuffer.__new__(RingBuffer)
        ring.fd, ring.callback, ring.size, ring.mask, ring.page = (
            self.fd,
            callback,
            self.size,
            self.mask,
            self.page,
        )
        ring.consumer, ring.producer, ring.data = self.consumer, self.producer, self.data
        ring._cons, ring._prod = self._cons, self._prod
        return ring

    def close(self) -> None:
        _libc.munmap(self.consumer, self.page)
        _libc.munmap(self.producer, self.page + 2 * self.size)
        os.close(self.memfd)
        os.close(self.fd)


class MemoryProbes:
    """What LiveSource uses of the probes, over two MemoryRings (decisive, bulk)."""

    def __init__(self, config: ProbesConfig, decisive: MemoryRing, bulk: MemoryRing, limits: Limits) -> None:
        self.config, self.limits, self.file_identity = config, limits, True
        self.rings, self.cgroups = (decisive, bulk), []

    def open_ring_buffers(self, callback: Callable[[object, int, int], int]) -> list[RingBuffer]:
        return [ring.python_consumer(callback) for ring in self.rings]

    def on_cgroup_created(self, cgroup_id: int, hierarchy: int, path: str) -> None:
        self.cgroups.append(("created", cgroup_id, path))


def _text(rng: random.Random, length: int, hostile: bool) -> bytes:
    alphabet = b"/etc/passwd-_.abcXYZ019 " if not hostile else bytes(range(1, 256))
    used = rng.randrange(length + 1) if hostile else rng.randrange(min(length, 40))
    raw = bytes(rng.choice(alphabet) for _ in range(used))
    if hostile and rng.random() < 0.3:
        raw += "é\u2603".encode() + b"\xff\xfe\xc3"  # UTF-8, then bytes that are not
    return raw[:length]


def _addr(rng: random.Random) -> bytes:
    shape = rng.randrange(5)
    if shape == 0:  # an IPv4 client of a dual-stack socket
        return bytes(10) + b"\xff\xff" + rng.randbytes(4)
    if shape == 1:  # runs of zero hextets to compress
        hextets = [rng.choice((0, 0, 0, rng.randrange(65536))) for _ in range(8)]
        return b"".join(h.to_bytes(2, "big") for h in hextets)
    if shape == 2:
        return bytes(16)
    return rng.randbytes(16)


def _fill(rng: random.Random, target: Any, hostile: bool) -> None:
    """Every field of a ctypes struct, recursively, with random values."""
    for name, ctype in target._fields_:
        if isinstance(ctype, type) and issubclass(ctype, ctypes.Structure):
            value = getattr(target, name)
            if rng.random() < 0.3:
                continue  # all zero: "no identity"
            _fill(rng, value, hostile)
        elif getattr(ctype, "_type_", None) is ctypes.c_char:
            raw = _text(rng, ctypes.sizeof(ctype), hostile)
            ctypes.memmove(ctypes.addressof(target) + getattr(type(target), name).offset, raw, len(raw))
        elif issubclass(ctype, ctypes.Array):
            element = ctype._type_
            offset = ctypes.addressof(target) + getattr(type(target), name).offset
            if getattr(element, "_type_", None) is ctypes.c_char:  # argv: entries of text
                for i in range(ctype._length_):
                    raw = _text(rng, ctypes.sizeof(element), hostile)
                    ctypes.memmove(offset + i * ctypes.sizeof(element), raw, len(raw))
            else:
                raw = _addr(rng)[: ctypes.sizeof(ctype)]
                ctypes.memmove(offset, raw, len(raw))
        else:
            bits = ctypes.sizeof(ctype) * 8
            signed = ctype(-1).value < 0
            small = rng.random() < 0.6
            value = rng.randrange(64) if small else rng.getrandbits(bits)
            if signed and not small:
                value -= 1 << (bits - 1)
            setattr(target, name, value)


def random_record(rng: random.Random, limits: Limits, hostile: bool = False, sc: int | None = None) -> bytes:
    """One raw record (the bytes after the ring header) of syscall id `sc` (random if None)."""
    structs = payload_structs(limits)
    sc = rng.randrange(len(SYSCALLS)) if sc is None else sc
    row = SYSCALLS[sc]
    layout = structs[row.family]
    payload = layout()
    _fill(rng, payload, hostile)
    header = payload.h
    header.sc = sc
    header.ts = rng.getrandbits(64) if hostile and rng.random() < 0.2 else rng.randrange(10**15)
    if row.family == CONNECT:
        payload.family = rng.choice((1, 2, 10, 10, 0, 7))
    if row.family == CGROUP:
        payload.hierarchy = rng.choice((0, 0, 1))
    if hasattr(payload, "argc"):
        payload.argc = rng.randrange(limits.argv_max + (4 if hostile else 1))
    raw = bytes(payload)
    tail = VARIABLE_TAIL.get(row.family)
    size = len(raw)
    if tail:  # the kernel sends the used part of the tail
        size = min_record_size(row.family, layout) + rng.randrange(getattr(layout, tail).size + 1)
    if hostile:
        chance = rng.random()
        if chance < 0.1:
            size = rng.randrange(size + 1)  # short of its layout (or of the header)
        elif chance < 0.15:
            at = EventHeader.sc.offset  # a syscall id the table does not have
            raw = raw[:at] + struct.pack("<H", rng.randrange(len(SYSCALLS), 65536)) + raw[at + 2 :]
    return raw[:size]
