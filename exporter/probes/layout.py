"""The kernel/user contract: syscall ids, record layouts and the decode table.

This table is the single source of truth. The loader passes each syscall's id
to the C code as -DSC_<NAME>; records are decoded by looking up the id and
copying the fields its row names into an Event. Adding a syscall means a probe
in bpf/ and a row here, not a new branch in the decoder.
"""

from __future__ import annotations

import ctypes
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.model import EventType, FileRef

# Counter slots per syscall id, in the order of CTR_* in bpf/provex.h.
COUNTERS = (
    "seen",
    "filtered_cgroup",
    "filtered_path",
    "filtered_other",
    "emitted",
    "lost_ringbuf",
    "lost_pending",
    "sampled",  # past its cgroup's flood budget: dropped in the kernel, counted per cgroup too
    "shed",  # a read past its cgroup's tightened budget while the agent lagged (probes pressure)
    "summarized",  # a decisive event past its cgroup's budget for its kind: counted in a summary
    "repeated",  # a process's repeated sensitive read of one file, folded into the next one sent
)

# Decisive kinds, as K_* in bpf/provex.h: each has its own per-cgroup budget, so a flood of one
# kind (execs, UDP connects) never uses up another's (unshare, setns).
DECISIVE_KINDS = ("exec", "file", "mount", "ns", "net")

# event_hdr.flags (bpf/provex.h HDR_*)
HDR_WAKE, HDR_DECISIVE, HDR_RUNTIME = 1, 2, 4

# open_ev.verdict (bpf/provex.h VERDICT_*): why an open-family record crossed the kernel's filter.
VERDICTS = ("path", "sensitive_path", "sensitive_file", "sensitive_dir", "learned", "unjudged")

# Event type bits, as T_* in bpf/provex.h.
TYPE_BITS = {
    EventType.EXEC: 1 << 0,
    EventType.OPEN: 1 << 1,
    EventType.MOUNT: 1 << 2,
    EventType.SETNS: 1 << 3,
    EventType.UNSHARE: 1 << 4,
    EventType.CONNECT: 1 << 5,
    EventType.FORK: 1 << 6,
    EventType.EXIT: 1 << 7,
    EventType.CHDIR: 1 << 9,
    EventType.CHROOT: 1 << 10,
    EventType.LINK: 1 << 11,
    EventType.RENAME: 1 << 12,
    EventType.DUP: 1 << 13,
    EventType.ACCEPT: 1 << 14,
}
CONTROL_BIT = 1 << 8  # control records (cgroup_mkdir): always wake the consumer

# Families: which payload struct (see bpf/provex.h) a record carries.
OPEN, EXEC, MOUNT, NS, CONNECT, PROC, CGROUP, LINK, DUP, ACCEPT = (
    "open",
    "exec",
    "mount",
    "ns",
    "connect",
    "proc",
    "cgroup",
    "link",
    "dup",
    "accept",
)


