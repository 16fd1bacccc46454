"""The compiled drain against the Python reference (bpfsys.RingBuffer + live.Decoder): the same
raw bytes must give the same Events, control records and decode-error counts, and the same
ring positions, batches and bounds (issue 23)."""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import random
from typing import Any

import pytest

from bench.helpers.rings import MemoryProbes, MemoryRing, random_record
from exporter.config.schema import ProbesConfig
from exporter.model import Event
from exporter.probes.layout import CGROUP, CONNECT, EXEC, OPEN, SYSCALLS, Limits, payload_structs
from exporter.source import drain, live
from exporter.source.live import DECODE_ERRORS, Decoder, LiveSource

OFFSET_NS = 1_765_000_000_000_000_000
LIMITS = Limits()
SC = {row.name: index for index, row in enumerate(SYSCALLS)}


def test_the_compiled_drain_is_built_from_these_sources() -> None:
    assert drain.source_digest() == drain.load().SOURCE_DIGEST


def _errors() -> dict[str, float]:
    return {cause: DECODE_ERRORS.labels(cause)._value.get() for cause in ("short", "unknown_syscall")}


class Twins:
    """Both decoders over the same bytes, each record placed before `trailing` bytes of noise
    (a short record's struct view reads past its end, as it does in the ring)."""

    def __init__(self, identity: bool = True, limits: Limits = LIMITS) -> None:
        self.python = Decoder(limits, OFFSET_NS, identity)
        self.compiled = drain.compiled_decoder(limits, OFFSET_NS, identity)
        self.trailing = drain.largest_record(limits)
        self.python_errors = {"short": 0.0, "unknown_syscall": 0.0}

    def decode(self, record: bytes, noise: bytes = b"") -> tuple[Any, Any]:
        noise = (noise or bytes(self.trailing)).ljust(self.trailing, b"\xaa")
        buf = ctypes.create_string_buffer(record + noise, len(record) + len(noise))
        before = _errors()
        expected = self.python.decode(ctypes.addressof(buf), len(record))
        after = _errors()
        for cause in after:
            self.python_errors[cause] += after[cause] - before[cause]
        return expected, self.compiled.decode(ctypes.addressof(buf), len(record))

    def compiled_errors(self) -> dict[str, float]:
        return {"short": self.compiled.short_records, "unknown_syscall": self.compiled.unknown_syscall}


def _same(expected: Any, got: Any) -> None:
    assert got == expected
    assert repr(got) == repr(expected)  # every field, types included (an enum, not its text)


@pytest.mark.parametrize("name", [row.name for row in SYSCALLS])
def test_every_layout_decodes_to_the_references_event(name: str) -> None:
    twins, rng = Twins(), random.Random(name)
    decoded = 0
    for _ in range(300):
        expected, got = twins.decode(random_record(rng, LIMITS, sc=SC[name]))
        _same(expected, got)
        decoded += expected is not None
    assert decoded == 300  # records as the kernel writes them: none refused
    assert twins.compiled_errors() == twins.python_errors == {"short": 0, "unknown_syscall": 0}


def test_seeded_fuzz_of_hostile_records_and_their_error_counts() -> None:
    twins, rng = Twins(), random.Random(23)
    kinds: dict[str, int] = {}
    for _ in range(20_000):
        record = random_record(rng, LIMITS, hostile=True)
        expected, got = twins.decode(record, rng.randbytes(rng.randrange(64)))
        _same(expected, got)
        kind = type(expected).__name__
        kinds[kind] = kinds.get(kind, 0) + 1
    assert twins.compiled_errors() == twins.python_errors
    assert twins.python_errors["short"] > 100 and twins.python_errors["unknown_syscall"] > 100
    assert kinds["Event"] > 10_000 and kinds["tuple"] > 100  # control records too


def test_without_identity_by_runtime_stays_unknown_in_both() -> None:
    twins, rng = Twins(identity=False), random.Random(5)
    for _ in range(200):
        expected, got = twins.decode(random_record(rng, LIMITS, sc=SC["openat"]))
        _same(expected, got)
        assert got.by_runtime is None


