"""The provenance graph: what each process is doing and has done, what each path really
names, where each file's content came from; and, when an alert fires, its story as a graph.

Per event nothing here builds graph-library objects: the state is plain slotted records
over a bounded window of EVENT time (ts_ns, never the wall clock, so a replay builds the
same state):

  * a process: its lineage, root and current directory (inherited across fork and exec),
    its open fds (what each names), its image, whether it holds network data and how, what
    its stdin and stdout are, and a short history of what a story may tell (execs, writes,
    connects, links, mounts, namespaces, sensitive reads);
  * a container: the links and renames made in it, the files whose content came from the
    network, the identities it wrote, and interpreter executions still waiting to learn
    whether the pipe or socket they read their program from carries network data;
  * a file by identity (device, inode, from the kernel): its network origin, whatever the
    name it is written, renamed, linked, bind-mounted or executed under.

`add` annotates each event before any rule sees it:
  * every path is resolved against the process's root, current directory, dirfd and the
    links created in its container (Event.resolved_path, .resolution, .host_path);
  * an exec of an interpreter names the file it was handed, or the file a redirect put on
    its stdin (.interpreted_path);
  * an exec whose program came from the network carries that story (.origin) and what
    carried it (.carrier: a file, a pipe, a socket, a memfd): a process that connected out
    (before or after the write) or read such a file wrote it, possibly renamed or linked on
    the way; or the pipe or socket the interpreter reads its program from is fed by such a
    process. When that is learned after the exec (`curl URL | sh` starts sh before curl
    connects), the exec is judged again (`take_rejudged`).

Bounds. Exited processes, files and links leave with the window; a process that is still
alive keeps its state past the window (its directory and fds are state, not history), and
a container whose processes are all gone is forgotten after the window. The budget
(correlate.max_nodes: processes, files, links and fds together) is shared fairly: when it
is exceeded, the container holding the most gives back its own oldest state first, so one
container churning names cannot evict another's context.

`story` builds, for an alert, the subgraph of the processes its evidence names, their
ancestors and what they did within the window, as a networkx graph: the alert's story.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from exporter.correlate.provenance import (
    DIRFD_SYSCALLS,
    FsContext,
    Links,
    Resolved,
    interpreter_program,
    proc_self,
    resolve,
)
from exporter.metrics import REGISTRY
from exporter.model import Event, EventType, EvidenceRef, FileRef, Resolution, evidence_ref
from exporter.model.linux import (
    AF_INET,
    AF_INET6,
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_SYMLINK_FOLLOW,
    EINPROGRESS,
    MS_BIND,
    O_ACCMODE,
    O_CLOEXEC,
    O_CREAT,
    O_NOFOLLOW,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
)
from exporter.taxonomy.hostmounts import host_mount_of

GRAPH_NODES = Gauge(
    "provex_correlate_graph_nodes",
    "State entries of the provenance graph (processes, files, links, fds)",
    registry=REGISTRY,
)
GRAPH_EDGES = Gauge(
    "provex_correlate_graph_edges",
    "Steps of process history the provenance graph keeps for stories",
    registry=REGISTRY,
)
GRAPH_EVICTIONS = Counter(
    "provex_correlate_graph_evictions",
    "Provenance state evicted, by kind (proc, file, link, fd, container) and cause (window, budget)",
    ["kind", "cause"],
    registry=REGISTRY,
)
RESOLUTIONS = Counter(
    "provex_correlate_path_resolutions",
    "Paths resolved by the provenance graph, by outcome (resolved, root_assumed, cwd_unknown, "
    "dirfd_unknown, pivoted, link_loop)",
    ["outcome"],
    registry=REGISTRY,
)
REJUDGED = Counter(
    "provex_correlate_rejudged",
    "Interpreter executions judged again once the pipe or socket they read their program from "
    "was found to carry network data",
    registry=REGISTRY,
)

Identity = tuple[int, int, int]  # (dev, ino, generation) as the kernel reads them
_METRIC_EVERY = 1024  # events between gauge updates and window sweeps
STDOUT_STDERR = (1, 2)
MAX_FDS = 256  # per process: the most recent fds whose paths are remembered
MAX_WRITES = 32  # per process: files written before its taint is known (the shell-redirect case)
MAX_LINKS = 4096  # per container: links and hard-link names remembered
MAX_HISTORY = 16  # per process: steps a story can tell
MAX_WAITING = 64  # per container: interpreter execs waiting to learn what their stdin carries
S_IFMT, S_IFIFO, S_IFSOCK, S_IFREG = 0o170000, 0o010000, 0o140000, 0o100000

# What a process did that a story tells (a plain read, a chdir or a fork is state, not a step).
_STEP = {
    EventType.EXEC: "executed",
    EventType.CONNECT: "connected",
    EventType.ACCEPT: "accepted",
    EventType.SETNS: "entered-namespace",
    EventType.UNSHARE: "created-namespace",
    EventType.MOUNT: "mounted",
    EventType.CHROOT: "changed-root",
    EventType.LINK: "linked",
    EventType.RENAME: "renamed",
}


@dataclass(slots=True)
class Fd:
    path: str  # resolved, "" when not known
    cloexec: bool
    write: EvidenceRef | None  # the open that made it writable
    identity: Identity | None = None


@dataclass(slots=True)
class Step:
    ts: int
    kind: str  # executed, opened-for-write, read-sensitive, connected, ...
    target: str  # "file:/path", "endpoint:ip:port", "namespace:...", "mount:..."
    event_id: str


@dataclass(slots=True)
class ProcState:
    """What the graph knows of one process."""

    pid: int
    cid: str = ""
    ppid: int = 0
    ctx: FsContext = field(default_factory=FsContext)
    # fd -> what it names. A reused fd is overwritten by its next open; an fd closed and
    # reused by something not probed (socket, pipe) keeps a stale path, which can only
    # mislead a call that would then fail (ENOTDIR): rules see successful calls.
    # Inherited across fork: a shell opens a redirect's file and its child writes through it.
    fds: OrderedDict[int, Fd] = field(default_factory=OrderedDict)
    exe: str = ""  # resolved image of its last exec
    exe_given: str = ""  # that exec's path as given (what the process table calls its image)
    net: tuple[EvidenceRef, ...] = ()  # how it came to hold network data ((): it did not)
    wrote: list[tuple[str, Identity | None, EvidenceRef]] | None = None  # before its taint was known
    stdin: Identity | None = None  # what its stdin and stdout are (a pipe, a socket)
    stdout: Identity | None = None
    stdout_mode: int = 0
    history: list[Step] | None = None
    seeded_ns: int = 0  # context read from /proc at this time: older chdirs are in it
    exited_ns: int = 0
    last_ns: int = 0

    def fork(self, pid: int, ts: int) -> ProcState:
        """The child's state: cwd, root, fds, streams and image are inherited, and so is network
        data held (the child has the parent's sockets and memory: a reverse shell's commands
        run in its children)."""
        return ProcState(
            pid=pid,
            cid=self.cid,
            ppid=self.pid,
            ctx=FsContext(self.ctx.root, self.ctx.cwd, self.ctx.pivoted),
            fds=OrderedDict(self.fds),
            exe=self.exe,
            exe_given=self.exe_given,
            net=self.net,
            stdin=self.stdin,
            stdout=self.stdout,
            stdout_mode=self.stdout_mode,
            last_ns=ts,
        )

    @property
    def size(self) -> int:
        return 1 + len(self.fds)


@dataclass(slots=True)
class FileState:
    origin: tuple[EvidenceRef, ...]
    ts: int


@dataclass(slots=True)
class ContainerState:
    cid: str
    procs: set[int] = field(default_factory=set)
    symlinks: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    hardlinks: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    files: OrderedDict[str, FileState] = field(default_factory=OrderedDict)  # path -> network origin
    identities: OrderedDict[Identity, int] = field(default_factory=OrderedDict)  # written here -> ts
    waiting: dict[Identity, list[tuple[Event, str]]] = field(default_factory=dict)
    # Processes whose stdin is a pipe or socket not known (yet) to carry network data.
    readers: dict[Identity, list[int]] = field(default_factory=dict)
    last_ns: int = 0
    # Entries it holds (processes, their fds, links, origins, identities): its share of the
    # budget. Kept by the graph at every change (ProvenanceGraph._grow).
    usage: int = 0


class ProvenanceGraph:
    def __init__(self, window_s: float, max_nodes: int, max_edges: int) -> None:
        if window_s <= 0 or max_nodes < 16 or max_edges < 16:
            raise ValueError("correlate.window_s must be > 0, max_nodes and max_edges >= 16")
        self.window_ns = int(window_s * 1_000_000_000)
        self.max_nodes = max_nodes  # state entries, shared fairly between containers
        self.max_edges = max_edges  # history steps kept for stories, node-wide
        self.now_ns = 0
        self.procs: dict[int, ProcState] = {}
        self.containers: OrderedDict[str, ContainerState] = OrderedDict()  # least recently active first
        self.by_identity: OrderedDict[Identity, FileState] = OrderedDict()  # network origin by identity
        self.evicted: dict[str, int] = {}
        self.total = 0  # entries of every container: what the budget bounds
        self.steps = 0
        self._rejudged: list[Event] = []
        self._since_metrics = 0
        self._outcomes = {r: RESOLUTIONS.labels(r.value) for r in Resolution}
        self._evictions: dict[tuple[str, str], Counter] = {}

    # ---------------------------------------------------------- building

    def add(self, event: Event) -> None:
        ts = event.ts_ns
        if ts > self.now_ns:
            self.now_ns = ts
        state = self._process(event)
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event, state)
        kind = _STEP.get(event.type)
        if kind is not None:
            self._step(state, event, kind)
        self._since_metrics += 1
        if self._since_metrics >= _METRIC_EVERY:
            self.publish()
        elif self.total > self.max_nodes:
            self._evict_budget()

    def take_rejudged(self) -> list[Event]:
        """Executions whose program's origin was learned since the last call: judge them again."""
        out, self._rejudged = self._rejudged, []
        return out

    def _process(self, event: Event) -> ProcState:
        pid = event.pid
        state = self.procs.get(pid)
        cid = _cid(event)
        if state is None or (state.exited_ns and event.ts_ns > state.exited_ns):
            # New to the graph, or a reused pid whose fork was not seen: nothing is known.
            if state is not None:
                self._drop_proc(state, "window")
            state = self.procs[pid] = ProcState(pid=pid, cid=cid, ppid=event.ppid)
            container = self._container(cid)
            container.procs.add(pid)
            self._grow(container, 1)
        if event.ppid:
            state.ppid = event.ppid
        state.last_ns = event.ts_ns
        container = self.containers.get(state.cid)
        if container is not None:
            container.last_ns = event.ts_ns
            self.containers.move_to_end(state.cid)
        process = event.process
        if process is not None and process.exe == state.exe_given and state.exe != state.exe_given:
            process.exe = state.exe  # the image the graph resolved (a relative or linked exec)
        return state

    def _grow(self, container: ContainerState | None, n: int) -> None:
        if container is not None:
            container.usage += n
            self.total += n

    def _container(self, cid: str) -> ContainerState:
        container = self.containers.get(cid)
        if container is None:
            container = self.containers[cid] = ContainerState(cid, last_ns=self.now_ns)
        return container

    def _step(self, state: ProcState, event: Event, kind: str) -> None:
        target = _target(event)
        if not target:
            return
        history = state.history
        if history is None:
            history = state.history = []
        history.append(Step(event.ts_ns, kind, target, event.id))
        self.steps += 1
        if len(history) > 2 * MAX_HISTORY:
            self.steps -= len(history) - MAX_HISTORY
            del history[:-MAX_HISTORY]

    # ---------------------------------------------------------- provenance per event type

    def _on_fork(self, event: Event, parent: ProcState) -> None:
        old = self.procs.get(event.child_pid)
        if old is not None:
            self._drop_proc(old, "window")
        child = self.procs[event.child_pid] = parent.fork(event.child_pid, event.ts_ns)
        container = self._container(child.cid)
        container.procs.add(child.pid)
        self._grow(container, child.size)

    def _on_context(self, event: Event, state: ProcState) -> None:
        # Read from /proc for a process the stream did not see start: seed what is unknown.
        if state.ctx.root is None:
            state.ctx.root = event.target or "/"
        if state.ctx.cwd is None:
            state.ctx.cwd = event.path or None
        state.seeded_ns = event.ts_ns

    def _on_exit(self, event: Event, state: ProcState) -> None:
        if event.tid == event.pid:
            state.exited_ns = event.ts_ns
            # Its fds and pending writes name nothing any more (a reused pid starts afresh);
            # its image, root, cwd, network taint and history stay for the stories that cite it.
            self._set_fds(state, OrderedDict())
            state.wrote = None

    def _on_chdir(self, event: Event, state: ProcState) -> None:
        if event.syscall == "fchdir":
            path = self._fd_path(state, event.fd)
            resolved = Resolved(path, Resolution.RESOLVED) if path else Resolved("", Resolution.DIRFD_UNKNOWN)
        else:
            resolved = self._resolve(event, state, event.path, AT_FDCWD)
        self._annotate(event, resolved)
        if event.ret == 0 and event.ts_ns >= state.seeded_ns:
            state.ctx.cwd = resolved.path or None

    def _on_chroot(self, event: Event, state: ProcState) -> None:
        resolved = self._resolve(event, state, event.path, AT_FDCWD)
        self._annotate(event, resolved)
        if event.ret != 0 or event.ts_ns < state.seeded_ns:
            return
        if event.syscall == "pivot_root":
            # The mount namespace's "/" is now new_root. For the runtime building the
            # container (nothing executed yet) that is the container's own view; for a
            # workload it is a root of its choosing, which paths are then relative to.
            state.ctx = FsContext(root="/", cwd="/", pivoted=bool(state.exe))
        else:
            state.ctx.root = resolved.path or None

    def _on_open(self, event: Event, state: ProcState) -> None:
        follow = not event.flags & O_NOFOLLOW
        if event.syscall in ("memfd_create", "open_by_handle_at", "io_uring_open"):
            resolved = (
                Resolved(event.path, Resolution.RESOLVED)
                if event.path
                else Resolved("", Resolution.DIRFD_UNKNOWN)
            )
        else:
            resolved = self._resolve(event, state, event.path, self._dirfd(event), follow)
        self._annotate(event, resolved)
        if event.ret < 0:
            return
        path = resolved.path
        identity = event.file.key if event.file is not None else None
        if not path and identity is None:
            return
        cid = state.cid
        write = None
        # A device keeps nothing of what is written to it (/dev/null is every container's):
        # only files, pipes, sockets and memfds carry data from a writer to a reader.
        stores = _stores_data(path, event.file)
        if event.flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC):
            write = evidence_ref(event, "write")
            self._step(state, event, "wrote")
            if identity is not None and stores:
                self._remember_identity(cid, identity)
            if stores and event.flags & O_TRUNC:
                self._forget_origin(cid, path, identity)  # its content is replaced
            if stores and state.net:
                self._set_origin(cid, path, identity, (*state.net, write))
            elif stores:
                wrote = state.wrote
                if wrote is None:
                    wrote = state.wrote = []
                wrote.append((path, identity, write))
                if len(wrote) > MAX_WRITES:
                    del wrote[0]
        elif event.verdict.startswith("sensitive"):
            self._step(state, event, "read-sensitive")
        if event.ret >= 0:
            carries = (write, identity) if stores else (None, None)
            self._set_fd(state, event.ret, Fd(path, bool(event.flags & O_CLOEXEC), *carries))
        if event.flags & O_ACCMODE != O_WRONLY and stores:  # a read: it holds what the file holds
            origin = self._origin(cid, path, identity)
            if origin and not state.net:
                self._taint(state, (*origin, evidence_ref(event, "read")))

    def _on_connect(self, event: Event, state: ProcState) -> None:
        ok = event.ret >= 0 or event.ret == -EINPROGRESS
        if ok and event.family in (AF_INET, AF_INET6):
            how = (evidence_ref(event, "connect"),)
            if event.file is not None:  # the socket itself carries network data
                self._carrier_origin(state.cid, event.file.key, how)
            if not state.net:
                self._taint(state, how)

    def _on_accept(self, event: Event, state: ProcState) -> None:
        # An accepted connection brings network data in, exactly like a connect out.
        if event.ret >= 0 and event.family in (AF_INET, AF_INET6):
            how = (evidence_ref(event, "accept"),)
            if event.file is not None:
                self._carrier_origin(state.cid, event.file.key, how)
            if not state.net:
                self._taint(state, how)

    def _on_exec(self, event: Event, state: ProcState) -> None:
        path = event.path
        if not path and event.flags & AT_EMPTY_PATH:  # fexecve: the fd is the file
            fd_path = self._fd_path(state, event.dirfd)
            status = Resolution.RESOLVED if fd_path else Resolution.DIRFD_UNKNOWN
            resolved = Resolved(fd_path, status)
        elif state.exe and _is_own_exe(path, event.pid):  # re-executing itself (busybox applets)
            resolved = Resolved(state.exe, Resolution.RESOLVED)
        else:
            resolved = self._resolve(event, state, path, self._dirfd(event))
        self._annotate(event, resolved)
        image = resolved.path or path
        if not image and event.exe_name.startswith("memfd:"):
            image = "/" + event.exe_name  # what the kernel calls it (readlink: /memfd:x)
        cid = state.cid
        operand, from_stdin = interpreter_program(image, event.argv, by_argv0=_is_own_exe(path, event.pid))
        origin: tuple[EvidenceRef, ...] = ()
        carrier = "file"
        if operand:
            script = self._resolve(event, state, operand, AT_FDCWD)
            event.interpreted_path = script.path
            origin = self._origin(cid, script.path, None)
        elif from_stdin:
            # The program is whatever stdin holds: the file a redirect put there (`sh < f`),
            # or a pipe or socket (`curl URL | sh`), as the kernel saw fd 0 at the exec.
            stdin_fd = state.fds.get(0)
            stdin = event.stdin
            if (
                stdin_fd is not None
                and stdin_fd.path
                and (stdin is None or stdin_fd.identity in (None, stdin.key))
            ):
                event.interpreted_path = stdin_fd.path
            identity = (
                stdin.key if stdin is not None else (stdin_fd.identity if stdin_fd is not None else None)
            )
            origin = self._origin(cid, event.interpreted_path, identity)
            if stdin is not None and _is_stream(stdin.mode):
                carrier = "socket" if stdin.mode & S_IFMT == S_IFSOCK else "pipe"
                if not origin and event.ret == 0:
                    # Its feeder may not have connected yet: if it does, judge this exec again.
                    self._wait_for_origin(cid, stdin.key, event, carrier)
        if not origin:
            exe_identity = event.file.key if event.file is not None else None
            origin = self._origin(cid, resolved.path, exe_identity)
            carrier = "memfd" if event.exe_name.startswith("memfd:") else "file"
        event.origin = list(origin)
        event.carrier = carrier if origin else ""
        if event.ret == 0:
            for fd in [fd for fd, entry in state.fds.items() if entry.cloexec]:
                self._drop_fd(state, fd)
            state.exe, state.exe_given = image, path
            if event.process is not None and image.startswith("/"):
                event.process.exe = image
            state.stdin = event.stdin.key if event.stdin is not None else state.stdin
            if event.stdout is not None:
                state.stdout, state.stdout_mode = event.stdout.key, event.stdout.mode
            if event.stdin is not None and _is_stream(event.stdin.mode) and not state.net:
                self._read_stream(state, event.stdin.key)
            if state.net:
                self._taint_stdout(state)

    def _on_dup(self, event: Event, state: ProcState) -> None:
        # A redirect onto stdin/stdout/stderr: that stream now names the old fd's file
        # (dup3 may set close-on-exec; dup2 never does).
        if event.ret < 0:
            return
        hit = state.fds.get(event.fd)
        if hit is None:
            self._drop_fd(state, event.ret)
        else:
            self._set_fd(
                state, event.ret, Fd(hit.path, bool(event.flags & O_CLOEXEC), hit.write, hit.identity)
            )

    def _on_mount(self, event: Event, state: ProcState) -> None:
        # A bind mount's or open_tree's source is a path the process names like any other.
        source = event.source or event.path
        bind = event.syscall == "mount" and event.flags & MS_BIND
        if event.syscall == "open_tree" or bind or source.startswith("/"):
            dirfd = event.dirfd if event.syscall == "open_tree" else AT_FDCWD
            self._annotate(event, self._resolve(event, state, source, dirfd))

    def _on_link(self, event: Event, state: ProcState) -> None:
        new = self._resolve(event, state, event.path, self._dirfd(event), follow_last=False)
        self._annotate(event, new)
        symlink = event.syscall.startswith("symlink")
        if symlink:
            old_path = event.source  # the link's content, resolved when it is used
        else:
            follow = bool(event.flags & AT_SYMLINK_FOLLOW)
            old = self._resolve(event, state, event.source, self._source_dirfd(event), follow)
            old_path = event.resolved_source = old.path
        if event.ret != 0 or not new.path or not old_path:
            return
        container = self._container(state.cid)
        if symlink:
            self._remember(container, container.symlinks, new.path, old_path, event.ts_ns)
        else:
            identity = self._hardlink_identity(container, old_path)
            self._remember(container, container.hardlinks, new.path, identity, event.ts_ns)
            origin = self._origin(state.cid, identity, None)
            if origin:
                self._set_origin(state.cid, new.path, None, origin)

    def _on_rename(self, event: Event, state: ProcState) -> None:
        new = self._resolve(event, state, event.path, self._dirfd(event), follow_last=False)
        old = self._resolve(event, state, event.source, self._source_dirfd(event), follow_last=False)
        self._annotate(event, new)
        event.resolved_source = old.path
        if event.ret != 0 or not new.path or not old.path:
            return
        cid = state.cid
        container = self._container(cid)
        for table in (container.symlinks, container.hardlinks):
            moved = table.pop(old.path, None)
            replaced = table.pop(new.path, None)
            self._grow(container, -(moved is not None) - (replaced is not None))
            if moved is not None:
                self._remember(container, table, new.path, moved[0], event.ts_ns)
        origin = self._origin(cid, old.path, None)
        if origin:
            self._set_origin(cid, new.path, None, (*origin, evidence_ref(event, "rename")))
            if container.files.pop(old.path, None) is not None:
                self._grow(container, -1)

    # ---------------------------------------------------------- provenance helpers

    def _dirfd(self, event: Event) -> int:
        return event.dirfd if event.syscall in DIRFD_SYSCALLS else AT_FDCWD

    def _source_dirfd(self, event: Event) -> int:
        return event.source_dirfd if event.syscall in DIRFD_SYSCALLS else AT_FDCWD

    def _fd_path(self, state: ProcState, fd: int) -> str:
        hit = state.fds.get(fd)
        return hit.path if hit is not None else ""

    def _set_fd(self, state: ProcState, fd: int, entry: Fd) -> None:
        fds = state.fds
        if fd not in fds:
            self._grow(self.containers.get(state.cid), 1)
        fds[fd] = entry
        fds.move_to_end(fd)
        if len(fds) > MAX_FDS:
            fds.popitem(last=False)
            self._grow(self.containers.get(state.cid), -1)

    def _drop_fd(self, state: ProcState, fd: int) -> None:
        if state.fds.pop(fd, None) is not None:
            self._grow(self.containers.get(state.cid), -1)

    def _set_fds(self, state: ProcState, fds: OrderedDict[int, Fd]) -> None:
        self._grow(self.containers.get(state.cid), len(fds) - len(state.fds))
        state.fds = fds

    def _remember(
        self,
        container: ContainerState,
        table: OrderedDict[str, tuple[str, int]],
        path: str,
        value: str,
        ts: int,
    ) -> None:
        if path not in table:
            self._grow(container, 1)
        table[path] = (value, ts)
        table.move_to_end(path)
        if len(table) > MAX_LINKS:
            table.popitem(last=False)
            self._grow(container, -1)

    def _resolve(
        self, event: Event, state: ProcState, path: str, dirfd: int, follow_last: bool = True
    ) -> Resolved:
        special = proc_self(path) if path.startswith("/proc/") else None
        if special is not None and special[0] in ("self", "thread-self", str(event.pid)):
            # The process's own /proc entries name its root, cwd and fds: resolve through them.
            # (Another process's are spelled with its pid in the container's pid namespace,
            # which the host's pids do not tell: those are judged by the opened file's identity.)
            _, what, rest = special
            if what == "root":
                path, dirfd = rest or "/", AT_FDCWD
            elif what == "cwd":
                path, dirfd = "." + rest, AT_FDCWD
            elif what.startswith("fd/"):
                fd = _fd_number(what[3:])
                fd_path = self._fd_path(state, fd) if fd is not None else ""
                if not fd_path:
                    return Resolved("", Resolution.DIRFD_UNKNOWN)
                return resolve(state.ctx, "." + rest, fd_path, self._symlinks(event), follow_last)
        elif path.startswith("/dev/fd/"):
            fd_text, _, rest = path[len("/dev/fd/") :].partition("/")
            if fd_text.isdigit():
                fd = _fd_number(fd_text)
                fd_path = self._fd_path(state, fd) if fd is not None else ""
                if not fd_path:
                    return Resolved("", Resolution.DIRFD_UNKNOWN)
                return resolve(state.ctx, "./" + rest, fd_path, self._symlinks(event), follow_last)
        dirfd_path = None
        if dirfd != AT_FDCWD and (not path.startswith("/") or event.resolve & _RESOLVE_IN_ROOT_OR_BENEATH):
            dirfd_path = self._fd_path(state, dirfd)
            if path.startswith("/") and event.resolve & _RESOLVE_IN_ROOT_OR_BENEATH:
                # openat2 RESOLVE_IN_ROOT/BENEATH: an absolute path is taken from the dirfd
                if not dirfd_path:
                    return Resolved("", Resolution.DIRFD_UNKNOWN)
                inner = FsContext(dirfd_path, dirfd_path, state.ctx.pivoted)
                return resolve(inner, path, None, self._symlinks(event), follow_last)
        resolved = resolve(state.ctx, path, dirfd_path, self._symlinks(event), follow_last)
        if resolved.path:
            container = self.containers.get(_cid(event))
            if container is not None and container.hardlinks:
                resolved = Resolved(self._hardlink_identity(container, resolved.path), resolved.status)
        return resolved

    def _annotate(self, event: Event, resolved: Resolved) -> None:
        event.resolved_path = resolved.path
        event.resolution = resolved.status.value
        self._outcomes[resolved.status].inc()
        container = event.container
        if resolved.path and container is not None and container.host_mounts:
            hit = host_mount_of(resolved.path, container.host_mounts)
            event.host_path = hit[1] if hit else ""

    def _symlinks(self, event: Event) -> Links | None:
        """The container's symbolic links still inside the window, as a lookup."""
        container = self.containers.get(_cid(event))
        if container is None or not container.symlinks:
            return None
        table, horizon = container.symlinks, self.now_ns - self.window_ns

        def lookup(path: str) -> str | None:
            hit = table.get(path)
            return hit[0] if hit is not None and hit[1] >= horizon else None

        return lookup

    def _hardlink_identity(self, container: ContainerState, path: str) -> str:
        hit = container.hardlinks.get(path)
        if hit is not None and hit[1] >= self.now_ns - self.window_ns:
            return hit[0]
        return path

    def _remember_identity(self, cid: str, identity: Identity) -> None:
        container = self._container(cid)
        identities = container.identities
        if identity not in identities:
            self._grow(container, 1)
        identities[identity] = self.now_ns
        identities.move_to_end(identity)

    def _origin(self, cid: str, path: str, identity: Identity | None) -> tuple[EvidenceRef, ...]:
        """How a file (by identity, else by path in its container) came from the network."""
        horizon = self.now_ns - self.window_ns
        if identity is not None:
            hit = self.by_identity.get(identity)
            if hit is not None and hit.ts >= horizon:
                return hit.origin
        if path:
            container = self.containers.get(cid)
            if container is not None:
                hit = container.files.get(path)
                if hit is not None and hit.ts >= horizon:
                    return hit.origin
        return ()

    def _set_origin(
        self, cid: str, path: str, identity: Identity | None, origin: tuple[EvidenceRef, ...]
    ) -> None:
        if path:
            container = self._container(cid)
            files = container.files
            if path not in files:
                self._grow(container, 1)
            files[path] = FileState(origin, self.now_ns)
            files.move_to_end(path)
        if identity is not None:
            self._carrier_origin(cid, identity, origin)

    def _forget_origin(self, cid: str, path: str, identity: Identity | None) -> None:
        container = self.containers.get(cid)
        if path and container is not None and container.files.pop(path, None) is not None:
            self._grow(container, -1)
        if identity is not None:
            self.by_identity.pop(identity, None)

    def _carrier_origin(self, cid: str, identity: Identity, origin: tuple[EvidenceRef, ...]) -> None:
        """A file, pipe, socket or memfd (by identity) carries network data: remember it, and
        judge again the interpreters that were waiting to know what they read."""
        by_identity = self.by_identity
        by_identity[identity] = FileState(origin, self.now_ns)
        by_identity.move_to_end(identity)
        if len(by_identity) > self.max_nodes:
            by_identity.popitem(last=False)
        self._remember_identity(cid, identity)
        container = self.containers.get(cid)
        if container is None:
            return
        for event, carrier in container.waiting.pop(identity, ()):
            event.origin = list(origin)
            event.carrier = carrier
            self._rejudged.append(event)
            REJUDGED.inc()
        # Whoever reads it on stdin now holds network data too: `wget -O- URL | tar x` writes
        # downloaded files, `... | sysprobe memfd-exec -` a downloaded memfd.
        for pid in container.readers.pop(identity, ()):
            reader = self.procs.get(pid)
            if reader is not None and reader.stdin == identity and not reader.net:
                self._taint(reader, origin)

    def _read_stream(self, state: ProcState, identity: Identity) -> None:
        """A process reads a pipe or socket on stdin: it holds what that carries, now if the
        carrier is known to carry network data, else as soon as it is."""
        origin = self._origin(state.cid, "", identity)
        if origin:
            self._taint(state, origin)
            return
        readers = self._container(state.cid).readers
        pids = readers.setdefault(identity, [])
        pids.append(state.pid)
        if len(pids) > MAX_WAITING:
            del pids[0]
        if len(readers) > MAX_WAITING:
            del readers[next(iter(readers))]

    def _wait_for_origin(self, cid: str, identity: Identity, event: Event, carrier: str) -> None:
        waiting = self._container(cid).waiting
        queue = waiting.setdefault(identity, [])
        queue.append((event, carrier))
        if len(queue) > MAX_WAITING:
            del queue[0]
        if len(waiting) > MAX_WAITING:
            del waiting[next(iter(waiting))]

    def _taint(self, state: ProcState, how: tuple[EvidenceRef, ...]) -> None:
        """The process now holds network data: so do the files it wrote before it knew,
        those its stdout and stderr name (a shell's redirect: `sed ... > out`), and the pipe
        or socket its stdout is (`curl URL | sh`). Other inherited fds are not trusted: a
        close is not probed, so they may be stale."""
        state.net = how
        horizon = self.now_ns - self.window_ns
        cid = state.cid
        writes = list(state.wrote or ())
        for fd in STDOUT_STDERR:
            hit = state.fds.get(fd)
            if hit is not None and hit.write is not None:
                writes.append((hit.path, hit.identity, hit.write))
        for path, identity, write in writes:
            if write.ts_ns >= horizon and not self._origin(cid, path, identity):
                self._set_origin(cid, path, identity, (*how, write))
        state.wrote = None
        self._taint_stdout(state)

    def _taint_stdout(self, state: ProcState) -> None:
        stdout = state.stdout
        if (
            stdout is not None
            and state.net
            and _is_stream(state.stdout_mode)
            and not self._origin(state.cid, "", stdout)
        ):
            self._carrier_origin(state.cid, stdout, state.net)

    # ---------------------------------------------------------- bounds

    def _drop_proc(self, state: ProcState, cause: str) -> None:
        if self.procs.get(state.pid) is state:
            del self.procs[state.pid]
        container = self.containers.get(state.cid)
        if container is not None and state.pid in container.procs:
            container.procs.discard(state.pid)
            self._grow(container, -state.size)
        if state.history:
            self.steps -= len(state.history)
        self._count("proc", cause)

    def _sweep_window(self) -> None:
        """Drop what left the window: exited processes, files, links, identities, and the
        containers with nothing left."""
        horizon = self.now_ns - self.window_ns
        for state in [s for s in self.procs.values() if s.exited_ns and s.exited_ns < horizon]:
            self._drop_proc(state, "window")
        for identity in _older(self.by_identity, horizon, lambda v: v.ts):
            del self.by_identity[identity]
        for cid in list(self.containers):
            container = self.containers[cid]
            for table, kind, when in (
                (container.files, "file", lambda v: v.ts),
                (container.symlinks, "link", lambda v: v[1]),
                (container.hardlinks, "link", lambda v: v[1]),
                (container.identities, "file", lambda v: v),
            ):
                old = _older(table, horizon, when)
                for key in old:
                    del table[key]
                if old:
                    self._grow(container, -len(old))
                    self._count(kind, "window", len(old))
            for identity in [i for i, q in container.waiting.items() if q[-1][0].ts_ns < horizon]:
                del container.waiting[identity]
            for identity in [
                i for i, pids in container.readers.items() if not any(p in self.procs for p in pids)
            ]:
                del container.readers[identity]
            if not container.procs and container.last_ns < horizon:
                self._grow(container, -container.usage)
                del self.containers[cid]
                self._count("container", "window")

    def _evict_budget(self) -> None:
        """Over budget: the container holding the most gives back its oldest state, until the
        total is back under the budget with some room (evicting in batches keeps it rare)."""
        target = self.max_nodes - self.max_nodes // 8
        while self.total > target and self.containers:
            heaviest = max(self.containers.values(), key=_by_usage)
            if not self._shrink(heaviest, max(1, heaviest.usage // 4)):
                break

    def _shrink(self, container: ContainerState, want: int) -> int:
        """Give back `want` entries of one container, oldest first: links, origins and
        identities, then exited processes, then the fds of its least recently active
        processes, then those processes."""
        freed = 0
        for table, kind in (
            (container.symlinks, "link"),
            (container.hardlinks, "link"),
            (container.files, "file"),
            (container.identities, "file"),
        ):
            while table and freed < want:
                table.popitem(last=False)
                self._grow(container, -1)
                freed += 1
                self._count(kind, "budget")
        if freed >= want:
            return freed
        procs = sorted((self.procs[p] for p in container.procs if p in self.procs), key=_by_activity)
        for state in procs:
            if freed >= want:
                break
            if state.exited_ns:
                freed += state.size
                self._drop_proc(state, "budget")
        for state in procs:
            if freed >= want:
                break
            if not state.exited_ns and self.procs.get(state.pid) is state and state.fds:
                freed += len(state.fds)
                self._count("fd", "budget", len(state.fds))
                self._set_fds(state, OrderedDict())
        for state in procs:
            if freed >= want:
                break
            if self.procs.get(state.pid) is state:
                freed += state.size
                self._drop_proc(state, "budget")
        return freed

    def forget_container(self, cid: str) -> None:
        """The container is gone (its cgroup was removed): nothing more can happen in it."""
        container = self.containers.pop(cid, None)
        if container is None:
            return
        self.total -= container.usage
        for pid in container.procs:
            state = self.procs.get(pid)
            if state is not None and state.cid == cid:
                del self.procs[pid]
        self._count("container", "gone")

    def _count(self, kind: str, cause: str, n: int = 1) -> None:
        self.evicted[kind] = self.evicted.get(kind, 0) + n
        counter = self._evictions.get((kind, cause))
        if counter is None:
            counter = self._evictions[kind, cause] = GRAPH_EVICTIONS.labels(kind, cause)
        counter.inc(n)

    def publish(self) -> None:
        self._since_metrics = 0
        self._sweep_window()
        if self.total > self.max_nodes:
            self._evict_budget()
        if self.steps > self.max_edges:
            self._trim_history()
        GRAPH_NODES.set(self.total)
        GRAPH_EDGES.set(self.steps)

    def _trim_history(self) -> None:
        """Story steps past their node-wide bound: the least recently active processes lose
        their history first."""
        for state in sorted(self.procs.values(), key=_by_activity):
            if self.steps <= self.max_edges - self.max_edges // 8:
                return
            if state.history:
                self.steps -= len(state.history)
                self._count("step", "budget", len(state.history))
                state.history = None

    @property
    def size(self) -> tuple[int, int]:
        """(state entries, story steps)."""
        return self.total, self.steps

    # ---------------------------------------------------------- lineage

    def parent(self, pid: int) -> int:
        state = self.procs.get(pid)
        return state.ppid if state is not None else 0

    def ancestors(self, pid: int, depth: int) -> list[int]:
        """pid itself, then its parents, nearest first, at most `depth` generations up."""
        chain = [pid]
        for _ in range(depth):
            ppid = self.parent(chain[-1])
            if not ppid or ppid in chain:
                break
            chain.append(ppid)
        return chain

    def is_descendant(self, pid: int, of: int, depth: int = 32) -> bool:
        """pid is `of` or a descendant of it (as far as the window remembers)."""
        return of in self.ancestors(pid, depth)

    def kin(self, a: int, b: int, depth: int) -> bool:
        """a and b share an ancestor at most `depth` generations above each (0: same process)."""
        return bool(set(self.ancestors(a, depth)) & set(self.ancestors(b, depth)))

    def context(self, pid: int) -> FsContext | None:
        """The process's current view (root, cwd), if the graph knows it."""
        state = self.procs.get(pid)
        return state.ctx if state is not None else None

    def process(self, pid: int) -> ProcState | None:
        return self.procs.get(pid)

    # ---------------------------------------------------------- stories

    def story(self, evidence: Iterable[EvidenceRef], depth: int = 4) -> Any:
        """The incident as a networkx MultiDiGraph: the processes the evidence names and
        their ancestors (`depth` generations), each with what it did within the window,
        its container, and the evidence events themselves (exporter/correlate/story.py,
        which alerts carry as Alert.story). Nodes are ("proc", pid), ("container", id),
        ("file", path), ("endpoint", ip:port), ...; every edge has its kind, time and event id."""
        from exporter.correlate.story import build_story, story_graph

        return story_graph(build_story(self, evidence, depth))


_RESOLVE_IN_ROOT_OR_BENEATH = 0x08 | 0x10  # openat2 RESOLVE_BENEATH, RESOLVE_IN_ROOT


def _target(event: Event) -> str:
    t = event.type
    if t in (EventType.OPEN, EventType.EXEC, EventType.LINK, EventType.RENAME, EventType.CHROOT):
        path = event.resolved_path or event.path or (event.file.path if event.file is not None else "")
        return f"file:{path}" if path else ""
    if t is EventType.CONNECT:
        return f"endpoint:{_endpoint(event.daddr, event.dport)}" if event.daddr else f"socket:{event.path}"
    if t is EventType.ACCEPT:
        return f"endpoint:{_endpoint(event.saddr, event.sport)}"
    if t is EventType.SETNS:
        return f"namespace:{event.fd}:{event.nstype:#x}"
    if t is EventType.UNSHARE:
        return f"namespace:new:{event.nstype:#x}"
    if t is EventType.MOUNT:
        return f"mount:{event.target or event.source or event.path}:{event.fstype}"
    return ""


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _older(table: OrderedDict, horizon: int, when) -> list:
    """Keys of an insertion-ordered table whose time is before the horizon (oldest first)."""
    out = []
    for key, value in table.items():
        if when(value) >= horizon:
            break
        out.append(key)
    return out


def _by_activity(state: ProcState) -> int:
    return state.last_ns


def _by_usage(container: ContainerState) -> int:
    return container.usage


def _fd_number(text: str) -> int | None:
    """The fd a /proc/self/fd/N or /dev/fd/N name gives, read as the kernel reads it
    (fs/proc/fd.c name_to_int): ASCII digits, no leading zero, a plausible fd. None: it names
    no fd (a Unicode digit, "03", 5,000 digits), so the call would fail."""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or (len(text) > 1 and text[0] == "0"):
        return None
    fd = int(text)
    return fd if fd < 2**31 else None


def _is_own_exe(path: str, pid: int) -> bool:
    return path in ("/proc/self/exe", "/proc/thread-self/exe", f"/proc/{pid}/exe")


def _is_stream(mode: int) -> bool:
    return mode & S_IFMT in (S_IFIFO, S_IFSOCK)


_DEVICE_PATHS = ("/dev/", "/proc/", "/sys/")


def _stores_data(path: str, ref: FileRef | None) -> bool:
    """Can what one process writes here be read back by another: a regular file, a pipe, a
    socket or a memfd, by the kernel's file type; without it, a path outside /dev (but for its
    tmpfs, /dev/shm), /proc and /sys."""
    if ref is not None and ref.mode:
        return ref.mode & S_IFMT in (S_IFREG, S_IFIFO, S_IFSOCK)
    return not path.startswith(_DEVICE_PATHS) or path.startswith("/dev/shm/")


def _cid(event: Event) -> str:
    return event.container.id if event.container is not None else ""


_HANDLERS = {
    EventType.FORK: ProvenanceGraph._on_fork,
    EventType.CONTEXT: ProvenanceGraph._on_context,
    EventType.EXIT: ProvenanceGraph._on_exit,
    EventType.CHDIR: ProvenanceGraph._on_chdir,
    EventType.CHROOT: ProvenanceGraph._on_chroot,
    EventType.OPEN: ProvenanceGraph._on_open,
    EventType.CONNECT: ProvenanceGraph._on_connect,
    EventType.ACCEPT: ProvenanceGraph._on_accept,
    EventType.EXEC: ProvenanceGraph._on_exec,
    EventType.LINK: ProvenanceGraph._on_link,
    EventType.RENAME: ProvenanceGraph._on_rename,
    EventType.MOUNT: ProvenanceGraph._on_mount,
    EventType.DUP: ProvenanceGraph._on_dup,
}
