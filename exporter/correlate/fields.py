"""The field taxonomy Sigma rules see, and the logsource category of each event.

Rules name Sigma's Linux fields (Image, CommandLine, TargetFilename, ...) plus
provex's own for containers, Pods, host mounts, namespaces and mounts. Each
field is one getter over the flat `Event`; `FIELDS_MARKDOWN` (published as
exporter/correlate/FIELDS.md, checked by a test) is generated from this table.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exporter.correlate.provenance import host_mount_of
from exporter.model import Event, EventType, HostMount, ProcessInfo, linux

Value = str | int | bool | list[str] | None
_EMPTY_PROCESS = ProcessInfo(pid=0)
FIELDS_DOC = Path(__file__).resolve().parent / "FIELDS.md"

# Sigma logsource categories (product: linux) and the events that carry them.
# process_creation, file_event, file_access and network_connection are Sigma's
# taxonomy; mount, setns and unshare are provex's own (Sigma has none).
CATEGORY_DOC: dict[str, str] = {
    "process_creation": "exec: execve, execveat",
    "file_access": "open: open, openat, openat2, creat (every successful open)",
    "file_event": "open with O_WRONLY, O_RDWR or O_CREAT (a file written or created)",
    "network_connection": "connect to an IPv4 or IPv6 address; accept, accept4 (inbound: Initiated false)"
    " (AF_UNIX connects are in the graph, not here)",
    "mount": "mount, fsopen, fsconfig, fsmount, move_mount, open_tree (provex)",
    "setns": "setns (provex)",
    "unshare": "unshare (provex)",
}
CATEGORIES = frozenset(CATEGORY_DOC)
ALL = CATEGORIES

O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, EINPROGRESS = (
    linux.O_WRONLY,
    linux.O_RDWR,
    linux.O_CREAT,
    linux.O_TRUNC,
    linux.EINPROGRESS,
)


def value_text(value: Value) -> str:
    """A field's value as one string, for de-duplication and group-by keys."""
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def categories_of(event: Event) -> tuple[str, ...]:
    """The logsource categories an event is dispatched to (FORK/EXIT: none)."""
    t = event.type
    if t is EventType.OPEN:
        if event.flags & (O_WRONLY | O_RDWR | O_CREAT):
            return ("file_access", "file_event")
        return ("file_access",)
    if t in (EventType.CONNECT, EventType.ACCEPT) and event.family not in linux.IP_FAMILIES:
        # AF_UNIX, or an accept whose caller did not ask for the peer: not Sigma's
        # network_connection (the graph still sees it)
        return ()
    return _SINGLE.get(t, ())


_SINGLE: dict[EventType, tuple[str, ...]] = {
    EventType.EXEC: ("process_creation",),
    EventType.CONNECT: ("network_connection",),
    EventType.ACCEPT: ("network_connection",),
    EventType.MOUNT: ("mount",),
    EventType.SETNS: ("setns",),
    EventType.UNSHARE: ("unshare",),
}


def succeeded(event: Event) -> bool:
    """Did the syscall do what it was asked? A non-blocking connect returns
    -EINPROGRESS and still goes on to connect, so it counts as done."""
    if event.ret >= 0:
        return True
    return event.type is EventType.CONNECT and event.ret == -EINPROGRESS


def subject_paths(event: Event) -> tuple[str, ...]:
    """The absolute paths an event acts on, resolved by the provenance graph: the
    opened file; the executed file and, for an interpreter, the file it was handed
    (first: it is what runs); a mount's source."""
    t = event.type
    if t is EventType.EXEC:
        image = event.resolved_path or (event.path if event.path.startswith("/") else "")
        return tuple(p for p in (event.interpreted_path, image) if p)
    if t is EventType.OPEN:
        path = event.resolved_path or (event.path if event.path.startswith("/") else "")
        return (path,) if path else ()
    if t is EventType.MOUNT:
        path = event.resolved_path or event.source or event.path
        return (posixpath.normpath(path),) if path.startswith("/") else ()
    return ()


