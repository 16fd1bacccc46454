"""End to end on the real kernel: the agent, real runc containers, every probed syscall."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from exporter.agent.losses import EXIT_LOST
from exporter.model import Event, EventType
from exporter.scenarios.runc import ContainerSpec, Mount, Runc, build_helper

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

CLONE_NEWUSER = 0x10000000
CLONE_NEWUTS = 0x04000000


@pytest.fixture(scope="module")
def runc(tmp_path_factory):
    runtime = Runc(tmp_path_factory.mktemp("runc"))
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    process = Agent(tmp_path_factory.mktemp("agent"))
    yield process
    assert_clean_exit(process.stop(), process.stderr_path)


@pytest.fixture
def listener():
    """A loopback TCP listener the container connects to (IPv4 and IPv6)."""
    v4 = socket.create_server(("127.0.0.1", 0))
    try:
        v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        v6 = None
    yield v4.getsockname()[1], (v6.getsockname()[1] if v6 else None)
    v4.close()
    if v6:
        v6.close()


@pytest.fixture
def host_sleeper():
    """Another host process whose namespaces a container can enter (/proc/1/ns is closed here)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


def of(events: list[Event], cgroup_id: int, syscall: str, **fields) -> list[Event]:
    return [
        e
        for e in events
        if e.cgroup_id == cgroup_id
        and e.syscall == syscall
        and all(getattr(e, k) == v for k, v in fields.items())
    ]


def test_every_probe_in_a_real_container(agent, runc, listener, host_sleeper):
    port4, port6 = listener
    script = " ; ".join(
        [
            "sysprobe open /etc/passwd",
            "sysprobe openat /etc/hostname",
            "sysprobe openat2 /etc/shadow",
            "sysprobe creat /tmp/created",
            "sysprobe execve /bin/true",
            "sysprobe execveat /bin/echo provex-execveat",
            f"sysprobe connect 127.0.0.1 {port4}",
            *([f"sysprobe connect ::1 {port6}"] if port6 else []),
            f"sysprobe setns-pidfd {host_sleeper} {CLONE_NEWUTS}",
            f"sysprobe setns /proc/{host_sleeper}/ns/uts",
            f"sysprobe unshare {CLONE_NEWUSER}",
            "mkdir -p /tmp/m1 /tmp/m2",
            "sysprobe mount none /tmp/m1 tmpfs",
            "sysprobe newmount tmpfs /tmp/m2",
        ]
    )
    run = runc.run(ContainerSpec(["/bin/sh", "-c", script], name="e2e-all", privileged=True, host_pid=True))
    assert run.returncode == 0, run.stderr
    assert "errno=" in run.stdout and all(
        line.startswith("ret=") and line.endswith("errno=0")
        for line in run.stdout.splitlines()
        if line.startswith("ret=") and "errno=111" not in line
    ), run.stdout
    cg = run.cgroup_id

    def complete(events: list[Event]) -> bool:
        return bool(of(events, cg, "move_mount")) and bool(of(events, cg, "mount"))

    events = agent.wait_for(complete)
    mine = [e for e in events if e.cgroup_id == cg]
    assert mine, "no event carried the container's cgroup id"

    # The open family, each once, with the path as given and a real fd.
    for syscall, path in [
        ("open", "/etc/passwd"),
        ("openat", "/etc/hostname"),
        ("openat2", "/etc/shadow"),
        ("creat", "/tmp/created"),
    ]:
        hits = [e for e in of(events, cg, syscall, path=path) if e.comm == "sysprobe"]
        assert len(hits) == 1, (syscall, path, hits)
        assert hits[0].ret >= 0 and hits[0].type is EventType.OPEN
        assert hits[0].pid > 0 and hits[0].tid == hits[0].pid
    assert of(events, cg, "creat", path="/tmp/created")[0].flags & 0o100  # O_CREAT

    # exec: both variants, argv and the new image's comm.
    (true_exec,) = of(events, cg, "execve", path="/bin/true")
    assert true_exec.ret == 0 and true_exec.argv == ["/bin/true"] and true_exec.comm == "true"
    (echo_exec,) = of(events, cg, "execveat", path="/bin/echo")
    assert echo_exec.ret == 0 and echo_exec.argv == ["/bin/echo", "provex-execveat"]

    # connect: destination from the user's sockaddr, never 0.0.0.0.
    (c4,) = of(events, cg, "connect", dport=port4)
    assert c4.daddr == "127.0.0.1" and c4.family == 2 and c4.ret == 0
    if port6:
        (c6,) = of(events, cg, "connect", dport=port6)
        assert c6.daddr == "::1" and c6.family == 10

    # setns: the pidfd form (modern nsenter) and the /proc/PID/ns form.
    setns = of(events, cg, "setns")
    assert len(setns) == 2 and all(e.ret == 0 for e in setns)
    assert {e.nstype for e in setns} == {CLONE_NEWUTS, 0}
    ns_open = [e for e in of(events, cg, "openat", path=f"/proc/{host_sleeper}/ns/uts")]
    assert len(ns_open) == 1

    (unshare,) = of(events, cg, "unshare", nstype=CLONE_NEWUSER)
    assert unshare.ret == 0

    (mount,) = of(events, cg, "mount", target="/tmp/m1")
    assert mount.fstype == "tmpfs" and mount.source == "none" and mount.ret == 0
    (fsopen,) = of(events, cg, "fsopen", fstype="tmpfs")
    assert fsopen.ret >= 0
    assert of(events, cg, "fsconfig") and of(events, cg, "fsmount")
    (move,) = of(events, cg, "move_mount", target="/tmp/m2")
    assert move.ret == 0

    # Lineage: the shell forked the helpers, and they exited.
    assert of(events, cg, "fork") and of(events, cg, "exit")
    # Every event has the container's identity basics.
    assert all(e.ts_ns > 1_600_000_000 * 10**9 and e.comm for e in mine)
    # Each event id appears once.
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def _connect_when_accepting(port: int, limit_s: float = 20.0) -> tuple[int, int]:
    """Once a container (host network) listens on port and has had time to block in accept:
    connect. The time just before the connect, and the client's port."""
    deadline = time.monotonic() + limit_s
    while not _listening(port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.02)
    time.sleep(0.3)
    before = time.time_ns()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return before, conn.getsockname()[1]