def _payload(name: str, limits: Limits = LIMITS) -> Any:
    payload = payload_structs(limits)[SYSCALLS[SC[name]].family]()
    payload.h.sc, payload.h.ts, payload.h.pid, payload.h.tid = SC[name], 12345, 7, 8
    return payload


def test_text_that_is_not_utf8_or_has_no_nul_is_read_the_same() -> None:
    twins = Twins()
    payload = _payload("openat")
    raw = b"/etc/\xff\xfe\xc3(" + b"x" * (LIMITS.path_max - 9)  # fills the field: no NUL
    ctypes.memmove(ctypes.addressof(payload) + type(payload).path.offset, raw, len(raw))
    ctypes.memmove(ctypes.addressof(payload.h) + type(payload.h).comm.offset, b"\xe2\x98" * 8, 16)
    expected, got = twins.decode(bytes(payload))
    _same(expected, got)
    assert got.path.encode("utf-8", "surrogateescape") == raw
    assert got.comm.encode("utf-8", "surrogateescape") == b"\xe2\x98" * 8


@pytest.mark.parametrize("argc", [LIMITS.argv_max, LIMITS.argv_max + 1, 2**32 - 1])
def test_max_length_argv_is_bounded_the_same(argc: int) -> None:
    twins = Twins()
    payload = _payload("execve")
    payload.argc = argc
    for i in range(LIMITS.argv_max):
        payload.argv[i].raw = bytes([0x41 + i]) * LIMITS.arg_len  # every entry full, no NUL
    expected, got = twins.decode(bytes(payload))
    _same(expected, got)
    assert got.argv == [chr(0x41 + i) * LIMITS.arg_len for i in range(LIMITS.argv_max)]


def test_other_limits_move_the_offsets_for_both() -> None:
    limits = Limits(path_max=1024, argv_max=4, arg_len=32, exe_name_len=16)
    twins, rng = Twins(limits=limits), random.Random(9)
    for _ in range(2000):
        _same(*twins.decode(random_record(rng, limits, hostile=True)))