def resolve_host_mount(event: Event) -> tuple[HostMount, str] | None:
    """The host mount an event's (resolved) path falls in and the host path it reaches."""
    container = event.container
    if container is None or not container.host_mounts:
        return None
    for path in subject_paths(event):
        hit = host_mount_of(path, container.host_mounts)
        if hit is not None:
            return hit
    return None


def _image(e: Event) -> str:
    if e.type is EventType.EXEC:
        # Resolved by the graph (cwd, root, links; /proc/self/exe is the known image).
        if e.resolved_path:
            return e.resolved_path
        reexec = e.path in ("/proc/self/exe", f"/proc/{e.pid}/exe")
        if reexec and e.process is not None and e.process.exe.startswith("/"):
            return e.process.exe
        if e.path:
            return e.path  # as given when it cannot be resolved: never the caller's image
    if e.process is not None and e.process.exe:
        return e.process.exe
    return e.path if e.type is EventType.EXEC else ""


def _cmdline(e: Event) -> str:
    if e.type is EventType.EXEC:
        return " ".join(e.argv)
    return " ".join(e.process.argv) if e.process is not None else ""


def _endpoint(e: Event) -> str:
    if not e.daddr:
        return ""
    return f"[{e.daddr}]:{e.dport}" if ":" in e.daddr else f"{e.daddr}:{e.dport}"


def _pod_ip(e: Event) -> Value:
    pod = e.container.pod if e.container is not None else None
    return pod.ips[0] if pod is not None and pod.ips else ""


def _local_ip(e: Event) -> str:
    """The local end of a connect or an accept: the Pod's address of the peer's family. The
    syscall does not say it; a Pod has one address per family (hostNetwork Pods: none
    known), and a loopback peer means a loopback end, which names no Pod."""
    peer = e.daddr if e.type is EventType.CONNECT else e.saddr
    pod = e.container.pod if e.container is not None else None
    if not peer or pod is None or not pod.ips or _loopback(peer):
        return ""
    v6 = ":" in peer
    return next((ip for ip in pod.ips if (":" in ip) == v6), "")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _lineage(slot: int) -> Callable[[Event], Value]:
    """The pid `slot` generations up, from the lineage the process table recorded (the
    topmost known one when it is shorter: equal values always mean a common ancestor)."""

    def get(e: Event) -> Value:
        lineage = e.process.lineage if e.process is not None else []
        return lineage[min(slot, len(lineage) - 1)] if lineage else None

    return get


def _peer(attr: str) -> Callable[[Event], Value]:
    def get(e: Event) -> Value:
        return getattr(e.peer_pod, attr) if e.peer_pod is not None else ""

    return get


def _pod(attr: str) -> Callable[[Event], Value]:
    def get(e: Event) -> Value:
        pod = e.container.pod if e.container is not None else None
        return getattr(pod, attr) if pod is not None else ""

    return get


def _container(attr: str) -> Callable[[Event], Value]:
    def get(e: Event) -> Value:
        return getattr(e.container, attr) if e.container is not None else ""

    return get


def _process(attr: str, join: bool = False) -> Callable[[Event], Value]:
    def get(e: Event) -> Value:
        value = getattr(e.process if e.process is not None else _EMPTY_PROCESS, attr)
        return " ".join(value) if join else value

    return get


# The container runtime's binaries, and runc's cloned copy of itself that runc init runs: a
# sealed memfd, or a runc.XXXXXX file in its state directory.
_RUNTIME_BINARIES = ("/runc", "/crun", "/containerd-shim-runc-v2")
_RUNC_CLONED = re.compile(r"^/memfd:runc_cloned:|/runc\.[A-Za-z0-9]{6}$")


def _is_container_runtime(e: Event) -> bool:
    """The container runtime's own work while it builds a container: its binary, or runc init
    (comm "runc:[N:...]") with no image seen in the container yet or running runc's cloned
    copy. A comm alone is not enough (any process can set it). Names compare as Sigma's
    endswith and startswith do, without case."""
    image = _image(e)
    if image.lower().endswith(_RUNTIME_BINARIES):
        return True
    if not e.comm.lower().startswith("runc:["):
        return False
    return not image or _RUNC_CLONED.search(image) is not None


def _host_path(e: Event) -> Value:
    hit = resolve_host_mount(e)
    return hit[1] if hit else ""


