"""The compiled drain on real kernel ring buffers: a tiny XDP program, run with BPF_PROG_TEST_RUN
(never attached to anything), copies the records the test chooses into BPF ring buffers with
bpf_ringbuf_output, or reserves and discards one. One pair of rings is drained by LiveSource
with the Python reference, the other by LiveSource with the compiled drain: the same records,
written in the same order, must come out as the same batches."""

from __future__ import annotations

import ctypes
import os
import random
import struct
from typing import Any

import pytest

from bench.helpers.rings import random_record
from exporter.config.schema import ProbesConfig
from exporter.probes.bpfsys import RingBuffer
from exporter.probes.layout import SYSCALLS, Limits
from exporter.source import live
from exporter.source.live import LiveSource

pytestmark = pytest.mark.ebpf

RING_PAGES = 4  # 16 KiB each: the records below wrap it many times
PROGRAM = r"""
BPF_RINGBUF_OUTPUT(python_decisive, RING_PAGES);
BPF_RINGBUF_OUTPUT(python_bulk, RING_PAGES);
BPF_RINGBUF_OUTPUT(native_decisive, RING_PAGES);
BPF_RINGBUF_OUTPUT(native_bulk, RING_PAGES);

/* BCC's helpers.h of this release does not declare it (Linux 5.18). */
static long (*xdp_load_bytes)(struct xdp_md *ctx, u32 offset, void *buf, u32 len) =
    (void *)BPF_FUNC_xdp_load_bytes;

/* (passed as buf, not buf->bytes: BCC 0.26's rewriter aborts on a member array there) */
struct scratch { u8 bytes[4096]; };
struct blank { u8 bytes[64]; };
BPF_PERCPU_ARRAY(buffer, struct scratch, 1);

/* A packet: u8 ring (0..3), u8 discard, u16 length, then the record's bytes. */
int put(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (data + 4 > end)
        return XDP_ABORTED;
    u8 ring = *(u8 *)data;
    u8 discard = *(u8 *)(data + 1);
    u32 len = *(u16 *)(data + 2);
    int zero = 0;
    struct scratch *buf = buffer.lookup(&zero);
    if (!buf || len == 0 || len > 4000)
        return XDP_ABORTED;
    if (xdp_load_bytes(ctx, 4, buf, len))
        return XDP_ABORTED;
    if (discard && ring == 1) {
        struct blank *slot = python_bulk.ringbuf_reserve(sizeof(struct blank));
        if (!slot)
            return XDP_DROP;
        python_bulk.ringbuf_discard(slot, 0);
        return XDP_PASS;
    }
    if (discard) {
        struct blank *slot = native_bulk.ringbuf_reserve(sizeof(struct blank));
        if (!slot)
            return XDP_DROP;
        native_bulk.ringbuf_discard(slot, 0);
        return XDP_PASS;
    }
    long err = -1;
    if (ring == 0)
        err = python_decisive.ringbuf_output(buf, len, 0);
    else if (ring == 1)
        err = python_bulk.ringbuf_output(buf, len, 0);
    else if (ring == 2)
        err = native_decisive.ringbuf_output(buf, len, 0);
    else
        err = native_bulk.ringbuf_output(buf, len, 0);
    return err ? XDP_DROP : XDP_PASS;
}
"""
XDP_PASS, BPF_PROG_TEST_RUN, NR_BPF = 2, 10, 321


class ProgTestRunAttr(ctypes.Structure):
    """The test-run part of union bpf_attr (uapi/linux/bpf.h)."""

    _fields_ = (
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class Producer:
    """The XDP program, run on packets that carry records."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(text=PROGRAM, cflags=[f"-DRING_PAGES={RING_PAGES}"])
        self.fd = self.bpf.load_func("put", BPF.XDP).fd

    def ring_fd(self, name: str) -> int:
        return self.bpf.get_table(name).map_fd

    def put(self, ring: int, record: bytes, discard: bool = False) -> int:
        packet = struct.pack("<BBH", ring, discard, len(record)) + record
        packet = packet.ljust(64, b"\0")  # XDP test runs want an Ethernet header's worth at least
        data = ctypes.create_string_buffer(packet, len(packet))
        attr = ProgTestRunAttr(
            prog_fd=self.fd, data_size_in=len(packet), data_in=ctypes.addressof(data), repeat=1
        )
        if _libc.syscall(NR_BPF, BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
        return attr.retval


class KernelProbes:
    """What LiveSource uses of the probes: two of the program's ring buffers."""

    def __init__(self, producer: Producer, side: str, drain_mode: str) -> None:
        self.limits, self.file_identity, self.cgroups = Limits(), True, []
        self.config = ProbesConfig(drain=drain_mode, drain_max_records=50, drain_max_ms=60_000)
        self.fds = [producer.ring_fd(f"{side}_decisive"), producer.ring_fd(f"{side}_bulk")]

    def open_ring_buffers(self, callback: Any) -> list[RingBuffer]:
        self.rings = [RingBuffer(fd, callback) for fd in self.fds]
        return self.rings

    def on_cgroup_created(self, cgroup_id: int, hierarchy: int, path: str) -> None:
        self.cgroups.append((cgroup_id, path))


def _drain_all(source: LiveSource) -> list[list[Any]]:
    batches = []
    while True:
        batch = source.poll(0)
        if not batch and not source.backlog:
            return batches
        batches.append(batch)


def test_kernel_rings_drain_to_the_same_batches_in_both_consumers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "boot_to_wall_offset_ns", lambda: 1_765_000_000_000_000_000)
    producer = Producer()
    python_probes = KernelProbes(producer, "python", "python")
    native_probes = KernelProbes(producer, "native", "native")
    python_source, native_source = LiveSource(python_probes), LiveSource(native_probes)
    assert not python_source._compiled and native_source._compiled
    limits, rng = Limits(), random.Random(2026)
    names = [row.name for row in SYSCALLS]
    events = wrapped = 0
    try:
        for round_ in range(40):
            for _ in range(rng.randrange(1, 12)):
                decisive = rng.random() < 0.3
                choice = rng.random()
                if choice < 0.1:
                    record = random_record(
                        rng, limits, sc=names.index(rng.choice(["cgroup_mkdir", "cgroup_rmdir"]))
                    )
                elif choice < 0.2:
                    record = random_record(rng, limits, hostile=True) or b"\0"
                else:
                    record = random_record(rng, limits)
                discard = not decisive and rng.random() < 0.1
                results = [producer.put(base + (0 if decisive else 1), record, discard) for base in (0, 2)]
                assert results == [XDP_PASS, XDP_PASS], f"round {round_}: the ring was full"
            python_batches, native_batches = _drain_all(python_source), _drain_all(native_source)
            assert native_batches == python_batches, f"round {round_}"
            events += sum(len(batch) for batch in python_batches)
            positions = [ring._cons.value for ring in python_probes.rings + native_probes.rings]
            assert positions[:2] == positions[2:]  # the same bytes consumed from each ring
            wrapped = positions[1] // python_probes.rings[1].size
        assert native_probes.cgroups == python_probes.cgroups
    finally:
        python_source.close()
        native_source.close()
    assert events > 150 and wrapped >= 2
