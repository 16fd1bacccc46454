"""The event and alert records every stage of provex passes along.

Records are msgspec Structs: slotted, typed, and encoded to/decoded from JSON
without a dict in between. The JSON form is the replay format (`provex record`
writes it, `provex replay` reads it), so field names here are a file format:
add fields, never rename them.
"""

from __future__ import annotations

import enum

import msgspec


class EventType(enum.StrEnum):
    """What happened, independent of which syscall variant did it."""

    EXEC = "exec"  # execve, execveat
    OPEN = "open"  # open, openat, openat2, creat
    MOUNT = "mount"  # mount, fsopen, fsconfig, fsmount, move_mount, open_tree
    SETNS = "setns"
    UNSHARE = "unshare"
    CONNECT = "connect"
    FORK = "fork"  # sched_process_fork: lineage only
    EXIT = "exit"  # sched_process_exit: lineage only


class HostMount(msgspec.Struct, frozen=True, omit_defaults=True):
    """A host path visible inside a container (a hostPath volume or a bind mount)."""

    host_path: str
    container_path: str
    read_only: bool = False


class PodInfo(msgspec.Struct, omit_defaults=True):
    """What the Kubernetes API says about the Pod a container belongs to."""

    uid: str
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = {}
    service_account: str = ""
    node: str = ""


class ContainerInfo(msgspec.Struct, omit_defaults=True):
    """The container an event came from, resolved from its cgroup."""

    id: str
    runtime: str = ""  # containerd, cri-o, docker, podman, runc
    cgroup_path: str = ""
    name: str = ""  # from the Pod spec, when known
    image: str = ""
    pod: PodInfo | None = None
    host_mounts: list[HostMount] = []


class ProcessInfo(msgspec.Struct, omit_defaults=True):
    """The process table's view of the acting process (and its ancestors)."""

    pid: int
    exe: str = ""
    argv: list[str] = []  # secrets already redacted
    ppid: int = 0
    start_ns: int = 0
    uid: int = 0
    # Ancestors, nearest first, bounded by config (exe of each).
    ancestors: list[str] = []
    parent_exe: str = ""
    parent_argv: list[str] = []


class Event(msgspec.Struct, omit_defaults=True):
    """One syscall (or lineage event) as the kernel reported it, plus enrichment.

    Argument fields are flat and optional: which ones a syscall fills is
    described by the decode table in `exporter.probes.layout`.
    """

    id: str  # stable: derived from kernel timestamp and thread id
    type: EventType
    syscall: str  # the variant: "openat2", "execveat", "fsmount", ...
    ts_ns: int  # wall-clock nanoseconds (kernel monotonic + boot offset)
    pid: int
    tid: int
    ppid: int = 0
    uid: int = 0
    gid: int = 0
    comm: str = ""
    cgroup_id: int = 0
    mntns: int = 0  # inode of the mount namespace, 0 when unknown
    ret: int = 0  # syscall return value (negative errno on failure)

    # open family / exec / creat
    path: str = ""  # the pathname the syscall was given, as given
    dirfd: int = 0
    flags: int = 0
    mode: int = 0
    argv: list[str] = []  # exec only

    # setns / unshare
    fd: int = 0  # setns: the namespace (or pidfd) descriptor
    nstype: int = 0  # setns: nstype argument; unshare: flags

    # mount family
    source: str = ""
    target: str = ""
    fstype: str = ""

    # connect
    family: int = 0  # AF_INET=2, AF_INET6=10
    daddr: str = ""
    dport: int = 0
    dest_is_apiserver: bool = False  # set by enrichment for connect

    # fork
    child_pid: int = 0

    # enrichment, filled by exporter.enrich
    container: ContainerInfo | None = None
    process: ProcessInfo | None = None
    # True when the enrichment deadline passed before identity was known.
    late: bool = False

    @property
    def ok(self) -> bool:
        return self.ret >= 0


class EvidenceRef(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event an alert rests on."""

    id: str
    ts_ns: int
    type: EventType
    syscall: str
    step: str = ""  # the rule (or correlation step) it satisfied


class Alert(msgspec.Struct, omit_defaults=True):
    """A rule match. `id` is stable: replaying a stream gives the same ids."""

    id: str
    rule_id: str
    rule_title: str
    level: str  # Sigma level: informational, low, medium, high, critical
    techniques: list[str] = []  # ATT&CK ids, e.g. ["T1611"]
    tactics: list[str] = []  # ATT&CK tactic short names, e.g. ["privilege-escalation"]
    description: str = ""
    # The join key (group-by fields and their values), e.g. {"container.id": "..."}.
    key: dict[str, str] = {}
    first_ts_ns: int = 0  # first event of the chain
    decisive_ts_ns: int = 0  # the event that completed the match
    evidence: list[EvidenceRef] = []
    # Follow-ups: how many further matches were folded into this record.
    suppressed: int = 0
    followup_of: str = ""  # id of the first alert when this is a follow-up
    # The decisive event (carries container, Pod and process identity).
    event: Event | None = None


_event_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """One JSON line (without newline), the replay format."""
    return _event_encoder.encode(event)


def decode_event(line: bytes | str) -> Event:
    """Parse one replay line; raises msgspec.ValidationError/DecodeError on bad input."""
    return _event_decoder.decode(line)
