"""The probe life cycle in process: maps the agent manages from user space."""

from __future__ import annotations

import ctypes

import pytest

from exporter.config import load_config
from exporter.probes.layout import SYSCALLS, payload_structs
from exporter.probes.loader import Probes

pytestmark = [pytest.mark.ebpf]


@pytest.fixture(scope="module")
def probes():
    loaded = Probes(load_config(None, environ={}).probes)
    yield loaded
    loaded.close()


def test_orphaned_enter_records_are_swept(probes, tmp_path):
    table = probes.table("pending_open")
    gone_tid = 4_000_000  # above pid_max: no such thread
    table[table.Key(gone_tid)] = table.Leaf()
    assert probes.sweep_pending() >= 1
    assert all(k.value != gone_tid for k in table)


def test_record_layouts_match_the_c_structs(probes):
    """The ctypes mirrors have the sizes the compiled program uses for its pairing maps.
    (exec is left to the live decoding tests: BCC's own type for its 2-D argv is wrong.)"""
    structs = payload_structs(probes.limits)
    families = (
        ("open", "pending_open"),
        ("mount", "pending_mount"),
        ("ns", "pending_ns"),
        ("connect", "pending_connect"),
        ("accept", "pending_accept"),
    )
    for family, map_name in families:
        leaf = probes.table(map_name).Leaf
        assert ctypes.sizeof(leaf) == ctypes.sizeof(structs[family]), family
    assert {sc.name for sc in SYSCALLS} >= {
        *("openat2", "fsmount", "move_mount", "open_tree", "execveat", "accept", "accept4")
    }


def test_counters_cover_every_syscall(probes):
    counters = probes.counters()
    assert {name for name, _ in counters} == {sc.name for sc in SYSCALLS}