def _host_root(e: Event) -> Value:
    hit = resolve_host_mount(e)
    return hit[0].container_path if hit else ""


def _host_ro(e: Event) -> Value:
    hit = resolve_host_mount(e)
    return hit[0].read_only if hit else False


def _of(*types: EventType) -> Callable[[Callable[[Event], Value]], Callable[[Event], Value]]:
    """Restrict a getter to some event types (empty elsewhere)."""
    allowed = frozenset(types)

    def wrap(get: Callable[[Event], Value]) -> Callable[[Event], Value]:
        def only(e: Event) -> Value:
            return get(e) if e.type in allowed else ""

        return only

    return wrap


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # string | integer | boolean | list
    categories: frozenset[str]
    doc: str
    get: Callable[[Event], Value]


_FILE = frozenset({"file_access", "file_event"})
_PATHS = frozenset({"file_access", "file_event", "process_creation", "mount"})
_NS = frozenset({"setns", "unshare"})
_NET = frozenset({"network_connection"})
_EXEC = frozenset({"process_creation"})
_MOUNT = frozenset({"mount"})
_open = _of(EventType.OPEN)
_conn = _of(EventType.CONNECT)
_acc = _of(EventType.ACCEPT)
_mnt = _of(EventType.MOUNT)
_exec = _of(EventType.EXEC)

