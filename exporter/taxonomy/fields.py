"""The field taxonomy Sigma rules see, and the logsource category of each event.

Rules name Sigma's Linux fields (Image, CommandLine, TargetFilename, ...) plus
provex's own for containers, Pods, host mounts, namespaces and mounts. Each
field is one getter over the flat `Event`; `FIELDS_MARKDOWN` (published as
exporter/taxonomy/FIELDS.md, checked by a test) is generated from this table.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exporter.model import Event, EventType, HostMount, ProcessInfo, linux
from exporter.taxonomy.hostmounts import host_mount_of

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
    "sensor": "a container's decisive syscalls of one kind past its budget, summarized by the kernel (provex)",
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
    EventType.SUMMARY: ("sensor",),
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


def host_file(event: Event) -> str:
    """The host path of the file an event acts on: by the file's identity, when the agent
    registered it as a host file (the kernel read the identity from the opened file or the
    running image, so no spelling, link, dirfd, bind mount, rename, hard link or handle
    changes it), else through the host mount its resolved path lies in. Identity first: a
    name can point elsewhere than the file it opened (renamed, hard-linked, truncated)."""
    ref = event.file
    if ref is not None and ref.host_path and event.type in (EventType.OPEN, EventType.EXEC):
        return ref.host_path
    hit = resolve_host_mount(event)
    return hit[1] if hit is not None else ""


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
    """The container runtime's own work: as the kernel knows it (Event.by_runtime: the
    process runs one of the host's runtime binaries, by device and inode, or descends from one
    and has executed nothing else since). Only for events recorded without that knowledge (an
    old recording, a kernel without BTF) by name: its binary, or runc init (comm "runc:[N:...]")
    with no image seen in the container yet or running runc's cloned copy; names compare as
    Sigma's endswith and startswith do, without case."""
    if e.by_runtime is not None:
        return e.by_runtime
    image = _image(e)
    if image.lower().endswith(_RUNTIME_BINARIES):
        return True
    if not e.comm.lower().startswith("runc:["):
        return False
    return not image or _RUNC_CLONED.search(image) is not None


def _host_path(e: Event) -> Value:
    return host_file(e)


def _identity(e: Event) -> Value:
    return f"{e.file.dev}:{e.file.ino}" if e.file is not None else ""


def _sensitive_file(e: Event) -> Value:
    if e.type is not EventType.OPEN:
        return False
    return e.verdict.startswith("sensitive") or (e.file is not None and e.file.kind in _SENSITIVE_KINDS)


_SENSITIVE_KINDS = frozenset({"host_file", "host_dir", "token"})


def _owned_by_reader(owner: str, e: Event) -> bool:
    """A token belongs to its Pod (kubelet mounts one volume into each of its containers: the
    same file), or to the container that registered it when its Pod was not known."""
    container = e.container
    if not owner or container is None:
        return False
    return owner == container.id or (container.pod is not None and owner == container.pod.uid)


def _own_secret(e: Event) -> Value:
    """The file is the reading container's own secret: by identity (the agent registered it as
    its Pod's token), or, when its identity says nothing, by the resolved path."""
    ref = e.file
    if ref is not None and ref.kind:
        return _owned_by_reader(ref.owner, e)
    path = e.resolved_path
    return path.startswith(("/var/run/secrets/", "/run/secrets/"))


def _other_secret(e: Event) -> Value:
    ref = e.file
    return ref is not None and bool(ref.owner) and not _owned_by_reader(ref.owner, e)


_S_IFMT = 0o170000
_FILE_TYPES = {0o010000: "pipe", 0o020000: "char", 0o040000: "dir", 0o060000: "block", 0o100000: "file",
               0o120000: "symlink", 0o140000: "socket"}  # fmt: skip