@pytest.mark.parametrize(
    "address",
    ["::", "::1", "1::", "::ffff:10.0.0.1", "::10.0.0.1", "fe80::1:0:0:1", "1:0:0:2:0:0:0:3", "1:0:1:0:1:0:1:0",
     "2001:db8::ff00:42:8329", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0:1:0:0:1:0:0:0"],
)  # fmt: skip
@pytest.mark.parametrize("name", ["connect", "accept4"])
def test_addresses_are_written_as_ipaddress_writes_them(name: str, address: str) -> None:
    twins = Twins()
    payload = _payload(name)
    payload.family = 10
    ctypes.memmove(payload.addr, ipaddress.IPv6Address(address).packed, 16)
    expected, got = twins.decode(bytes(payload))
    _same(expected, got)
    assert (got.daddr or got.saddr) != ""


def test_unix_connects_give_the_path_not_an_address() -> None:
    payload = _payload("connect")
    payload.family, payload.path = 1, b"/run/containerd/containerd.sock"
    expected, got = Twins().decode(bytes(payload))
    _same(expected, got)
    assert (got.path, got.daddr) == ("/run/containerd/containerd.sock", "")


def test_a_timestamp_past_64_bits_after_the_offset_is_added_as_python_adds_it() -> None:
    payload = _payload("fork")
    payload.h.ts = 2**64 - 1
    expected, got = Twins().decode(bytes(payload))
    _same(expected, got)
    assert got.ts_ns == 2**64 - 1 + OFFSET_NS


# The consumer: LiveSource over two rings in user memory (MemoryRing), with each consumer.


class Side:
    """One consumer's LiveSource, and what it saw."""

    def __init__(self, mode: str, max_records: int = 7, size: int = 16384) -> None:
        self.decisive, self.bulk = MemoryRing(size), MemoryRing(size)
        config = ProbesConfig(drain=mode, drain_max_records=max_records, drain_max_ms=60_000)
        self.probes = MemoryProbes(config, self.decisive, self.bulk, LIMITS)
        self.source = LiveSource(
            self.probes, on_cgroup_gone=lambda cgroup: self.probes.cgroups.append(("gone", cgroup))
        )

    def polls(self) -> list[list[Event]]:
        out = []
        while True:
            batch = self.source.poll(0)
            if not batch and not self.source.backlog:
                return out
            out.append(batch)

    def close(self) -> None:
        self.source.close()
        self.decisive.close()
        self.bulk.close()


@pytest.fixture
def sides(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(live, "boot_to_wall_offset_ns", lambda: OFFSET_NS)
    made: list[Side] = []

    def make(**kwargs: Any) -> tuple[Side, Side]:
        pair = Side("python", **kwargs), Side("native", **kwargs)
        made.extend(pair)
        assert not pair[0].source._compiled and pair[1].source._compiled
        return pair

    yield make
    for side in made:
        side.close()


def _write_both(pair: tuple[Side, Side], ring: str, record: bytes, **flags: Any) -> list[int | None]:
    return [getattr(side, ring).write(record, **flags) for side in pair]


def _valid(rng: random.Random, name: str | None = None) -> bytes:
    """A record the reference decodes, ts ordered so the two rings' merge is deterministic."""
    record = random_record(
        rng, LIMITS, sc=SC[name] if name else rng.choice([SC["openat"], SC["fork"], SC["execve"]])
    )
    return record


def test_batches_bounds_and_positions_match_through_wrap_discard_and_control_records(sides: Any) -> None:
    pair = sides(max_records=7)
    rng = random.Random(11)
    for side in pair:  # 600 bytes short of the end: the records wrap past it
        side.bulk.set_positions(3 * 2**32 + side.bulk.size - 600)
        side.decisive.set_positions(side.decisive.size - 100)
    for round_ in range(30):
        for i in range(rng.randrange(1, 25)):
            ring = "decisive" if i % 5 == 0 else "bulk"
            choice = rng.random()
            if choice < 0.1:
                record = _valid(rng, rng.choice(["cgroup_mkdir", "cgroup_rmdir"]))
            elif choice < 0.2:
                record = random_record(rng, LIMITS, hostile=True)
            else:
                record = _valid(rng)
            written = _write_both(pair, ring, record, discard=rng.random() < 0.1)
            assert written[0] == written[1]
        seen = [side.polls() for side in pair]
        assert seen[0] == seen[1], f"round {round_}"
        python_side, native_side = pair
        assert native_side.bulk.consumed == python_side.bulk.consumed == python_side.bulk._prod.value
        assert native_side.decisive.consumed == python_side.decisive.consumed
        assert native_side.probes.cgroups == python_side.probes.cgroups
    assert pair[0].bulk.consumed > 3 * 2**32 + 2 * pair[0].bulk.size  # wrapped, twice at least
    assert any(c[0] == "gone" for c in pair[1].probes.cgroups)
    assert any(c[0] == "created" for c in pair[1].probes.cgroups)


def test_a_busy_record_stops_both_until_it_is_committed(sides: Any) -> None:
    pair = sides(max_records=100)
    rng = random.Random(3)
    first = _valid(rng, "openat")
    busy = _valid(rng, "execve")
    after = _valid(rng, "fork")
    _write_both(pair, "bulk", first)
    positions = _write_both(pair, "bulk", busy, busy=True)
    _write_both(pair, "bulk", after)
    before = [side.polls() for side in pair]
    assert before[0] == before[1] and sum(len(b) for b in before[0]) == 1
    assert pair[0].bulk.consumed == pair[1].bulk.consumed == positions[0]
    for side, position in zip(pair, positions, strict=True):
        side.bulk.commit(position)
    rest = [side.polls() for side in pair]
    assert rest[0] == rest[1] and [e.syscall for batch in rest[0] for e in batch] == ["execve", "fork"]


def test_the_deadline_stops_a_drain_at_the_256th_event_in_both(sides: Any) -> None:
    pair = sides(max_records=10_000, size=2**20)
    rng = random.Random(4)
    for _ in range(600):
        _write_both(pair, "bulk", _valid(rng, "fork"))
    got = []
    for side in pair:
        side.source._deadline = 0  # already past
        got.append((side.source._drain(side.source._bulk, 10_000), side.source._full, side.bulk.consumed))
    assert len(got[0][0]) == 256 and got[0][1] is True
    assert got[0] == got[1]


def test_records_that_do_not_fit_the_bound_stay_for_the_next_drain(sides: Any) -> None:
    pair = sides(max_records=5)
    rng = random.Random(8)
    for _ in range(12):
        _write_both(pair, "bulk", _valid(rng, "openat"))
    first = [side.source.poll(0) for side in pair]
    assert first[0] == first[1] and len(first[0]) == 5
    assert pair[0].source.backlog and pair[1].source.backlog
    assert pair[0].bulk.consumed == pair[1].bulk.consumed < pair[0].bulk._prod.value


def test_decode_errors_reach_the_same_counter(sides: Any) -> None:
    pair = sides(max_records=1000)
    rng = random.Random(12)
    records = [random_record(rng, LIMITS, hostile=True) for _ in range(300)]
    counts = []
    for side in pair:
        before = _errors()
        for record in records:
            side.bulk.write(record)
        side.polls()
        after = _errors()
        counts.append({cause: after[cause] - before[cause] for cause in after})
    assert counts[0] == counts[1] and counts[0]["short"] > 0


# Choosing the consumer


def test_python_is_the_reference_alone() -> None:
    assert drain.wanted("python") is False


@pytest.fixture
def unbuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "_module", None)
    monkeypatch.setattr(drain, "source_digest", lambda: "0123456789abcdef")
    monkeypatch.setattr(drain, "_error", "")
    monkeypatch.setattr(drain, "_fallback_logged", False)


def test_a_stale_build_is_refused_and_auto_says_so_once(
    unbuilt: None, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(drain.DrainUnavailable, match=r"built from other sources.*probes\.drain: python"):
        drain.wanted("native")
    with caplog.at_level(logging.WARNING, logger="provex.source"):
        assert drain.wanted("auto") is False
        assert drain.wanted("auto") is False
    assert [r.message for r in caplog.records] == ["draining the ring buffers in Python"]


def test_without_the_drain_auto_drains_in_python_and_native_refuses_to_start(
    unbuilt: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "boot_to_wall_offset_ns", lambda: OFFSET_NS)
    with pytest.raises(drain.DrainUnavailable, match="built from other sources"):
        Side("native")
    side = Side("auto")
    try:
        assert not side.source._compiled
        record = random_record(random.Random(1), LIMITS, sc=SC["openat"])
        side.bulk.write(record)
        ((event,),) = side.polls()
        assert event.syscall == "openat" and event.ts_ns > OFFSET_NS
    finally:
        side.close()


def test_a_ring_smaller_than_a_record_is_refused(sides: Any) -> None:
    limits = Limits(path_max=4096, argv_max=64, arg_len=256)
    ring = MemoryRing(4096)
    try:
        decoder = drain.compiled_decoder(limits, OFFSET_NS)
        with pytest.raises(drain.DrainUnavailable, match="does not fit a ring of 4096"):
            drain.compiled_ring(ring.python_consumer(lambda *a: 0), decoder, limits)
    finally:
        ring.close()


def test_the_table_follows_the_layout() -> None:
    rows = drain.decode_table(LIMITS)
    assert [row[0] for row in rows] == [row.name for row in SYSCALLS]
    families = {SYSCALLS[i].family: row[2] for i, row in enumerate(rows)}
    assert families[OPEN] and families[EXEC] and families[CONNECT] and families[CGROUP]
