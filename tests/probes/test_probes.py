"""The probe life cycle in process: maps the agent manages from user space, by fd."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys

import pytest

from exporter.config import load_config
from exporter.probes.layout import MAPS, PENDING_MAPS, SYSCALLS, payload_structs
from exporter.probes.loader import Probes

pytestmark = [pytest.mark.ebpf]


@pytest.fixture(scope="module")
def probes():
    loaded = Probes(load_config(None, environ={}).probes)
    yield loaded
    loaded.close()


def test_the_build_child_hands_over_every_map_and_attachment(probes):
    assert set(probes.maps) == set(MAPS)
    assert len(probes.attached) >= len(SYSCALLS)  # enter and exit tracepoints


def test_orphaned_enter_records_are_swept(probes):
    table = probes.table("pending_open")
    gone_tid = 4_000_000  # above pid_max: no such thread
    table.update(struct.pack("<I", gone_tid), bytes(table.value_size))
    assert probes.sweep_pending() >= 1
    assert struct.pack("<I", gone_tid) not in set(table.keys())


def test_record_layouts_match_the_compiled_maps(probes):
    """The ctypes mirrors have the sizes the compiled program gives its pairing maps' values,
    exec (2-D argv) included."""
    structs = payload_structs(probes.limits)
    families = {
        "pending_open": "open",
        "pending_exec": "exec",
        "pending_mount": "mount",
        "pending_ns": "ns",
        "pending_connect": "connect",
        "pending_ctx": "open",
        "pending_link": "link",
        "pending_dup": "dup",
        "pending_accept": "accept",
    }
    assert set(families) == set(PENDING_MAPS) - {"pending_clone"}
    for map_name, family in families.items():
        assert probes.table(map_name).value_size == ctypes.sizeof(structs[family]), map_name
    # the offsets the decoder relies on for the variable tails, from the C layout
    # (bpf/provex.h: a 64-byte header; exec_ev: dirfd, flags, argc, pad, user_path, three
    # struct file_id of 24 bytes (exe, stdin, stdout), exe_name, path, argv)
    exec_ev = structs["exec"]
    path_at = 64 + 24 + 3 * 24 + probes.limits.exe_name_len
    assert exec_ev.path.offset == path_at and exec_ev.argv.offset == path_at + probes.limits.path_max
    open_ev = structs["open"]  # dirfd, flags, mode, path_len, user_path, resolve, file, verdict, repeats
    assert open_ev.path.offset == 64 + 24 + 8 + 24 + 8


def test_the_kernel_counts_what_it_saw(probes):
    before = probes.counters()
    for _ in range(100):
        os.close(os.open("/etc/hostname", os.O_RDONLY))
    after = probes.counters()
    # this process is on the host: seen and filtered by cgroup, nothing emitted
    assert after[("openat", "seen")] - before[("openat", "seen")] >= 100
    assert after[("openat", "filtered_cgroup")] - before[("openat", "filtered_cgroup")] >= 100
    assert {name for name, _ in after} == {sc.name for sc in SYSCALLS}


def test_path_prefixes_are_written_and_forgotten_by_fd(probes):
    trie = probes.table("path_prefixes")
    before = len(list(trie.keys()))
    probes.learn_name("/tmp/provex-test-learned")
    assert len(list(trie.keys())) == before + 1
    probes.forget_name("/tmp/provex-test-learned")
    probes.forget_name("/etc/")  # a configured prefix is never forgotten
    assert len(list(trie.keys())) == before


# A small interpreter forks fast; the test process itself, grown by the suite, forks slowly
# enough (copying its page tables) to stay within even the tightened budget.
FORKER = """
import os, sys
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


def _fork_and_reap(n: int) -> None:
    subprocess.run([sys.executable, "-c", FORKER, str(n)], check=True)


def test_a_lagging_agent_sheds_the_process_lifecycle_too():
    """While the agent lags (the pressure flag), every cgroup's forks and exits get the
    16-fold smaller budget, as reads do: a flooder held at its full budget would fill the
    shared ring and lose everyone's records. Without the flag the same forks all cross."""
    probes = Probes(load_config(None, ["probes.monitor=all"], environ={}).probes)
    try:

        def shed_forks(behind: bool) -> int:
            probes.set_pressure(behind)
            before = probes.counters()[("fork", "shed")]
            _fork_and_reap(2000)
            return probes.counters()[("fork", "shed")] - before

        assert shed_forks(False) == 0
        assert shed_forks(True) > 0
    finally:
        probes.set_pressure(False)
        probes.close()