def file_type(mode: int) -> str:
    """S_IF* of an i_mode as a word: file, dir, pipe, socket, char, block, symlink."""
    return _FILE_TYPES.get(mode & _S_IFMT, "")


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
    Field("ParentProcessId", "integer", ALL, "ppid (empty when not known)", lambda e: e.ppid or None),
    Field(
        "TargetFilename",
        "string",
        _FILE,
        "the opened file, resolved (root, cwd, dirfd, known links); as given if it cannot be;"
        " with no name (a file handle, io_uring), the path registered for its identity",
        _open(lambda e: e.resolved_path or e.path or (e.file.path if e.file is not None else "")),
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
        "the program came from the network: an executed file (by path or identity) was written, "
        "in this container within the window, by a process that held network data (it, or a "
        "process it forked from, connected out, before or after the write; or it read such a "
        "file), renames and links followed; or an interpreter reads its program from a pipe or "
        "socket fed by such a process (judged again when the feeder connects after the exec); "
        "or a memfd written by such a process was executed",
        lambda e: bool(e.origin),
    ),
    Field(
        "ProgramCarrier",
        "string",
        _EXEC,
        "what carried a program from the network: file, pipe, socket or memfd (empty otherwise)",
        _exec(lambda e: e.carrier),
    ),
    Field(
        "ImageKernelName",
        "string",
        _EXEC,
        'the kernel\'s name for the running image ("memfd:x" for a memfd, whatever path was given)',
        _exec(lambda e: e.exe_name),
    ),
    Field(
        "StdinType",
        "string",
        _EXEC,
        "what the new program's stdin is, as the kernel saw it: file, pipe, socket, char, ...",
        _exec(lambda e: file_type(e.stdin.mode) if e.stdin is not None else ""),
    ),
    Field(
        "FileIdentity",
        "string",
        _PATHS,
        "device:inode of the opened file or the running image, read from the kernel (not the name)",
        _identity,
    ),
    Field(
        "FileVerdict",
        "string",
        _FILE,
        "why the kernel sent the open: empty (its spelling), sensitive_path, sensitive_file, "
        "sensitive_dir (by the file's identity), learned (a file the workload wrote)",
        _open(lambda e: e.verdict),
    ),
    Field(
        "IsSensitiveFile",
        "boolean",
        _FILE,
        "the kernel judged the file sensitive (its spelling, or its identity: a registered file, "
        "or a file in a registered directory or the directory below it, such as a token volume),"
        " or the agent's registry names its identity (registered after the kernel judged it)",
        _sensitive_file,
    ),
    Field(
        "FileRealPath",
        "string",
        _PATHS,
        "the path the agent registered for the file's identity (its owner's view): names the file "
        "whatever alias was used",
        lambda e: e.file.path if e.file is not None else "",
    ),
    Field(
        "IsOwnSecret",
        "boolean",
        _FILE,
        "the file is the reading container's own secret (its service-account token), by identity; "
        "by the resolved path under /var/run/secrets or /run/secrets when the identity is not known",
        _own_secret,
    ),
    Field(
        "IsOtherContainerSecret",
        "boolean",
        _FILE,
        "the file is another container's secret (its service-account token), by identity",
        _other_secret,
    ),
    Field(
        "RepeatCount",
        "integer",
        _FILE,
        "the same process's reads of this sensitive file folded into this one (empty when none)",
        lambda e: e.repeats if e.type is EventType.OPEN and e.repeats else None,
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
        _NS | _MOUNT | _EXEC | _FILE,
        "the container runtime's own work, as the kernel knows it: the process runs one of the"
        " host's runtime binaries (probes.runtime_binaries, by device and inode) or descends from"
        " one and has executed nothing but the runtime's own copy of itself since; a copy or a"
        " renamed binary inside a container, or a spoofed comm, is not it. For events recorded"
        " without that knowledge: a runc, crun or containerd-shim-runc-v2 image, or runc init"
        " (comm runc:[...) with no image known yet or running runc's cloned copy",
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
        "the resolved path (exec: the image or the interpreted file; mount: its source) lies in a"
        " host mount, or the file is, by its identity, a host file the agent registered",
        lambda e: bool(host_file(e)),
    ),
    Field(
        "HostMountPath",
        "string",
        _PATHS,
        "the host path it reaches through that mount, or the registered host path of its identity",
        _host_path,
    ),
    Field(
        "HostMountContainerPath", "string", _PATHS, "where that host mount sits in the container", _host_root
    ),
    Field("HostMountReadOnly", "boolean", _PATHS, "that host mount is read-only", _host_ro),
    Field("IsLate", "boolean", ALL, "enrichment deadline passed before identity was known", lambda e: e.late),
    # provex: the sensor itself
    Field(
        "SummaryKind",
        "string",
        frozenset({"sensor"}),
        "the decisive kind a container sent past its budget: exec, file, mount, ns, net",
        lambda e: e.summary.kind if e.summary is not None else "",
    ),
    Field(
        "SummaryCount",
        "integer",
        frozenset({"sensor"}),
        "how many of them the kernel counted instead of sending",
        lambda e: e.summary.count if e.summary is not None else 0,
    ),
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
        "Generated from `exporter/taxonomy/fields.py` (a test checks this file against it).",
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