def c_string(raw: bytes) -> str:
    """A NUL-terminated string of a record as text (bytes that are not UTF-8 kept as surrogates)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _ip(family: int, raw: bytes) -> str:
    if family == 2:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    if family == 10:
        return str(ipaddress.IPv6Address(bytes(raw[:16])))
    return ""


@dataclass(frozen=True)
class Syscall:
    """One row of the decode table."""

    name: str
    type: EventType | None  # None: a control record (cgroup_mkdir), not an Event
    family: str
    # Tracepoints that must exist for this probe to be compiled in.
    tracepoints: tuple[str, ...]
    # Event field <- payload field, for plain copies (strings are NUL-trimmed).
    fields: dict[str, str] = field(default_factory=dict)


SYSCALLS: tuple[Syscall, ...] = (
    Syscall("execve", EventType.EXEC, EXEC, ("syscalls/sys_enter_execve",), {"path": "path"}),
    Syscall(
        "execveat",
        EventType.EXEC,
        EXEC,
        ("syscalls/sys_enter_execveat",),
        {"path": "path", "dirfd": "dirfd", "flags": "flags"},
    ),
    Syscall(
        "open",
        EventType.OPEN,
        OPEN,
        ("syscalls/sys_enter_open",),
        {"path": "path", "flags": "flags", "mode": "mode"},
    ),
    Syscall(
        "openat",
        EventType.OPEN,
        OPEN,
        ("syscalls/sys_enter_openat",),
        {"path": "path", "dirfd": "dirfd", "flags": "flags", "mode": "mode"},
    ),
    Syscall(
        "openat2",
        EventType.OPEN,
        OPEN,
        ("syscalls/sys_enter_openat2",),
        {"path": "path", "dirfd": "dirfd", "flags": "flags", "mode": "mode"},
    ),
    Syscall(
        "creat",
        EventType.OPEN,
        OPEN,
        ("syscalls/sys_enter_creat",),
        {"path": "path", "flags": "flags", "mode": "mode"},
    ),
    # No path: a file opened by its handle (dirfd: the mount fd). The shocker escape.
    Syscall(
        "open_by_handle_at",
        EventType.OPEN,
        OPEN,
        ("syscalls/sys_enter_open_by_handle_at",),
        {"dirfd": "dirfd", "flags": "flags"},
    ),
    # An anonymous file: path "memfd:NAME", flags O_RDWR|O_CREAT, mode its MFD_* flags.
    Syscall(
        "memfd_create",
        EventType.OPEN,
        OPEN,
        ("syscalls/sys_enter_memfd_create",),
        {"path": "path", "flags": "flags", "mode": "mode"},
    ),
    # An open submitted through io_uring (IORING_OP_OPENAT/OPENAT2, in mode), judged at completion.
    Syscall(
        "io_uring_open",
        EventType.OPEN,
        OPEN,
        ("io_uring/io_uring_submit_req", "io_uring/io_uring_complete"),
        {"mode": "mode"},
    ),
    Syscall(
        "mount",
        EventType.MOUNT,
        MOUNT,
        ("syscalls/sys_enter_mount",),
        {"source": "source", "target": "target", "fstype": "fstype", "flags": "flags"},
    ),
    Syscall(
        "fsopen",
        EventType.MOUNT,
        MOUNT,
        ("syscalls/sys_enter_fsopen",),
        {"fstype": "fstype", "flags": "flags"},
    ),
    Syscall(
        "fsconfig",
        EventType.MOUNT,
        MOUNT,
        ("syscalls/sys_enter_fsconfig",),
        {"fd": "fd", "flags": "flags", "option": "fstype", "source": "source"},
    ),
    Syscall(
        "fsmount", EventType.MOUNT, MOUNT, ("syscalls/sys_enter_fsmount",), {"fd": "fd", "flags": "flags"}
    ),
    Syscall(
        "move_mount",
        EventType.MOUNT,
        MOUNT,
        ("syscalls/sys_enter_move_mount",),
        {"fd": "fd", "dirfd": "dirfd", "source": "source", "target": "target", "flags": "flags"},
    ),
    Syscall(
        "open_tree",
        EventType.MOUNT,
        MOUNT,
        ("syscalls/sys_enter_open_tree",),
        {"dirfd": "dirfd", "source": "source", "flags": "flags"},
    ),
    Syscall("setns", EventType.SETNS, NS, ("syscalls/sys_enter_setns",), {"fd": "fd", "nstype": "nstype"}),
    Syscall("unshare", EventType.UNSHARE, NS, ("syscalls/sys_enter_unshare",), {"nstype": "nstype"}),
    Syscall(
        "connect",
        EventType.CONNECT,
        CONNECT,
        ("syscalls/sys_enter_connect",),
        {"fd": "fd", "family": "family", "dport": "port"},
    ),
    # accept: the listening fd; the peer's family and port (its address: FAMILY_EXTRAS).
    *(
        Syscall(name, EventType.ACCEPT, ACCEPT, (f"syscalls/sys_enter_{name}",), fields)
        for name, fields in (
            ("accept", {"fd": "fd", "family": "family", "sport": "port"}),
            ("accept4", {"fd": "fd", "family": "family", "sport": "port", "flags": "flags"}),
        )
    ),
    Syscall("fork", EventType.FORK, PROC, ("sched/sched_process_fork",), {"child_pid": "child_pid"}),
    Syscall("exit", EventType.EXIT, PROC, ("sched/sched_process_exit",)),
    # Filesystem context: chdir family in the open_ev layout (fchdir's fd in dirfd).
    Syscall("chdir", EventType.CHDIR, OPEN, ("syscalls/sys_enter_chdir",), {"path": "path"}),
    Syscall("fchdir", EventType.CHDIR, OPEN, ("syscalls/sys_enter_fchdir",), {"fd": "dirfd"}),
    Syscall("chroot", EventType.CHROOT, OPEN, ("syscalls/sys_enter_chroot",), {"path": "path"}),
    Syscall("pivot_root", EventType.CHROOT, OPEN, ("syscalls/sys_enter_pivot_root",), {"path": "path"}),
    *(
        Syscall(
            name,
            kind,
            LINK,
            (f"syscalls/sys_enter_{name}",),
            {
                "source": "oldpath",
                "path": "newpath",
                "dirfd": "newdirfd",
                "source_dirfd": "olddirfd",
                "flags": "flags",
            },
        )
        for name, kind in (
            ("symlink", EventType.LINK),
            ("symlinkat", EventType.LINK),
            ("link", EventType.LINK),
            ("linkat", EventType.LINK),
            ("rename", EventType.RENAME),
            ("renameat", EventType.RENAME),
            ("renameat2", EventType.RENAME),
        )
    ),
    Syscall("dup2", EventType.DUP, DUP, ("syscalls/sys_enter_dup2",), {"fd": "oldfd"}),
    Syscall("dup3", EventType.DUP, DUP, ("syscalls/sys_enter_dup3",), {"fd": "oldfd", "flags": "flags"}),
    Syscall("cgroup_mkdir", None, CGROUP, ("cgroup/cgroup_mkdir",)),
    Syscall("cgroup_rmdir", None, CGROUP, ("cgroup/cgroup_rmdir",)),
)

# The maps the agent uses from user space (the build child hands over their fds); the
# pending_* ones pair a syscall's entry with its exit per thread and are swept of orphans.
PENDING_MAPS = (
    "pending_open",
    "pending_exec",
    "pending_clone",
    "pending_mount",
    "pending_ns",
    "pending_connect",
    "pending_ctx",
    "pending_link",
    "pending_dup",
    "pending_accept",
)
MAPS = (
    "events",
    "decisive",
    "counters",
    "monitored_cgroups",
    "verdicts",
    "path_prefixes",
    "budgets",
    "cgroup_stats",
    "summaries",
    "pressure",
    "sensitive_ids",
    "learned_ids",
    "runtime_ids",
    "runtime_inos",
    "runtime_tasks",
    "judged_cgroups",
    *PENDING_MAPS,
)

# Tracepoints that only gate part of a probe (not a decode row of their own).
OPTIONAL_TRACEPOINTS = ("syscalls/sys_enter_clone", "syscalls/sys_enter_clone3")


class EventHeader(ctypes.Structure):
    _fields_ = (
        ("ts", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("ret", ctypes.c_int64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("sc", ctypes.c_uint16),
        ("size", ctypes.c_uint16),
        ("flags", ctypes.c_uint32),  # HDR_*
        ("comm", ctypes.c_char * 16),
    )


class FileIdentity(ctypes.Structure):
    """struct file_id (bpf/provex.h): what a file is, as the kernel knows it."""

    _fields_ = (
        ("ino", ctypes.c_uint64),
        ("dev", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("gen", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


@dataclass(frozen=True)
class Limits:
    """Sizes compiled into the BPF program (from ProbesConfig)."""

    path_max: int = 256
    argv_max: int = 16
    arg_len: int = 128
    lpm_len: int = 64
    exe_name_len: int = 48


def payload_structs(limits: Limits) -> dict[str, type[ctypes.Structure]]:
    """ctypes mirrors of the C payload structs for these limits."""
    path = ctypes.c_char * limits.path_max
    hdr = ("h", EventHeader)

    def struct(name: str, fields: list[tuple[str, Any]]) -> type[ctypes.Structure]:
        return type(name, (ctypes.Structure,), {"_fields_": [hdr, *fields]})

    return {
        OPEN: struct(
            "OpenEv",
            [
                ("dirfd", ctypes.c_int32),
                ("flags", ctypes.c_uint32),
                ("mode", ctypes.c_uint32),
                ("path_len", ctypes.c_uint32),
                ("user_path", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64),
                ("file", FileIdentity),
                ("verdict", ctypes.c_uint32),
                ("repeats", ctypes.c_uint32),
                ("path", path),
            ],
        ),
        EXEC: struct(
            "ExecEv",
            [
                ("dirfd", ctypes.c_int32),
                ("flags", ctypes.c_uint32),
                ("argc", ctypes.c_uint32),
                ("pad", ctypes.c_uint32),
                ("user_path", ctypes.c_uint64),
                ("exe", FileIdentity),
                ("stdin_file", FileIdentity),
                ("stdout_file", FileIdentity),
                ("exe_name", ctypes.c_char * limits.exe_name_len),
                ("path", path),
                ("argv", (ctypes.c_char * limits.arg_len) * limits.argv_max),
            ],
        ),
        MOUNT: struct(
            "MountEv",
            [
                ("fd", ctypes.c_int32),
                ("dirfd", ctypes.c_int32),
                ("flags", ctypes.c_uint64),
                ("fstype", ctypes.c_char * 32),
                ("source", path),
                ("target", path),
            ],
        ),
        NS: struct("NsEv", [("fd", ctypes.c_int32), ("pad", ctypes.c_uint32), ("nstype", ctypes.c_uint64)]),
        CONNECT: struct(
            "ConnectEv",
            [
                ("fd", ctypes.c_int32),
                ("family", ctypes.c_uint16),
                ("port", ctypes.c_uint16),
                ("addr", ctypes.c_uint8 * 16),
                ("file", FileIdentity),
                ("path", ctypes.c_char * 108),
                ("pad", ctypes.c_uint32),
            ],
        ),
        ACCEPT: struct(
            "AcceptEv",
            [
                ("fd", ctypes.c_int32),
                ("family", ctypes.c_uint16),
                ("port", ctypes.c_uint16),
                ("addr", ctypes.c_uint8 * 16),
                ("flags", ctypes.c_uint32),
                ("pad", ctypes.c_uint32),
                ("user_addr", ctypes.c_uint64),
                ("file", FileIdentity),
            ],
        ),
        PROC: struct("ProcEv", [("child_pid", ctypes.c_uint32), ("pad", ctypes.c_uint32)]),
        DUP: struct(
            "DupEv",
            [
                ("oldfd", ctypes.c_int32),
                ("newfd", ctypes.c_int32),
                ("flags", ctypes.c_uint32),
                ("pad", ctypes.c_uint32),
            ],
        ),
        LINK: struct(
            "LinkEv",
            [
                ("olddirfd", ctypes.c_int32),
                ("newdirfd", ctypes.c_int32),
                ("flags", ctypes.c_uint32),
                ("new_len", ctypes.c_uint32),
                ("user_old", ctypes.c_uint64),
                ("user_new", ctypes.c_uint64),
                ("oldpath", path),
                ("newpath", path),
            ],
        ),
        CGROUP: struct(
            "CgroupEv",
            [
                ("id", ctypes.c_uint64),
                ("level", ctypes.c_int32),
                ("hierarchy", ctypes.c_uint32),
                ("path", path),
            ],
        ),
    }


# Families whose last field is variable-length: the kernel copies only its used
# bytes, so a record may be shorter than its struct (never shorter than this field's offset).
VARIABLE_TAIL = {OPEN: "path", EXEC: "argv", LINK: "newpath"}


def min_record_size(family: str, struct: type[ctypes.Structure]) -> int:
    tail = VARIABLE_TAIL.get(family)
    return getattr(struct, tail).offset if tail else ctypes.sizeof(struct)


def file_ref(identity: Any) -> FileRef | None:
    """A struct file_id as the event's FileRef (None when the kernel read none)."""
    if not identity.ino and not identity.dev:
        return None
    return FileRef(identity.dev, identity.ino, identity.mode, gen=identity.gen)


