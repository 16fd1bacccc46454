"""The provenance graph: who ran, forked, opened, connected, entered and mounted what,
and what each path really named.

A networkx MultiDiGraph over a bounded window of EVENT time (ts_ns, never the
wall clock, so a replay builds the same graph). Nodes are processes, files,
endpoints, namespaces, mounts and containers; each edge is one event, keyed
by the event id and stamped with its time. Oldest first is evicted when an
edge or node leaves the window or the node/edge budget is exceeded, so memory
stays flat however long the input runs. A process that is still alive keeps
its node past the window (its current and root directory are state, not
history); only the budget, or its exit, removes it.

Nodes and edges are kept for what a story needs (execs, writes, connects, links, renames,
mounts, namespaces, lineage); a plain read changes the reading process's state (its fds, the
network data it holds) and leaves no edge. Rules read the graph, not the spelling of a syscall. `add` annotates each
event before any rule sees it:
  * every path is resolved against the process's root, current directory,
    dirfd and the links created in its container (Event.resolved_path,
    .resolution, .host_path);
  * an exec of an interpreter names the file it was handed, or the file a redirect put
    on its stdin (.interpreted_path);
  * an exec whose file came from the network carries that story (.origin): a
    process that connected out (before or after the write) or read such a
    file wrote it, possibly renamed or linked on the way.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

import networkx as nx
from prometheus_client import Counter, Gauge

from exporter.correlate.provenance import (
    DIRFD_SYSCALLS,
    FsContext,
    Links,
    Resolved,
    host_mount_of,
    interpreter_program,
    proc_self,
    resolve,
)
from exporter.metrics import REGISTRY
from exporter.model import Event, EventType, EvidenceRef, Resolution, evidence_ref
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
    WRITE_FLAGS,
)

GRAPH_NODES = Gauge("provex_correlate_graph_nodes", "Nodes in the provenance graph", registry=REGISTRY)
GRAPH_EDGES = Gauge("provex_correlate_graph_edges", "Edges in the provenance graph", registry=REGISTRY)
GRAPH_EVICTIONS = Counter(
    "provex_correlate_graph_evictions",
    "Graph nodes and edges evicted, by kind and cause (window, budget)",
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

Node = tuple[Hashable, ...]
_EDGE = {
    EventType.EXEC: "executed",
    EventType.OPEN: "opened",
    EventType.CONNECT: "connected",
    EventType.SETNS: "entered-namespace",
    EventType.UNSHARE: "entered-namespace",
    EventType.MOUNT: "mounted",
    EventType.FORK: "forked",
    EventType.CHDIR: "changed-directory",
    EventType.CHROOT: "changed-root",
    EventType.LINK: "linked",
    EventType.RENAME: "renamed",
}
_METRIC_EVERY = 1024  # events between gauge updates (a gauge set per event is wasted work)
# A plain read (no WRITE_FLAGS) is no edge: no rule or story needs it as one, and its effect
# on the process (fd, network data held) is kept in the process's state.
STDOUT_STDERR = (1, 2)
MAX_FDS = 256  # per process: the most recent fds whose paths are remembered
MAX_WRITES = 32  # per process: files written before its taint is known (the shell-redirect case)
MAX_LINKS = 4096  # per container: links and hard-link names remembered


@dataclass(slots=True)
class ProcState:
    """What the graph knows of a live process beyond its lineage."""

    ctx: FsContext = field(default_factory=FsContext)
    # fd -> (resolved path, close-on-exec, the open that made it writable or None). A reused
    # fd is overwritten by its next open; an fd closed and reused by something not probed
    # (socket, pipe, dup) keeps a stale path, which can only mislead a call that would
    # then fail (ENOTDIR) - rules see successful calls. Inherited across fork: a shell
    # opens a redirect's file and its child writes through it.
    fds: OrderedDict[int, tuple[str, bool, EvidenceRef | None]] = field(default_factory=OrderedDict)
    exe: str = ""  # resolved image of its last exec
    exe_given: str = ""  # that exec's path as given (what the process table calls its image)
    net: tuple[EvidenceRef, ...] = ()  # how it came to hold network data ((): it did not)
    # Made on the first write: an empty deque is ~600 bytes, and most processes never write
    # before their taint is known (10k processes of container churn held 3 MB of them).
    wrote: deque[tuple[str, EvidenceRef]] | None = None
    seeded_ns: int = 0  # context read from /proc at this time: older chdirs are in it
    exited_ns: int = 0

    def fork(self) -> ProcState:
        """The child's state: cwd, root, fds and image are inherited, and so is network
        data held (the child has the parent's sockets and memory: a reverse shell's
        commands run in its children)."""
        ctx = FsContext(self.ctx.root, self.ctx.cwd, self.ctx.pivoted)
        return ProcState(
            ctx=ctx, fds=OrderedDict(self.fds), exe=self.exe, exe_given=self.exe_given, net=self.net
        )


@dataclass(slots=True)
class _ContainerNames:
    """Links created in one container: path -> (content or identity, ts)."""

    symlinks: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    hardlinks: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    written_ns: int = 0  # its last link or rename


class ProvenanceGraph:
    def __init__(self, window_s: float, max_nodes: int, max_edges: int) -> None:
        if window_s <= 0 or max_nodes < 16 or max_edges < 16:
            raise ValueError("correlate.window_s must be > 0, max_nodes and max_edges >= 16")
        self.g = nx.MultiDiGraph()
        # networkx's own dicts, read directly on the per-event path: its views and has_edge
        # build objects per call (a fifth of the graph's time in bench/correlate_soak.py).
        self._attrs: dict[Node, dict] = self.g._node
        self._succ: dict[Node, dict[Node, dict[str, dict]]] = self.g._succ
        self.window_ns = int(window_s * 1_000_000_000)
        self.max_nodes = max_nodes
        self.max_edges = max_edges
        self.now_ns = 0
        self._edges: deque[tuple[int, Node, Node, str]] = deque()  # insertion (≈ time) order
        self._touched: OrderedDict[Node, int] = OrderedDict()  # node -> last ts, oldest first
        self.evicted = {"node": 0, "edge": 0}
        self._since_metrics = 0
        self.edge_count = 0  # networkx counts multigraph edges in O(nodes): keep our own
        self._names: OrderedDict[str, _ContainerNames] = OrderedDict()
        self._outcomes = {r: RESOLUTIONS.labels(r.value) for r in Resolution}
        self._evictions: dict[tuple[str, str], Counter] = {}  # (kind, cause) -> labelled counter

    # ---------------------------------------------------------- building

    def add(self, event: Event) -> None:
        ts = event.ts_ns
        if ts > self.now_ns:
            self.now_ns = ts
        proc, state = self._process(event)
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event, state)
        kind = _EDGE.get(event.type)
        if kind is not None and not (event.type is EventType.OPEN and not event.flags & WRITE_FLAGS):
            target = self._target(event)
            if target is not None:
                self._node(target, ts)
                self._edge(proc, target, event.id, kind, ts)
        self._evict()
        self._since_metrics += 1
        if self._since_metrics >= _METRIC_EVERY:
            self.publish()

    def _process(self, event: Event) -> tuple[Node, ProcState]:
        node: Node = ("proc", event.pid)
        attrs = self._node(node, event.ts_ns)
        state = attrs.get("state")
        if state is None or (state.exited_ns and event.ts_ns > state.exited_ns):
            # New to the graph, or a reused pid whose fork was not seen: nothing is known.
            state = attrs["state"] = ProcState()
        if event.ppid:
            attrs["ppid"] = event.ppid
        if event.container is not None and "container" not in attrs:
            attrs["container"] = event.container.id
            cnode: Node = ("container", event.container.id)
            self._node(cnode, event.ts_ns)
            self._edge(cnode, node, event.id + "/in", "contains", event.ts_ns)
        process = event.process
        if process is not None and process.exe == state.exe_given and state.exe != state.exe_given:
            process.exe = state.exe  # the image the graph resolved (a relative or linked exec)
        return node, state

    def _edge(self, u: Node, v: Node, key: str, kind: str, ts: int) -> None:
        if key not in self._succ.get(u, {}).get(v, ()):
            self.edge_count += 1
        self.g.add_edge(u, v, key=key, kind=kind, ts=ts)
        self._edges.append((ts, u, v, key))

    def _target(self, event: Event) -> Node | None:
        t = event.type
        cid = event.container.id if event.container is not None else ""
        if t is EventType.FORK:
            return ("proc", event.child_pid)
        if t in (EventType.OPEN, EventType.EXEC, EventType.LINK, EventType.RENAME):
            return ("file", cid, event.resolved_path or event.path)
        if t in (EventType.CHDIR, EventType.CHROOT):
            return ("dir", cid, event.resolved_path or event.path or f"fd:{event.fd}")
        if t is EventType.CONNECT:
            return ("endpoint", event.daddr, event.dport)
        if t is EventType.SETNS:
            return ("namespace", cid, f"fd:{event.pid}:{event.fd}", event.nstype)
        if t is EventType.UNSHARE:
            return ("namespace", cid, f"new:{event.id}", event.nstype)
        if t is EventType.MOUNT:
            return ("mount", cid, event.target or event.source or event.path, event.fstype)
        return None

    def _node(self, node: Node, ts: int) -> dict:
        touched = self._touched
        if node in touched:
            touched.move_to_end(node)
            touched[node] = ts
            return self._attrs[node]
        touched[node] = ts
        self.g.add_node(node)
        return self._attrs[node]

    # ---------------------------------------------------------- provenance per event type

    def _on_fork(self, event: Event, parent: ProcState) -> None:
        attrs = self._node(("proc", event.child_pid), event.ts_ns)
        attrs["ppid"] = event.pid
        attrs["state"] = parent.fork()

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
            # its image, root, cwd and network taint stay for the stories that cite it.
            state.fds = OrderedDict()
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
        resolved = self._resolve(event, state, event.path, self._dirfd(event), follow)
        self._annotate(event, resolved)
        if event.ret < 0 or not resolved.path:
            return
        path = resolved.path
        cid = _cid(event)
        write = None
        if event.flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC):
            write = evidence_ref(event, "write")
            if state.net:
                self._set_origin(cid, path, (*state.net, write))
            else:
                if state.wrote is None:
                    state.wrote = deque(maxlen=MAX_WRITES)
                state.wrote.append((path, write))
        fds = state.fds
        fds[event.ret] = (path, bool(event.flags & O_CLOEXEC), write)
        fds.move_to_end(event.ret)
        if len(fds) > MAX_FDS:
            fds.popitem(last=False)
        if event.flags & O_ACCMODE != O_WRONLY:  # a read: it now holds what the file holds
            origin = self._origin(cid, path)
            if origin and not state.net:
                self._taint(state, (*origin, evidence_ref(event, "read")), cid)

    def _on_connect(self, event: Event, state: ProcState) -> None:
        ok = event.ret >= 0 or event.ret == -EINPROGRESS
        if ok and event.family in (AF_INET, AF_INET6) and not state.net:
            self._taint(state, (evidence_ref(event, "connect"),), _cid(event))

    def _on_accept(self, event: Event, state: ProcState) -> None:
        # An accepted connection brings network data in, exactly like a connect out.
        if event.ret >= 0 and event.family in (AF_INET, AF_INET6) and not state.net:
            self._taint(state, (evidence_ref(event, "accept"),), _cid(event))

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
        operand, from_stdin = interpreter_program(image, event.argv, by_argv0=_is_own_exe(path, event.pid))
        if operand:
            script = self._resolve(event, state, operand, AT_FDCWD)
            event.interpreted_path = script.path
        elif from_stdin and 0 in state.fds:
            # The program is whatever stdin holds: the file a redirect put there (`sh < f`).
            event.interpreted_path = state.fds[0][0]
        cid = _cid(event)
        origin: tuple[EvidenceRef, ...] = ()
        for executed in (event.interpreted_path, resolved.path):
            if executed and not origin:
                origin = self._origin(cid, executed)
        event.origin = list(origin)
        if event.ret == 0:
            for fd in [fd for fd, (_, cloexec, _) in state.fds.items() if cloexec]:
                del state.fds[fd]
            state.exe, state.exe_given = image, path
            if event.process is not None and image.startswith("/"):
                event.process.exe = image

    def _on_dup(self, event: Event, state: ProcState) -> None:
        # A redirect onto stdin/stdout/stderr: that stream now names the old fd's file
        # (dup3 may set close-on-exec; dup2 never does).
        if event.ret < 0:
            return
        hit = state.fds.get(event.fd)
        if hit is None:
            state.fds.pop(event.ret, None)
        else:
            state.fds[event.ret] = (hit[0], bool(event.flags & O_CLOEXEC), hit[2])

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
        names = self._container_names(_cid(event), event.ts_ns)
        if symlink:
            _remember(names.symlinks, new.path, old_path, event.ts_ns)
        else:
            identity = self._identity(names, old_path)
            _remember(names.hardlinks, new.path, identity, event.ts_ns)
            origin = self._origin(_cid(event), identity)
            if origin:
                self._set_origin(_cid(event), new.path, origin)

    def _on_rename(self, event: Event, state: ProcState) -> None:
        new = self._resolve(event, state, event.path, self._dirfd(event), follow_last=False)
        old = self._resolve(event, state, event.source, self._source_dirfd(event), follow_last=False)
        self._annotate(event, new)
        event.resolved_source = old.path
        if event.ret != 0 or not new.path or not old.path:
            return
        cid = _cid(event)
        names = self._container_names(cid, event.ts_ns)
        for table in (names.symlinks, names.hardlinks):
            moved = table.pop(old.path, None)
            table.pop(new.path, None)
            if moved is not None:
                _remember(table, new.path, moved[0], event.ts_ns)
        origin = self._origin(cid, old.path)
        if origin:
            self._set_origin(cid, new.path, (*origin, evidence_ref(event, "rename")))
            self._set_origin(cid, old.path, ())

    # ---------------------------------------------------------- provenance helpers

    def _dirfd(self, event: Event) -> int:
        return event.dirfd if event.syscall in DIRFD_SYSCALLS else AT_FDCWD

    def _source_dirfd(self, event: Event) -> int:
        return event.source_dirfd if event.syscall in DIRFD_SYSCALLS else AT_FDCWD

    def _fd_path(self, state: ProcState, fd: int) -> str:
        hit = state.fds.get(fd)
        return hit[0] if hit else ""

    def _resolve(
        self, event: Event, state: ProcState, path: str, dirfd: int, follow_last: bool = True
    ) -> Resolved:
        special = proc_self(path) if path.startswith("/proc/") else None
        if special is not None and special[0] in ("self", "thread-self", str(event.pid)):
            # The process's own /proc entries name its root, cwd and fds: resolve through them.
            _, what, rest = special
            if what == "root":
                path, dirfd = rest or "/", AT_FDCWD
            elif what == "cwd":
                path, dirfd = "." + rest, AT_FDCWD
            elif what.startswith("fd/"):
                fd_path = self._fd_path(state, int(what[3:]))
                if not fd_path:
                    return Resolved("", Resolution.DIRFD_UNKNOWN)
                return resolve(state.ctx, "." + rest, fd_path, self._symlinks(event), follow_last)
        dirfd_path = None
        if dirfd != AT_FDCWD and not path.startswith("/"):
            dirfd_path = self._fd_path(state, dirfd)
        resolved = resolve(state.ctx, path, dirfd_path, self._symlinks(event), follow_last)
        if resolved.path:
            names = self._names.get(_cid(event))
            if names is not None and names.hardlinks:
                resolved = Resolved(self._identity(names, resolved.path), resolved.status)
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
        names = self._names.get(_cid(event))
        if names is None or not names.symlinks:
            return None
        table, horizon = names.symlinks, self.now_ns - self.window_ns

        def lookup(path: str) -> str | None:
            hit = table.get(path)
            return hit[0] if hit is not None and hit[1] >= horizon else None

        return lookup

    def _container_names(self, cid: str, ts: int) -> _ContainerNames:
        names = self._names.get(cid)
        if names is None:
            names = self._names[cid] = _ContainerNames()
            if len(self._names) > MAX_LINKS:
                self._names.popitem(last=False)
        else:
            self._names.move_to_end(cid)
        names.written_ns = max(names.written_ns, ts)
        return names

    def _forget_names(self) -> None:
        """The link tables of containers that made no link inside the window: lookups
        ignore their entries already, and a gone container would keep them until 4,096
        others had written (container churn left runc's /dev links of each behind)."""
        horizon = self.now_ns - self.window_ns
        names = self._names
        while names:
            cid, table = next(iter(names.items()))  # least recently written first
            if table.written_ns >= horizon:
                break
            del names[cid]

    def _identity(self, names: _ContainerNames, path: str) -> str:
        hit = names.hardlinks.get(path)
        if hit is not None and hit[1] >= self.now_ns - self.window_ns:
            return hit[0]
        return path

    def _origin(self, cid: str, path: str) -> tuple[EvidenceRef, ...]:
        attrs = self._attrs.get(("file", cid, path))
        if not attrs:
            return ()
        origin = attrs.get("origin", ())
        if origin and origin[0].ts_ns < self.now_ns - self.window_ns:
            return ()
        return origin

    def _set_origin(self, cid: str, path: str, origin: tuple[EvidenceRef, ...]) -> None:
        self._node(("file", cid, path), self.now_ns)["origin"] = origin

    def _taint(self, state: ProcState, how: tuple[EvidenceRef, ...], cid: str) -> None:
        """The process now holds network data: so do the files it wrote before it knew,
        and those its stdout and stderr name (a shell's redirect: `sed ... > out`). Other
        inherited fds are not trusted: a close is not probed, so they may be stale."""
        state.net = how
        horizon = self.now_ns - self.window_ns
        streams = (state.fds.get(fd) for fd in STDOUT_STDERR)
        writes = [*(state.wrote or ()), *((hit[0], hit[2]) for hit in streams if hit is not None and hit[2])]
        for path, write in writes:
            if write.ts_ns >= horizon and not self._origin(cid, path):
                self._set_origin(cid, path, (*how, write))
        state.wrote = None

    # ---------------------------------------------------------- bounds

    def _alive(self, node: Node) -> bool:
        if node[0] != "proc":
            return False
        state = self._attrs[node].get("state")
        return state is not None and not state.exited_ns

    def _evict(self) -> None:
        horizon = self.now_ns - self.window_ns
        edges, g = self._edges, self.g
        while edges and (edges[0][0] < horizon or len(edges) > self.max_edges):
            ts, u, v, key = edges.popleft()
            if key in g._succ.get(u, {}).get(v, ()):
                g.remove_edge(u, v, key)
                self.edge_count -= 1
                cause = "window" if ts < horizon else "budget"
                self._count("edge", cause)
                # a node left without edges is dropped with its last edge, not kept to the
                # window's end (a live process keeps its node: its context is state)
                for node in (u, v):
                    if not g._succ[node] and not g._pred[node] and not self._alive(node):
                        g.remove_node(node)
                        self._touched.pop(node, None)
                        self._count("node", cause)
        touched = self._touched
        while touched:
            node, ts = next(iter(touched.items()))
            if ts >= horizon and len(touched) <= self.max_nodes:
                break
            if ts < horizon and len(touched) <= self.max_nodes and self._alive(node):
                touched.move_to_end(node)  # still running: kept past the window, not the budget
                touched[node] = self.now_ns
                continue
            touched.popitem(last=False)
            # edges it takes along (a multigraph's degree counts each key; never a self-loop here)
            gone = sum(map(len, g._succ[node].values())) + sum(map(len, g._pred[node].values()))
            g.remove_node(node)
            self.edge_count -= gone
            cause = "window" if ts < horizon else "budget"
            self._count("node", cause)
            if gone:
                self._count("edge", cause, gone)

    def _count(self, kind: str, cause: str, n: int = 1) -> None:
        self.evicted[kind] += n
        counter = self._evictions.get((kind, cause))
        if counter is None:
            counter = self._evictions[kind, cause] = GRAPH_EVICTIONS.labels(kind, cause)
        counter.inc(n)

    def publish(self) -> None:
        self._since_metrics = 0
        self._forget_names()
        GRAPH_NODES.set(self.g.number_of_nodes())
        GRAPH_EDGES.set(self.edge_count)

    @property
    def size(self) -> tuple[int, int]:
        return self.g.number_of_nodes(), self.edge_count

    # ---------------------------------------------------------- lineage

    def parent(self, pid: int) -> int:
        attrs = self._attrs.get(("proc", pid))
        return attrs.get("ppid", 0) if attrs else 0

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
        attrs = self._attrs.get(("proc", pid))
        state = attrs.get("state") if attrs else None
        return state.ctx if state is not None else None


def _remember(table: OrderedDict[str, tuple[str, int]], path: str, value: str, ts: int) -> None:
    table[path] = (value, ts)
    table.move_to_end(path)
    if len(table) > MAX_LINKS:
        table.popitem(last=False)


def _is_own_exe(path: str, pid: int) -> bool:
    return path in ("/proc/self/exe", "/proc/thread-self/exe", f"/proc/{pid}/exe")


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
