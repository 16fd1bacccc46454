"""The agent's side of its BPF objects, by file descriptor: maps through bpf(2), the ring
buffer through its mmap'd pages.

BCC compiles and loads the programs in a short-lived child (exporter.probes.build), which
hands the agent the map and attachment fds and exits, so the long-lived process never maps
LLVM (`import bcc` alone is ~62 MB). Everything the agent still does with the programs is
here: look up, update, delete and walk map entries, and read ring-buffer records.

The ring buffer is read the way libbpf does it (kernel/bpf/ringbuf.c's layout): page 0 is
the consumer position (ours to write), page 1 the producer position, then the data area
mapped twice so that a record that wraps is contiguous. Each record has an 8-byte header
(length with BUSY and DISCARD bits, page offset) and is padded to 8 bytes. Reads are plain
loads, which x86-64's ordering makes safe; the kernel publishes a record by clearing BUSY
with a release store after writing it. On a weakly ordered machine (arm64) a plain load may
see BUSY clear before the record's bytes, so the agent refuses to start there
(`machine_problem`, checked by exporter.agent.build.preflight) until the consumer reads with
acquire loads.
"""

from __future__ import annotations

import ctypes
import os
import platform
import select
from collections.abc import Callable, Iterator
from pathlib import Path

# The machines whose memory ordering makes the plain loads above safe, with bpf(2)'s number.
SUPPORTED_MACHINES = {"x86_64": 321}
_NR_BPF = SUPPORTED_MACHINES["x86_64"]
BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY = 1, 2, 3, 4
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ANY, BPF_NOEXIST = 0, 1
PERCPU_MAP_TYPES = frozenset({5, 6, 10})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
RINGBUF_BUSY, RINGBUF_DISCARD, RINGBUF_HDR = 1 << 31, 1 << 30, 8


def machine_problem(machine: str | None = None) -> str | None:
    """Why the live agent cannot read the kernel's records on this machine, or None."""
    machine = machine or platform.machine()
    if machine in SUPPORTED_MACHINES:
        return None
    return (
        f"this machine is {machine}: the ring-buffer consumer is only correct under x86-64's memory ordering"
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1


class _ElemAttr(ctypes.Structure):
    _fields_ = (
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # or next_key
        ("flags", ctypes.c_uint64),
    )


class _InfoAttr(ctypes.Structure):
    _fields_ = (("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64))


class MapInfo(ctypes.Structure):
    """The first fields of struct bpf_map_info (uapi/linux/bpf.h)."""

    _fields_ = (
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    )


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    ret = _libc.syscall(_NR_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info)))
    return info


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many CPUs a per-CPU map holds values for ("0-3" -> 4, "0,2-3" -> 4)."""
    highest = 0
    for part in Path(path).read_text().strip().split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1


class BpfMap:
    """One map, by fd. Keys and values are bytes of the map's sizes; per-CPU maps
    return one value per possible CPU, concatenated (each padded to 8 bytes)."""

    def __init__(self, fd: int, name: str = "") -> None:
        info = map_info(fd)
        self.fd, self.name = fd, name or info.name.decode()
        self.type, self.key_size, self.value_size = info.type, info.key_size, info.value_size
        self.max_entries = info.max_entries
        self.percpu = info.type in PERCPU_MAP_TYPES
        self.cpus = possible_cpus() if self.percpu else 1
        self.stride = (self.value_size + 7) // 8 * 8 if self.percpu else self.value_size
        self._value = ctypes.create_string_buffer(self.stride * self.cpus)

    def _elem(self, key: bytes, value: int = 0, flags: int = 0) -> _ElemAttr:
        if len(key) != self.key_size:
            raise ValueError(f"{self.name}: key of {len(key)} bytes, the map's are {self.key_size}")
        self._key = ctypes.create_string_buffer(key, self.key_size)
        return _ElemAttr(self.fd, 0, ctypes.addressof(self._key), value, flags)

    def lookup(self, key: bytes) -> bytes | None:
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, self._elem(key, ctypes.addressof(self._value)))
        except FileNotFoundError:
            return None
        return self._value.raw

    def per_cpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key) or b""
        return (
            [raw[i * self.stride : i * self.stride + self.value_size] for i in range(self.cpus)]
            if raw
            else []
        )

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise ValueError(f"{self.name}: value of {len(value)} bytes, the map's are {self.value_size}")
        buf = ctypes.create_string_buffer(value, self.value_size)
        _bpf(BPF_MAP_UPDATE_ELEM, self._elem(key, ctypes.addressof(buf), flags))

    def delete(self, key: bytes) -> bool:
        try:
            _bpf(BPF_MAP_DELETE_ELEM, self._elem(key))
        except FileNotFoundError:
            return False
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key (a snapshot walk: entries may come and go meanwhile)."""
        out = ctypes.create_string_buffer(self.key_size)
        attr = _ElemAttr(self.fd, 0, 0, ctypes.addressof(out), 0)  # key NULL: the first key
        found: list[bytes] = []
        while True:
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except FileNotFoundError:
                break
            found.append(out.raw)
            self._key = ctypes.create_string_buffer(out.raw, self.key_size)
            attr.key = ctypes.addressof(self._key)
        return iter(found)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value[: self.value_size]

    def clear(self) -> None:
        for key in list(self.keys()):
            self.delete(key)


class RingBuffer:
    """A BPF ring buffer read through mmap. `callback(ctx, address, size)` sees each
    record where it lies; a negative return stops the read after that record (it is
    consumed), so a caller can bound one drain."""

    def __init__(self, fd: int, callback: Callable[[object, int, int], int]) -> None:
        self.fd, self.callback = fd, callback
        self.size = map_info(fd).max_entries
        self.mask = self.size - 1
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.consumer = _libc.mmap(None, self.page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        self.producer = _libc.mmap(None, self.page + 2 * self.size, PROT_READ, MAP_SHARED, fd, self.page)
        if self.consumer in (None, _MAP_FAILED) or self.producer in (None, _MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, f"cannot mmap the ring buffer: {os.strerror(err)}")
        self.data = self.producer + self.page
        self._cons = ctypes.c_uint64.from_address(self.consumer)
        self._prod = ctypes.c_uint64.from_address(self.producer)
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)

    def pending(self) -> bool:
        """Records are waiting (or being written)."""
        return self._cons.value < self._prod.value

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for the kernel's wakeup (or data left from before), then read."""
        if self._cons.value >= self._prod.value:
            self._epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1)
        return self.consume()

    def consume(self) -> int:
        """Read what is there; returns how many records the callback saw."""
        cons, seen = self._cons.value, 0
        data, mask, callback = self.data, self.mask, self.callback
        while True:
            prod = self._prod.value
            if cons >= prod:
                return seen
            while cons < prod:
                header = data + (cons & mask)
                length = ctypes.c_uint32.from_address(header).value
                if length & RINGBUF_BUSY:
                    self._cons.value = cons
                    return seen  # the producer is still writing this one
                size = length & ~(RINGBUF_BUSY | RINGBUF_DISCARD)
                cons += (size + RINGBUF_HDR + 7) & ~7
                if not length & RINGBUF_DISCARD:
                    seen += 1
                    if callback(None, header + RINGBUF_HDR, size) < 0:
                        self._cons.value = cons
                        return seen
                self._cons.value = cons

    def close(self) -> None:
        self._epoll.close()
        _libc.munmap(self.consumer, self.page)
        _libc.munmap(self.producer, self.page + 2 * self.size)