_TABLE: list[Field] = [
    # Sigma's Linux names
    Field(
        "Image",
        "string",
        ALL,
        "executable: exec path (absolute; /proc/self/exe resolved), else process.exe",
        _image,
    ),
    Field("CommandLine", "string", ALL, "exec argv joined by spaces; else the process's argv", _cmdline),
    Field("ParentImage", "string", ALL, "process.parent_exe", _process("parent_exe")),
    Field("ParentCommandLine", "string", ALL, "process.parent_argv joined", _process("parent_argv", True)),
    Field("User", "string", ALL, '"root" for uid 0, else the numeric uid as text', lambda e: _user(e.uid)),
    Field("ProcessId", "integer", ALL, "pid (thread group id)", lambda e: e.pid),
    Field("ParentProcessId", "integer", ALL, "ppid", lambda e: e.ppid),
    Field(
        "TargetFilename",
        "string",
        _FILE,
        "the opened file, resolved (root, cwd, dirfd, known links); as given if it cannot be",
        _open(lambda e: e.resolved_path or e.path),
    ),
    Field(
        "DestinationIp",
        "string",
        _NET,
        "connect: the destination address; accept: the local end, the Pod's address (see SourceIp)",
        lambda e: (
            e.daddr if e.type is EventType.CONNECT else _local_ip(e) if e.type is EventType.ACCEPT else ""
        ),
    ),
    Field(
        "DestinationPort",
        "integer",
        _NET,
        "connect destination port (accept: not in the syscall, 0)",
        _conn(lambda e: e.dport),
    ),
    Field(
        "SourceIp",
        "string",
        _NET,
        "accept: the peer's address; connect: the local end, the Pod's address of the destination's"
        " family (empty for a loopback peer, a hostNetwork Pod or outside Kubernetes)",
        lambda e: (
            e.saddr if e.type is EventType.ACCEPT else _local_ip(e) if e.type is EventType.CONNECT else ""
        ),
    ),
    Field(
        "SourcePort",
        "integer",
        _NET,
        "accept: the peer's port (connect: not known, 0)",
        _acc(lambda e: e.sport),
    ),
    Field(
        "Initiated",
        "string",
        _NET,
        '"true" for a connect (outbound), "false" for an accept (inbound)',
        lambda e: "true" if e.type is EventType.CONNECT else "false" if e.type is EventType.ACCEPT else "",
    ),
    # provex: provenance (what the graph resolved)
    Field(
        "TargetFilenameAsGiven",
        "string",
        _FILE,
        "the open path as the syscall was given it",
        _open(lambda e: e.path),
    ),
    Field(
        "ImageAsGiven", "string", _EXEC, "the exec path as the syscall was given it", _exec(lambda e: e.path)
    ),
    Field(
        "PathResolution",
        "string",
        _PATHS,
        "resolved, root_assumed, cwd_unknown, dirfd_unknown, pivoted, link_loop",
        lambda e: e.resolution,
    ),
    Field(
        "InterpretedFile",
        "string",
        _EXEC,
        "exec of an interpreter (data/interpreters.yaml): the script or program it was handed, resolved",
        _exec(lambda e: e.interpreted_path),
    ),
    Field(
        "ExecutedFiles",
        "list",
        _EXEC,
        "what the exec runs: the interpreted file (if any) and the image, resolved",
        lambda e: list(subject_paths(e)) if e.type is EventType.EXEC else [],
    ),
    Field(
        "ExecutedFileFromNetwork",
        "boolean",
        _EXEC,
        "an executed file was written, in this container within the window, by a process that "
        "held network data (it, or a process it forked from, connected out, before or after the "
        "write; or it read such a file); renames and links followed",
        lambda e: bool(e.origin),
    ),
    # provex: process and syscall
    Field("EventType", "string", ALL, "exec, open, connect, mount, setns, unshare", lambda e: e.type.value),
    Field("Syscall", "string", ALL, "the variant: openat2, execveat, fsopen, ...", lambda e: e.syscall),
    Field("Comm", "string", ALL, "kernel comm (16 bytes)", lambda e: e.comm),
    Field("ThreadId", "integer", ALL, "tid", lambda e: e.tid),
    Field("UserId", "integer", ALL, "uid", lambda e: e.uid),
    Field("GroupId", "integer", ALL, "gid", lambda e: e.gid),
    Field("ReturnCode", "integer", ALL, "syscall return (negative errno on failure)", lambda e: e.ret),
    Field("Success", "boolean", ALL, "syscall succeeded (connect: also -EINPROGRESS)", succeeded),
    Field("AncestorImages", "list", ALL, "process.ancestors, nearest first", _process("ancestors")),
    Field("OpenFlags", "integer", _FILE, "open flags (Linux O_* values)", _open(lambda e: e.flags)),
    Field("OpenWrite", "boolean", _FILE, "O_WRONLY or O_RDWR", lambda e: bool(e.flags & 3) and _is_open(e)),
    Field("OpenCreate", "boolean", _FILE, "O_CREAT", lambda e: bool(e.flags & O_CREAT) and _is_open(e)),
    Field("OpenTruncate", "boolean", _FILE, "O_TRUNC", lambda e: bool(e.flags & O_TRUNC) and _is_open(e)),
    # provex: network
    Field("DestinationEndpoint", "string", _NET, 'ip:port ("[ip]:port" for IPv6)', _conn(_endpoint)),
    Field(
        "DestinationIsApiServer",
        "boolean",
        _NET,
        "enrichment: destination is the API server",
        lambda e: e.dest_is_apiserver,
    ),
    Field("AddressFamily", "integer", _NET, "2 = AF_INET, 10 = AF_INET6", lambda e: e.family),
    Field(
        "PeerPodName",
        "string",
        _NET,
        "the Pod at the other end, when it is a Pod of this node",
        _peer("name"),
    ),
    Field("PeerPodNamespace", "string", _NET, "that Pod's namespace", _peer("namespace")),
    Field("PeerPodUid", "string", _NET, "that Pod's uid", _peer("uid")),
    # provex: namespaces and mounts
    Field("NamespaceType", "integer", _NS, "setns nstype / unshare flags (raw)", lambda e: e.nstype),
    Field(
        "NamespaceTypes",
        "list",
        _NS,
        'CLONE_NEW* bits by name: time mnt cgroup uts ipc user pid net; setns nstype 0: "any"',
        lambda e: (
            linux.namespace_names(e.nstype, e.type is EventType.SETNS)
            if e.type in (EventType.SETNS, EventType.UNSHARE)
            else []
        ),
    ),
    Field(
        "NamespaceFd",
        "integer",
        frozenset({"setns"}),
        "setns fd (a /proc/PID/ns file or a pidfd)",
        lambda e: e.fd,
    ),
    Field(
        "MountSource",
        "string",
        _MOUNT,
        "mount source (open_tree: its path)",
        _mnt(lambda e: e.source or e.path),
    ),
    Field("MountTarget", "string", _MOUNT, "mount target", _mnt(lambda e: e.target)),
    Field("MountFsType", "string", _MOUNT, "file system type (fsopen: its name)", _mnt(lambda e: e.fstype)),
    Field("MountFlags", "integer", _MOUNT, "mount flags", _mnt(lambda e: e.flags)),
    # provex: containers, Pods, host mounts
    Field(
        "IsContainer", "boolean", ALL, "the event came from a container", lambda e: e.container is not None
    ),
    Field("ContainerId", "string", ALL, "container id (empty on the host)", _container("id")),
    Field("ContainerName", "string", ALL, "container name from the Pod spec", _container("name")),
    Field("ContainerImage", "string", ALL, "container image", _container("image")),
    Field(
        "ContainerRuntime", "string", ALL, "containerd, cri-o, docker, podman, runc", _container("runtime")
    ),
    Field(
        "IsContainerRuntime",
        "boolean",
        _NS | _MOUNT,
        "the container runtime's own work while it builds a container: a runc, crun or"
        " containerd-shim-runc-v2 image, or runc init (comm runc:[...) with no image known yet"
        " or running runc's cloned copy (/memfd:runc_cloned:..., a runc.XXXXXX file)",
        _is_container_runtime,
    ),
    Field("PodName", "string", ALL, "Pod name", _pod("name")),
    Field("PodNamespace", "string", ALL, "Pod namespace", _pod("namespace")),
    Field("PodUid", "string", ALL, "Pod uid", _pod("uid")),
    Field("ServiceAccount", "string", ALL, "Pod service account", _pod("service_account")),
    Field("NodeName", "string", ALL, "node the Pod runs on", _pod("node")),
    Field(
        "PodIp",
        "string",
        ALL,
        "the Pod's own address (the first of status.podIPs); empty for a hostNetwork Pod",
        _pod_ip,
    ),
    *(
        Field(
            f"AncestorProcessId{n}",
            "integer",
            ALL,
            f"the pid {n} generation{'s' if n > 1 else ''} up (process table; the topmost known"
            " one when the lineage is shorter, so equal values mean a common ancestor)",
            _lineage(n),
        )
        for n in range(1, 5)
    ),
    Field(
        "IsHostMount",
        "boolean",
        _PATHS,
        "the resolved path (exec: the image or the interpreted file; mount: its source) lies in a host mount",
        lambda e: resolve_host_mount(e) is not None,
    ),
    Field("HostMountPath", "string", _PATHS, "the host path it reaches through that mount", _host_path),
    Field(
        "HostMountContainerPath", "string", _PATHS, "where that host mount sits in the container", _host_root
    ),
    Field("HostMountReadOnly", "boolean", _PATHS, "that host mount is read-only", _host_ro),
    Field("IsLate", "boolean", ALL, "enrichment deadline passed before identity was known", lambda e: e.late),
]


