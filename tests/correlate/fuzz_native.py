"""Fuzz target: the native core against the Python reference on hostile event streams.

Each input becomes a short stream of events of two processes in one or two containers, with
paths, argv, link targets, dirfds, flags and times an attacker would try: climbs out of the
root (`../../..`), `/proc/self/{root,cwd,fd/N}` and `/dev/fd/N` with odd numbers, symlink
loops, NUL, surrogates and non-ASCII text, interpreter options in clusters, and integers up
to and past the 64-bit bounds. Both engines process the same stream (the default rules, a
small budget and window so eviction runs too); the core must not crash, and every alert and
every annotation must be byte-identical to the reference's. A reference that raises is a
finding too (fixed in the reference first).

    python tests/correlate/fuzz_native.py -runs=100000          # atheris (libFuzzer) options
    python tests/correlate/fuzz_native.py -max_total_time=600 corpus_dir/

atheris instruments the reference (the Python modules) for coverage, which steers the
mutations toward its branches; the compiled core is not instrumented (that needs clang's
-fsanitize=fuzzer-no-link), the comparison is what judges it. tests/correlate/
test_native_fuzz.py runs a short, seeded round in the unit suite.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["exporter.correlate"]):
    import msgspec

    from exporter.config.schema import CorrelateConfig
    from exporter.correlate import DEFAULT_RULES_DIR, load_rules
    from exporter.correlate.engine import Correlator
    from exporter.model import ContainerInfo, Event, EventType, FileRef, HostMount, PodInfo, ProcessInfo

RULES = load_rules([DEFAULT_RULES_DIR])
CONFIG = {"window_s": 5.0, "max_nodes": 32, "max_edges": 32, "dedup_window_s": 1.0}
TYPES = list(EventType)
SYSCALLS = [
    "openat", "openat2", "open", "creat", "memfd_create", "open_by_handle_at", "io_uring_open",
    "execve", "execveat", "chdir", "fchdir", "chroot", "pivot_root", "symlink", "symlinkat",
    "link", "linkat", "rename", "renameat2", "dup2", "dup3", "mount", "open_tree", "fsopen",
    "connect", "accept4", "setns", "unshare", "procfs", "sched_process_fork", "sched_process_exit",
]  # fmt: skip
PATHS = [
    "/", "", ".", "..", "//", "/./", "../../../../etc/shadow", "/proc/self/root/etc/shadow",
    "/proc/self/cwd/x", "/proc/thread-self/fd/3/y", "/proc/7/fd/3", "/proc/self/fd/03",
    "/proc/self/fd/\u0663", "/dev/fd/3", "/dev/fd/\u00b2", "/dev/fd/99999999999", "/dev/fd/3/../x",
    "/proc/self/exe", "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/run/secrets/kubernetes.io/serviceaccount/..data/token", "/host/etc/shadow", "/host",
    "/tmp/l", "/tmp/l/../l", "l", "x\x00y", "\udcff\udc80", "/caf\u00e9", "/usr/bin/python3.11",
    "/bin/busybox", "/bin/sh", "/memfd:x", "/tmp/x", "-", "--", "/a//b/./c/..",
]  # fmt: skip
ARGS = ["sh", "-c", "-ec", "-s", "-", "--", "python3", "-m", "-X", "perl", "-lne", "-0777",
        "-Mstrict", "-I", "php", "-f", "busybox", "ld.so", "--library-path", "/tmp/x", "x", ""]  # fmt: skip
INTS = [0, 1, 2, 3, -1, -100, -115, 10, 0o101, 0o2000000, 0o10000000, 0x1000, 0x400, 0x18,
        2**31, 2**63 - 1, -(2**63), 2**64 - 1, 0o010000, 0o140000, 0o100000]  # fmt: skip


def _text(fdp: atheris.FuzzedDataProvider, pool: list[str]) -> str:
    if fdp.ConsumeBool():
        return pool[fdp.ConsumeIntInRange(0, len(pool) - 1)]
    return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 24))


def _int(fdp: atheris.FuzzedDataProvider) -> int:
    if fdp.ConsumeBool():
        return INTS[fdp.ConsumeIntInRange(0, len(INTS) - 1)]
    return fdp.ConsumeIntInRange(-(2**63), 2**64 - 1)


def stream(data: bytes) -> list[Event]:
    """The events one input names (deterministic: call it twice for two copies)."""
    fdp = atheris.FuzzedDataProvider(data)
    mounts = [HostMount(host_path="/", container_path="/host")] if fdp.ConsumeBool() else []
    pod = PodInfo(uid="u", name="p", namespace="ns", ips=["10.0.0.9"] if fdp.ConsumeBool() else [])
    containers = [ContainerInfo(id="c1", pod=pod, host_mounts=mounts), ContainerInfo(id="c2"), None]
    events = []
    ts = 1_700_000_000_000_000_000
    for i in range(fdp.ConsumeIntInRange(1, 14)):
        pid = fdp.ConsumeIntInRange(10, 12)
        ts += fdp.ConsumeIntInRange(0, 3_000_000_000)
        kind = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
        ref = None
        if fdp.ConsumeBool():
            ref = FileRef(dev=fdp.ConsumeIntInRange(0, 3), ino=fdp.ConsumeIntInRange(0, 3), mode=_int(fdp))
        events.append(
            Event(
                id=f"e{i}",
                type=kind,
                syscall=SYSCALLS[fdp.ConsumeIntInRange(0, len(SYSCALLS) - 1)],
                # (a time past int64, after the year 2262, saturates in the core's window
                # arithmetic: out of the comparison's domain, see test_native_fuzz)
                ts_ns=ts if fdp.ConsumeIntInRange(0, 9) else fdp.ConsumeIntInRange(-(2**63), 2**63 - 1),
                pid=pid,
                tid=pid if fdp.ConsumeBool() else pid + 1,
                ppid=fdp.ConsumeIntInRange(0, 12),
                uid=fdp.ConsumeIntInRange(0, 1),
                comm=_text(fdp, ARGS)[:16],
                ret=_int(fdp),
                path=_text(fdp, PATHS),
                dirfd=_int(fdp),
                flags=_int(fdp),
                argv=[_text(fdp, ARGS + PATHS) for _ in range(fdp.ConsumeIntInRange(0, 5))],
                fd=_int(fdp),
                nstype=_int(fdp),
                source=_text(fdp, PATHS),
                target=_text(fdp, PATHS),
                fstype=_text(fdp, ["proc", "cgroup2", "tmpfs", ""]),
                family=fdp.ConsumeIntInRange(0, 10),
                daddr=_text(fdp, ["10.0.0.9", "198.51.100.7", "::1", "fe80::1%eth0", "127.0.0.1", ""]),
                dport=_int(fdp),
                dest_is_apiserver=fdp.ConsumeBool(),
                saddr=_text(fdp, ["10.0.0.8", "::ffff:10.0.0.8", ""]),
                sport=fdp.ConsumeIntInRange(0, 70000),
                child_pid=fdp.ConsumeIntInRange(10, 12),
                source_dirfd=_int(fdp),
                file=ref,
                stdin=FileRef(dev=1, ino=fdp.ConsumeIntInRange(0, 2), mode=_int(fdp))
                if fdp.ConsumeBool()
                else None,
                stdout=FileRef(dev=1, ino=fdp.ConsumeIntInRange(0, 2), mode=_int(fdp))
                if fdp.ConsumeBool()
                else None,
                exe_name=_text(fdp, ["memfd:x", "memfd:runc_cloned:/proc/self/exe", ""]),
                verdict=_text(fdp, ["sensitive_file", "learned", ""]),
                resolve=_int(fdp),
                by_runtime=[None, True, False][fdp.ConsumeIntInRange(0, 2)],
                container=containers[fdp.ConsumeIntInRange(0, 2)],
                process=ProcessInfo(pid=pid, exe=_text(fdp, PATHS), lineage=[pid, 1])
                if fdp.ConsumeBool()
                else None,
            )
        )
    return events


def check(data: bytes) -> None:
    """One input through both engines: the same alerts and annotations, or an error."""
    results = []
    for engine in ("python", "native"):
        events = stream(data)
        correlator = Correlator(RULES, CorrelateConfig(engine=engine, **CONFIG))
        alerts = [a for e in events for a in correlator.process(e)] + correlator.drain()
        # (to_builtins, not JSON: a surrogate-escaped byte of a path is no JSON text)
        results.append((msgspec.to_builtins(alerts), msgspec.to_builtins(events)))
    if results[0] != results[1]:
        raise AssertionError(f"native differs from the reference:\n{results[0]}\n{results[1]}")


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