def test_accept_reports_the_peer_from_the_callers_sockaddr(agent, runc):
    """accept, accept4 on a dual-stack socket (an IPv4 client: ::ffff:127.0.0.1 is given as
    127.0.0.1) and accept4 without a peer buffer: each one event, stamped at the exit."""
    ports = {"accept": _free_port(), "accept4-v6": _free_port(), "accept-nopeer": _free_port()}
    script = " ; ".join(f"sysprobe {op} {port}" for op, port in ports.items())
    container = runc.start(ContainerSpec(["/bin/sh", "-c", script], name="e2e-accept"))
    try:
        clients = {op: _connect_when_accepting(port) for op, port in ports.items()}
    finally:
        run = container.stop()
    cg = run.cgroup_id
    events = agent.wait_for(lambda evs: len(of(evs, cg, "accept") + of(evs, cg, "accept4")) >= 3)
    accepts = [e for e in events if e.cgroup_id == cg and e.type is EventType.ACCEPT]
    assert len(accepts) == 3, accepts
    (a,) = of(events, cg, "accept")
    assert (a.family, a.saddr, a.sport) == (2, "127.0.0.1", clients["accept"][1])
    assert a.ret >= 0 and a.fd >= 0
    v6, nopeer = sorted(of(events, cg, "accept4"), key=lambda e: e.ts_ns)
    assert (v6.family, v6.saddr, v6.sport) == (10, "127.0.0.1", clients["accept4-v6"][1])
    assert v6.flags & 0o2000000  # SOCK_CLOEXEC
    assert (nopeer.family, nopeer.saddr, nopeer.sport) == (0, "", 0)
    # The exit's time: the server waited in accept before the client came, and returned after.
    for event, op in ((a, "accept"), (v6, "accept4-v6"), (nopeer, "accept-nopeer")):
        assert event.ts_ns >= clients[op][0] - 1_000_000, op  # boot-time offset rounding