def _user(uid: int) -> str:
    return "root" if uid == 0 else str(uid)


def _is_open(e: Event) -> bool:
    return e.type is EventType.OPEN


FIELDS: dict[str, Field] = {f.name: f for f in _TABLE}


class EventView:
    """One event as rules see it: field values computed once, on demand."""

    __slots__ = ("_cache", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._cache: dict[str, Value] = {}

    def get(self, name: str) -> Value:
        try:
            return self._cache[name]
        except KeyError:
            value = self._cache[name] = FIELDS[name].get(self.event)
            return value


def fields_markdown() -> str:
    """The published field table (FIELDS.md), generated from `FIELDS`."""
    lines = [
        "# Fields provex rules see",
        "",
        "Generated from `exporter/correlate/fields.py` (a test checks this file against it).",
        "",
        "## Logsource categories (`product: linux`)",
        "",
        "| category | events |",
        "| --- | --- |",
    ]
    lines += [f"| `{c}` | {d} |" for c, d in CATEGORY_DOC.items()]
    lines += ["", "## Fields", "", "| field | type | categories | meaning |", "| --- | --- | --- | --- |"]
    for f in _TABLE:
        cats = "all" if f.categories == ALL else ", ".join(sorted(f.categories))
        lines.append(f"| `{f.name}` | {f.kind} | {cats} | {f.doc} |")
    return "\n".join(lines) + "\n"
