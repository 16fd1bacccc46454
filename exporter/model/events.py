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
    ACCEPT = "accept"  # accept, accept4: an inbound connection (the peer in saddr, sport)
    FORK = "fork"  # sched_process_fork: lineage only
    EXIT = "exit"  # sched_process_exit: lineage only
    # Filesystem context, for path resolution in the provenance graph:
    CHDIR = "chdir"  # chdir, fchdir
    CHROOT = "chroot"  # chroot, pivot_root
    LINK = "link"  # symlink, symlinkat, link, linkat
    RENAME = "rename"  # rename, renameat, renameat2
    DUP = "dup"  # dup2, dup3 onto fd 0-2: fd is the old fd, ret the standard stream it now is
    # A process's current and root directory read from /proc (syscall "procfs"), for
    # processes the stream did not see start: it seeds their context in the graph.
    CONTEXT = "context"
    # Decisive events of one kind a container sent past its budget, counted by the kernel
    # instead of sent (Event.summary): a container flooding the sensor.
    SUMMARY = "summary"


class Resolution(enum.StrEnum):
    """How the correlate stage resolved an event's path (Event.resolution)."""

    RESOLVED = "resolved"  # from the process's root, current directory, dirfd and known links
    ROOT_ASSUMED = "root_assumed"  # absolute path, the process's root not known: "/" assumed
    CWD_UNKNOWN = "cwd_unknown"  # relative path, the current directory not known: not resolved
    DIRFD_UNKNOWN = "dirfd_unknown"  # the dirfd (or fexecve fd) names nothing known: not resolved
    PIVOTED = "pivoted"  # after the workload's own pivot_root: relative to its new root
    LINK_LOOP = "link_loop"  # more than 40 known symbolic links on the way (ELOOP): not resolved


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
    # status.podIPs (primary first); empty for a hostNetwork Pod, whose addresses are the node's.
    ips: list[str] = []


class ContainerInfo(msgspec.Struct, omit_defaults=True):
    """The container an event came from, resolved from its cgroup."""

    id: str
    runtime: str = ""  # containerd, cri-o, docker, podman, runc
    cgroup_path: str = ""
    name: str = ""  # from the Pod spec, when known
    image: str = ""
    pod: PodInfo | None = None
    host_mounts: list[HostMount] = []


class FileRef(msgspec.Struct, omit_defaults=True):
    """What a file is, as the kernel knows it (not how it was named): its device and inode,
    read from the opened file, the running image or the fd; and, where the agent registered
    that identity (a sensitive file), what it is."""

    dev: int  # the kernel's dev_t of its file system: MAJOR << 20 | MINOR
    ino: int
    mode: int = 0  # i_mode: type and permission bits
    # Filled by the agent from its registry of sensitive identities (exporter/enrich/identity.py):
    path: str = ""  # the real path of the registered file (in its owner's view)
    host_path: str = ""  # the host's path of it, when it is a host file
    owner: str = ""  # the container whose secret it is (a service-account token), "" for the host's
    kind: str = ""  # what was registered: "host_file", "host_dir", "token", ...
    # i_generation: tells apart files that reuse an inode number (and a tmpfs's device number
    # once another tmpfs has it); 0 where the file system keeps none
    gen: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        """The identity the provenance graph follows content by."""
        return self.dev, self.ino, self.gen


class SummaryInfo(msgspec.Struct, omit_defaults=True):
    """Decisive events of one kind a container sent past its budget (EventType.SUMMARY)."""

    kind: str  # exec, file, mount, ns, net
    count: int
    first_ns: int = 0  # the first and last summarized event: time, pid and syscall
    first_pid: int = 0
    first_syscall: str = ""
    last_syscall: str = ""


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
    # Its pid, then its ancestors' nearest first (enrich.lineage_depth generations), up to and
    # including the first one outside its cgroup (what started the container's processes).
    lineage: list[int] = []