def test_host_process_is_filtered_in_the_kernel(agent, tmp_path):
    helper = build_helper(tmp_path)
    before = agent.kernel("openat2", "filtered_cgroup")
    result = subprocess.run(
        [str(helper), "openat2", "/etc/shadow"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("ret=")
    deadline = time.monotonic() + 10
    while agent.kernel("openat2", "filtered_cgroup") <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent.kernel("openat2", "filtered_cgroup") > before
    time.sleep(0.2)  # two drain intervals and more: anything delivered would be here
    assert not [
        e for e in agent.events() if e.syscall == "openat2" and e.comm == "sysprobe" and e.cgroup_id <= 1
    ]


def test_flood_loss_is_counted_honestly(tmp_path, runc):
    """A tiny ring buffer under a flood: the agent stays up and every record is accounted for.
    The flood budget is raised so that the ring, not the budget, is what overflows."""
    agent = Agent(
        tmp_path,
        *("--set", "probes.ring_buffer_pages=4", "--set", "probes.wakeup_bytes=1000000"),
        *("--set", "probes.flood_read_rate=1000000", "--set", "probes.flood_burst_s=1"),
    )
    try:
        n = 200_000
        run = runc.run(
            ContainerSpec(["sysprobe", "flood", "/etc/hostname", str(n)], name="flood"), timeout=120
        )
        assert run.returncode == 0, run.stderr
        cg = run.cgroup_id

        seen: dict[str, float] = {}

        def settled(events: list[Event]) -> bool:
            # Counters and output read together (other containers may still be running).
            seen["emitted"] = agent.kernel("openat", "emitted")
            seen["delivered"] = len([e for e in events if e.syscall == "openat"])
            return seen["emitted"] == seen["delivered"] and bool(of(events, cg, "exit"))

        events = agent.wait_for(settled, limit_s=60)
        flood = of(events, cg, "openat", path="/etc/hostname")
        lost = agent.kernel("openat", "lost_ringbuf") + agent.kernel("openat", "lost_pending")
        # The flood budget samples most of them away in the kernel (counted, per container too).
        sampled = agent.kernel("openat", "sampled") + agent.kernel("openat", "shed")
        assert agent.process.poll() is None, "agent died under the flood"
        # Everything the kernel emitted reached the agent's output...
        assert seen["emitted"] == seen["delivered"]
        # ...and every flood call was either delivered, sampled or counted as lost.
        assert len(flood) + lost + sampled >= n
        assert len(flood) <= n
        assert lost > 0, "a 16 KiB ring buffer should overflow under this flood"
        # The loss is logged while the agent runs (once per interval), not only at exit.
        deadline = time.monotonic() + 30  # bounds a failing test only
        while "kernel lost events" not in agent.stderr_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        (warning, *_) = [
            json.loads(line)
            for line in agent.stderr_path.read_text().splitlines()
            if "kernel lost events" in line
        ]
        assert warning["total"] > 0 and "openat" in warning["lost"].get("lost_ringbuf", {})
    finally:
        code = agent.stop()
    # A run that lost records says so: exit 3 and one summary line.
    assert code == EXIT_LOST
    (summary,) = [
        json.loads(line) for line in agent.stderr_path.read_text().splitlines() if '"exit_code"' in line
    ]
    assert summary["msg"].startswith("record lost ") and summary["lost"]["kernel/lost_ringbuf"] > 0


def test_the_running_agent_maps_no_compiler(agent):
    """BCC compiles in a short-lived child: the agent holds fds, not LLVM (~62 MB mapped)."""
    maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
    assert "libbcc" not in maps and "LLVM" not in maps


def test_record_then_replay_is_identical(agent, runc, tmp_path):
    run = runc.run(
        ContainerSpec(["/bin/sh", "-c", "cat /etc/passwd; sysprobe openat2 /etc/shadow"], name="rec")
    )
    assert run.returncode == 0
    agent.wait_for(lambda evs: bool(of(evs, run.cgroup_id, "openat2")))
    recorded = tmp_path / "recorded.jsonl"
    complete = [line for line in agent.output.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")]
    recorded.write_bytes(b"".join(complete))
    replayed = subprocess.run(
        # Without rules the replay output is the event stream itself.
        [sys.executable, "-m", "exporter", "replay", str(recorded), "--set", "correlate.default_rules=false"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert replayed.stdout == recorded.read_bytes()


def test_read_through_a_host_bind_mount_is_delivered(agent, runc, tmp_path):
    """/data is no default path prefix: the container's bind mount (from its mountinfo, asked of
    the first process past runc init) widens the kernel filter. That happens asynchronously, so
    a read in the container's first milliseconds can still be filtered (README says so); the
    workload reads after a second here."""
    host_dir = tmp_path / "hostdata"
    host_dir.mkdir()
    (host_dir / "secret").write_text("s\n")
    spec = ContainerSpec(
        ["/bin/sh", "-c", "sleep 1; cat /data/secret"], name="bind", mounts=[Mount(str(host_dir), "/data")]
    )
    run = runc.run(spec)
    assert run.returncode == 0, run.stderr
    events = agent.wait_for(lambda evs: bool(of(evs, run.cgroup_id, "openat", path="/data/secret")))
    (read,) = of(events, run.cgroup_id, "openat", path="/data/secret")
    assert read.container is not None
    assert [(m.host_path, m.container_path) for m in read.container.host_mounts] == [(str(host_dir), "/data")]