# Extra work for a family beyond plain field copies: (event kwargs, payload) -> None.
def _open_extra(kwargs: dict[str, Any], payload: Any) -> None:
    kwargs["file"] = file_ref(payload.file)
    if payload.verdict < len(VERDICTS) and payload.verdict:
        kwargs["verdict"] = VERDICTS[payload.verdict]
    if payload.repeats:
        kwargs["repeats"] = payload.repeats
    if payload.resolve:
        kwargs["resolve"] = payload.resolve


def _exec_extra(kwargs: dict[str, Any], payload: Any) -> None:
    kwargs["argv"] = [c_string(payload.argv[i].raw) for i in range(min(payload.argc, len(payload.argv)))]
    kwargs["file"] = file_ref(payload.exe)
    kwargs["stdin"] = file_ref(payload.stdin_file)
    kwargs["stdout"] = file_ref(payload.stdout_file)
    kwargs["exe_name"] = c_string(payload.exe_name)


def _connect_extra(kwargs: dict[str, Any], payload: Any) -> None:
    kwargs["file"] = file_ref(payload.file)
    if payload.family == 1:
        kwargs["path"] = c_string(payload.path)
    else:
        kwargs["daddr"] = _ip(payload.family, bytes(payload.addr))


def _accept_extra(kwargs: dict[str, Any], payload: Any) -> None:
    kwargs["file"] = file_ref(payload.file)
    peer = _ip(payload.family, bytes(payload.addr))
    if payload.family == 10:
        mapped = ipaddress.IPv6Address(bytes(payload.addr)).ipv4_mapped
        if mapped is not None:  # an IPv4 client of a dual-stack listener: the same address
            peer = str(mapped)
    kwargs["saddr"] = peer


FAMILY_EXTRAS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    OPEN: _open_extra,
    EXEC: _exec_extra,
    CONNECT: _connect_extra,
    ACCEPT: _accept_extra,
}