class EvidenceRef(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event an alert rests on, with what it touched (so the alert reads on its own)."""

    id: str
    ts_ns: int
    type: EventType
    syscall: str
    step: str = ""  # the rule (or correlation step) it satisfied, or how a chain links it
    pid: int = 0
    path: str = ""  # the file it touched, resolved (open, exec, link, rename)
    host_path: str = ""  # that file on the host, through a host mount
    destination: str = ""  # connect: ip:port ("[ip]:port" for IPv6)
    peer: str = ""  # accept: the peer's ip:port
    source: str = ""  # mount: its source
    fstype: str = ""  # mount: the file system type


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
    ret: int = 0  # syscall return value (negative errno on failure)

    # open family / exec / creat; chdir, chroot; link, rename: the new name (fchdir: fd below)
    path: str = ""  # the pathname the syscall was given, as given
    dirfd: int = 0
    flags: int = 0
    mode: int = 0
    argv: list[str] = []  # exec only

    # setns / unshare
    fd: int = 0  # setns: the namespace (or pidfd) descriptor; fchdir: its fd; dup2/dup3: the old fd
    nstype: int = 0  # setns: nstype argument; unshare: flags

    # mount family; link and rename: the old name (symlink: the link's content)
    source: str = ""
    target: str = ""
    fstype: str = ""
    option: str = ""  # fsconfig: the parameter key ("source", ...)

    # connect
    family: int = 0  # AF_UNIX=1 (address in path), AF_INET=2, AF_INET6=10
    daddr: str = ""
    dport: int = 0
    # connect: set by the enricher when (daddr, dport) is the Kubernetes API server.
    dest_is_apiserver: bool = False
    # accept: the peer, from the sockaddr the kernel filled (family as above; 0: not asked).
    # An IPv4 peer of an IPv6 socket (::ffff:a.b.c.d) is given as a.b.c.d.
    saddr: str = ""
    sport: int = 0
    # connect, accept: set by the enricher when the other end is a Pod of this node.
    peer_pod: PodInfo | None = None

    # fork
    child_pid: int = 0

    # link, rename: the old name's dirfd
    source_dirfd: int = 0

    # What the kernel knows, not what was typed. open family: the opened file (memfd_create:
    # the new memfd); exec: the image now running; chdir/chroot: the new directory;
    # connect/accept: the socket.
    file: FileRef | None = None
    stdin: FileRef | None = None  # exec: what the new image's stdin and stdout are
    stdout: FileRef | None = None
    exe_name: str = ""  # exec: the kernel's name for the image ("memfd:x" for a memfd)
    # open family: why the kernel let it cross: "" (its spelling), sensitive_path,
    # sensitive_file, sensitive_dir (by the file's identity), learned (a file
    # the workload wrote)
    verdict: str = ""
    repeats: int = 0  # the same process's reads of this sensitive file folded into this one
    resolve: int = 0  # openat2: RESOLVE_* flags
    # The acting process is the container runtime, known by the identity of the host's
    # runtime binaries and by lineage (bpf/provex.h runtime_tasks); None: not known (a
    # recording made without it, or a kernel without BTF), judged by name instead.
    by_runtime: bool | None = None
    summary: SummaryInfo | None = None  # EventType.SUMMARY

    # provenance, filled by exporter.correlate (the graph knows the process's context)
    resolved_path: str = ""  # the path's absolute form inside the container (open, exec, chdir, ...)
    resolution: str = ""  # a Resolution value; "" where the event names no path
    host_path: str = ""  # the host file it reaches when it lies in one of the container's host mounts
    interpreted_path: str = ""  # exec of an interpreter: the script or program it was handed (resolved)
    resolved_source: str = ""  # link, rename: the old name, resolved
    # exec: how the executed (or interpreted) file came from the network, oldest first:
    # the connect, then each write or read that carried it to this file.
    origin: list[EvidenceRef] = []
    # exec: what carried the program from the network: "file", "pipe", "socket" or "memfd".
    carrier: str = ""

    # enrichment, filled by exporter.enrich
    container: ContainerInfo | None = None
    process: ProcessInfo | None = None
    # True when the enrichment deadline passed before identity was known.
    late: bool = False


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def evidence_ref(event: Event, step: str = "") -> EvidenceRef:
    """The evidence record of one event."""
    destination = peer = ""
    if event.daddr and event.family in (2, 10):  # AF_INET, AF_INET6 (an AF_UNIX path is not one)
        destination = _endpoint(event.daddr, event.dport)
    if event.type is EventType.ACCEPT and event.saddr:
        peer = _endpoint(event.saddr, event.sport)
    is_mount = event.type is EventType.MOUNT
    return EvidenceRef(
        id=event.id,
        ts_ns=event.ts_ns,
        type=event.type,
        syscall=event.syscall,
        step=step,
        pid=event.pid,
        path=event.resolved_path
        or (event.path if event.type not in (EventType.CONNECT, EventType.ACCEPT) else ""),
        host_path=event.host_path,
        destination=destination,
        peer=peer,
        source=event.source if is_mount else "",
        fstype=event.fstype if is_mount else "",
    )


class StoryNode(msgspec.Struct, frozen=True, omit_defaults=True):
    """Something an alert's story names: a process (name: its pid), its container, or what
    it touched (a file's path, an endpoint ip:port, a mount, a namespace, a socket)."""

    kind: str  # proc, container, file, endpoint, mount, namespace, socket
    name: str
    exe: str = ""  # proc: its image
    container: str = ""  # proc: its container id
    exited_ns: int = 0  # proc: when it exited, if it did


class StoryEdge(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one node did to another: forked, contains, or a step (executed, wrote,
    read-sensitive, connected, accepted, mounted, entered-namespace, created-namespace,
    changed-root, linked, renamed, or an evidence step's name), when, by which event."""

    source: int  # index into Story.nodes
    target: int
    kind: str
    ts_ns: int = 0
    key: str = ""  # the event id (fork:PID and in:PID for forked and contains)


class Story(msgspec.Struct, omit_defaults=True):
    """An alert's incident as a graph (exporter/correlate/story.py): the processes its
    evidence names, their ancestors and containers, and what they did within the window."""

    nodes: list[StoryNode] = []
    edges: list[StoryEdge] = []


class Alert(msgspec.Struct, omit_defaults=True):
    """A rule match. `id` is stable: replaying a stream gives the same ids."""

    id: str
    rule_id: str
    rule_title: str
    level: str  # Sigma level: informational, low, medium, high, critical
    techniques: list[str] = []  # ATT&CK ids, e.g. ["T1611"]
    tactics: list[str] = []  # ATT&CK tactic short names, e.g. ["privilege-escalation"]
    description: str = ""
    # The join key: the rule fields it groups by and their values, e.g. {"ContainerId": "..."}.
    key: dict[str, str] = {}
    first_ts_ns: int = 0  # first event of the chain
    decisive_ts_ns: int = 0  # the event that completed the match
    evidence: list[EvidenceRef] = []
    # Follow-ups: how many further matches were folded into this record.
    suppressed: int = 0
    followup_of: str = ""  # id of the first alert when this is a follow-up
    # The decisive event (carries container, Pod and process identity).
    event: Event | None = None
    # The rule set that raised it (RuleSet.digest): which rules were loaded, across reloads.
    rules_digest: str = ""
    # Its story from the provenance graph when it was raised (`provex story ALERT_ID`).
    story: Story | None = None


_event_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """One JSON line (without newline), the replay format."""
    return _event_encoder.encode(event)


def decode_event(line: bytes | str) -> Event:
    """Parse one replay line; raises msgspec.ValidationError/DecodeError on bad input."""
    return _event_decoder.decode(line)
