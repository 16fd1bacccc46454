"""What files are, by device and inode: the sensitive set and the container runtime.

The kernel judges an opened file by its identity (bpf/provex.h: sensitive_ids,
a directory it lies in) and an executed image by the identity of the host's runtime binaries
(runtime_ids, runtime_inos, runtime_tasks). This keeps those maps current, on a thread of
its own (every lookup here is file-system I/O, never on the hot path):

* the host's sensitive files (probes.sensitive_paths, under probes.host_root): each file,
  and each directory of a prefix that ends in "/" with the files and directories under it
  (bounded), since a new file in a sensitive directory is sensitive too (the kernel checks
  a file's directory and that directory's parent);
* each container's view of them through its host mounts (its hostPath volumes: the
  identity the container reaches is the one that counts, wherever the mount's source is);
* each container's service-account token, and its directory (kubelet rotates the token into
  a new ..timestamp directory below it, which the kernel's grandparent check covers);
* the runtime's binaries (probes.runtime_binaries under host_root, and the images of
  running host processes with a runtime's name), and the processes already running them.

Until a container's view is registered the kernel cannot judge its files by identity: it
sends that cgroup's reads up instead of dropping them (bpf/provex.h: judged_cgroups), and
the enrich stage holds that container's file events (bounded) until `registered` says yes,
so a read through an alias in the container's first milliseconds is judged all the same.
A cgroup is marked judged once its part is in the kernel, or at once when it is the host's.

Everything is rescanned every `interval_s` (a file replaced by rename, a rotated token, an
upgraded runc get new inodes); identities no longer found are removed from the kernel.

`annotate` (the enrich stage, per event, a dict lookup) names the file an event's identity
is: its real path, its host path, whose secret it is.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exporter.enrich.worker import LoopThread
from exporter.model import Event, HostMount

log = logging.getLogger("provex.enrich")

ID_FILE, ID_DIR = 1, 2  # sensitive_ids values (bpf/provex.h)
TOKEN_DIRS = ("/var/run/secrets/kubernetes.io/serviceaccount", "/run/secrets/kubernetes.io/serviceaccount")
RUNTIME_NAMES = frozenset(
    {"runc", "crun", "containerd", "containerd-shim", "containerd-shim-runc-v2", "conmon", "crio", "dockerd"}
)
MAX_WALK = 4096  # entries registered per sensitive directory prefix (a walk is bounded)
MAX_DEPTH = 6
FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long): a file's i_generation (ext4, xfs, btrfs)
MAX_GONE = 4096  # gone containers remembered, so their stale entries name nothing
MAX_RETIRED = 16384  # identities of gone containers kept to name the events from before


def kernel_dev(st_dev: int) -> int:
    """stat's st_dev as the kernel's dev_t (MAJOR << 20 | MINOR), what the probes read."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


@dataclass(frozen=True, slots=True)
class Known:
    """What a registered identity is."""

    kind: str  # host_file, host_dir, token, runtime
    path: str  # its real path in its owner's view (the host's, or the container's)
    host_path: str = ""  # host files: the host's path
    # A secret's owner: its Pod's uid (kubelet mounts one token volume into every container of
    # the Pod: the same file), or the container's id when its Pod is not known.
    owner: str = ""
    # i_generation where the file system tells it (0: not known). An inode number is reused
    # once its file is deleted (a container's token in its bundle, a host file replaced by
    # rename): the generation tells the new file from the one registered.
    gen: int = 0


class KernelMaps(Protocol):
    """The probes' side (exporter.probes.loader.Probes)."""

    def set_identity(self, table: str, dev: int, ino: int, value: int = 1) -> None: ...
    def forget_identity(self, table: str, dev: int, ino: int) -> None: ...
    def set_runtime_ino(self, ino: int) -> None: ...
    def mark_runtime_task(self, tgid: int) -> None: ...
    def mark_judged(self, cgroup_id: int) -> None: ...


@dataclass(slots=True)
class _Container:
    pid: int
    mounts: tuple[HostMount, ...]
    cgroup_id: int = 0
    owner: str = ""  # whose its secrets are: its Pod's uid, else its own id


class IdentityRegistry:
    def __init__(
        self,
        kernel: KernelMaps | None,
        sensitive_paths: Iterable[str],
        runtime_binaries: Iterable[str] = (),
        host_root: str = "/",
        proc: str = "/proc",
        interval_s: float = 30.0,
    ) -> None:
        self.kernel = kernel
        self.sensitive_paths = list(sensitive_paths)
        self.runtime_binaries = list(runtime_binaries)
        self.host_root = host_root
        self.proc = proc
        self.interval_s = interval_s
        self._known: dict[tuple[int, int], Known] = {}  # swapped whole: readers need no lock
        self._in_kernel: dict[tuple[str, int, int], int] = {}  # (table, dev, ino) -> value
        self._runtime_inos: set[int] = set()
        # The host's part (sensitive files, runtime binaries) and each container's part,
        # rebuilt apart: a container that appears is registered in a few stats, at once.
        self._host: tuple[dict, dict] = ({}, {})
        self._parts: dict[str, tuple[dict, dict]] = {}
        self._containers: dict[str, _Container] = {}
        self._seen: dict[str, tuple[int, int, str]] = {}  # container -> (pid, host mounts, owner) asked for
        # container -> how many host mounts its registered view covers (read on the hot path)
        self._registered: dict[str, int] = {}
        self._judged: dict[int, None] = {}  # host cgroups marked judged (oldest first, bounded)
        # Containers whose cgroup is gone, and owners none of whose containers is left, with
        # when (wall ns, oldest first): what they registered names the events from before
        # that (still in the pipeline behind them) and nothing after (its inode numbers may
        # be the next container's).
        self._gone: dict[str, int] = {}
        self._owners: dict[str, str] = {}  # container -> the owner of its secrets
        self._gone_owners: dict[str, int] = {}
        self._retired: dict[tuple[int, int], tuple[Known, int]] = {}  # a gone one's, with when
        self._jobs: queue.SimpleQueue[tuple[str, int, tuple[HostMount, ...], int, str]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._loop = LoopThread(self._run, "provex-identity", interrupt=self._wake.set, join_s=5)
        self._last_scan = 0.0
        self.scans = 0

    # -- the hot path: no I/O ---------------------------------------------------------

    def lookup(self, dev: int, ino: int) -> Known | None:
        return self._known.get((dev, ino))

    def annotate(self, event: Event) -> None:
        """Name what the event's file is, when its identity is registered."""
        ref = event.file
        if ref is None:
            return
        key = (ref.dev, ref.ino)
        known = self._known.get(key)
        if known is None:
            retired = self._retired.get(key)
            if retired is None or event.ts_ns >= retired[1]:
                return  # not registered, or a gone container's, named only before it went
            known = retired[0]
        if known.gen and ref.gen and known.gen != ref.gen:
            return  # another file that reuses the inode number
        gone_ns = self._gone_owners.get(known.owner) if known.owner else None
        if gone_ns is not None and event.ts_ns >= gone_ns:
            return  # a gone Pod's secret: its inode may be anybody's now
        ref.kind, ref.path, ref.host_path, ref.owner = known.kind, known.path, known.host_path, known.owner

    def container_seen(
        self, container_id: str, pid: int, mounts: Iterable[HostMount], cgroup_id: int = 0, pod_uid: str = ""
    ) -> None:
        """An event of a container's workload, or its runtime's pivot_root (not its runtime's
        other events: before pivot_root its view is the host's): register that container's
        view of the sensitive set, once,
        again when its host mounts or its Pod become known, and with a later process if the
        one asked for was gone."""
        mounts = tuple(mounts)
        owner = pod_uid or container_id
        asked = self._seen.get(container_id)
        if asked is not None and asked[0] > 0 and asked[1] == len(mounts) and asked[2] == owner:
            return
        self._seen[container_id] = (pid, len(mounts), owner)
        self._owners[container_id] = owner
        self._gone_owners.pop(owner, None)
        self._jobs.put((container_id, pid, mounts, cgroup_id, owner))
        self._wake.set()

    def registered(self, container_id: str, mounts: int) -> bool:
        """Whether the container's view, with this many host mounts, is in the kernel (and
        named here): its file events can be judged by identity now. A gone container's
        never will be any more than it is."""
        return container_id in self._gone or self._registered.get(container_id, -1) >= mounts

    def host_cgroup_seen(self, cgroup_id: int) -> None:
        """A monitored cgroup that is no container's: nothing to register, judged at once."""
        if cgroup_id in self._judged:
            return
        self._judged[cgroup_id] = None
        if len(self._judged) > MAX_GONE:
            del self._judged[next(iter(self._judged))]
        self._jobs.put(("", 0, (), cgroup_id, ""))
        self._wake.set()

    def container_gone(self, container_id: str, gone_ns: int = 0) -> None:
        """Its cgroup is gone: what it registered names nothing that happens from now on (at
        once, on the agent's thread), but still names its events from before, and is dropped
        from the kernel's maps (in the background)."""
        gone_ns = gone_ns or time.time_ns()
        self._gone[container_id] = gone_ns
        if len(self._gone) > MAX_GONE:
            del self._gone[next(iter(self._gone))]
        self._registered.pop(container_id, None)
        owner = self._owners.pop(container_id, container_id)
        if owner not in self._owners.values():  # the Pod's last container: its token goes too
            self._gone_owners[owner] = gone_ns
            if len(self._gone_owners) > MAX_GONE:
                del self._gone_owners[next(iter(self._gone_owners))]
        self._jobs.put((container_id, 0, (), 0, ""))
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Scan once now (start-up is not the hot path), then keep current in the background."""
        self.scan()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _run(self) -> None:
        while not self._loop.stopping.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._loop.stopping.is_set():
                return
            try:
                if self._due():
                    self.scan()
                else:
                    self._scan_changed(self._take_jobs())
            except Exception:  # a broken walk must not kill the thread
                log.exception("identity scan failed")

    def _take_jobs(self) -> set[str]:
        """The containers that appeared, changed or went, since the last call (host cgroups
        to mark judged are marked here)."""
        changed: set[str] = set()
        while True:
            try:
                container_id, pid, mounts, cgroup_id, owner = self._jobs.get_nowait()
            except queue.Empty:
                return changed
            if not container_id:
                if self.kernel is not None:
                    self.kernel.mark_judged(cgroup_id)
                continue
            if pid:
                self._containers[container_id] = _Container(pid, mounts, cgroup_id, owner or container_id)
            else:
                self._containers.pop(container_id, None)
                self._seen.pop(container_id, None)
            changed.add(container_id)

    def _due(self) -> bool:
        return time.monotonic() - self._last_scan >= self.interval_s

    # -- scanning -------------------------------------------------------------------

    def scan(self) -> None:
        """Rebuild everything (the host's part and every container's), then bring the kernel's
        maps to it."""
        self._last_scan = time.monotonic()
        self._take_jobs()
        known: dict[tuple[int, int], Known] = {}
        entries: dict[tuple[str, int, int], int] = {}
        runtime_inos: set[int] = set()
        root = self.host_root.rstrip("/")
        for path in self.sensitive_paths:
            for host_path, real, st, is_dir in _expand(root + path, path):
                kind = "host_dir" if is_dir else "host_file"
                _add(
                    known, entries, real, st, Known(kind, host_path, host_path), ID_DIR if is_dir else ID_FILE
                )
        for tgid, _identity in self._runtime(known, entries, runtime_inos):
            if self.kernel is not None:
                self.kernel.mark_runtime_task(tgid)
        self._host = (known, entries)
        self._scan_changed(set(self._containers) | set(self._parts), runtime_inos)
        self.scans += 1

    def _scan_changed(self, cids: set[str], runtime_inos: set[int] | None = None) -> None:
        """Rebuild these containers' parts (a gone one's is dropped), merge, apply; then the
        kernel judges their files, and their held events are released."""
        done: list[tuple[str, _Container]] = []
        for cid in cids:
            container = self._containers.get(cid)
            if cid in self._gone:  # its cgroup is gone: what it registered goes (retired)
                self._containers.pop(cid, None)
                self._retire(self._parts.pop(cid, None), self._gone[cid])
                continue
            if container is None:
                continue  # its view stays as last registered, until its cgroup goes
            part: tuple[dict, dict] = ({}, {})
            if os.path.exists(f"{self.proc}/{container.pid}"):
                self._scan_container(cid, container, *part)
            else:
                # Its process ended before the scan (a container that lives milliseconds):
                # a later process will be asked; meanwhile what its host mounts reach is
                # read from the host's side (the same files, on a node), and a view
                # registered before is kept.
                self._containers.pop(cid, None)
                self._seen[cid] = (0, len(container.mounts), container.owner)
                if cid in self._parts:
                    continue
                self._scan_host_side(container, *part)
            self._parts[cid] = part
            done.append((cid, container))
        known = dict(self._host[0])
        entries = dict(self._host[1])
        for part_known, part_entries in self._parts.values():
            for key, what in part_known.items():
                if what.kind == "token" or key not in known:  # whose token: see _add
                    known[key] = what
            entries.update(part_entries)
        self._known = known
        self._apply(entries, self._runtime_inos if runtime_inos is None else runtime_inos)
        for cid, container in done:
            if container.cgroup_id and self.kernel is not None:
                self.kernel.mark_judged(container.cgroup_id)
            if cid not in self._gone:
                self._registered[cid] = len(container.mounts)

    def _retire(self, part: tuple[dict, dict] | None, gone_ns: int) -> None:
        if part is None:
            return
        for key, what in part[0].items():
            self._retired.pop(key, None)  # newest last
            self._retired[key] = (what, gone_ns)
        while len(self._retired) > MAX_RETIRED:
            del self._retired[next(iter(self._retired))]

    def _scan_host_side(
        self,
        container: _Container,
        known: dict[tuple[int, int], Known],
        entries: dict[tuple[str, int, int], int],
    ) -> None:
        root = self.host_root.rstrip("/")
        for mount in container.mounts:
            for host_path, _inside in _reachable(mount, self.sensitive_paths):
                for found_host, real, st, is_dir in _expand(root + host_path, host_path):
                    what = Known("host_dir" if is_dir else "host_file", found_host, found_host)
                    _add(known, entries, real, st, what, ID_DIR if is_dir else ID_FILE)

    def _scan_container(
        self,
        cid: str,
        container: _Container,
        known: dict[tuple[int, int], Known],
        entries: dict[tuple[str, int, int], int],
    ) -> None:
        view = f"{self.proc}/{container.pid}/root"
        for mount in container.mounts:
            for host_path, inside in _reachable(mount, self.sensitive_paths):
                for found_host, real, st, is_dir in _expand(view + inside, host_path):
                    what = Known("host_dir" if is_dir else "host_file", found_host, found_host)
                    _add(known, entries, real, st, what, ID_DIR if is_dir else ID_FILE)
        for token_dir in TOKEN_DIRS:
            where = view + token_dir
            try:
                dir_st = os.stat(where)
            except OSError:
                continue
            _add(known, entries, where, dir_st, Known("token", token_dir, owner=container.owner), ID_DIR)
            try:
                names = os.listdir(where)
            except OSError:
                names = []
            for name in names:
                try:
                    st = os.stat(f"{where}/{name}")  # follows kubelet's ..data links
                except OSError:
                    continue
                is_dir = os.path.isdir(f"{where}/{name}")
                what = Known("token", f"{token_dir}/{name}", owner=container.owner)
                _add(known, entries, f"{where}/{name}", st, what, ID_DIR if is_dir else ID_FILE)

    def _runtime(
        self,
        known: dict[tuple[int, int], Known],
        entries: dict[tuple[str, int, int], int],
        inos: set[int],
    ) -> Iterator[tuple[int, tuple[int, int]]]:
        """Register the runtime's binaries; yield (pid, identity) of processes running one."""
        root = self.host_root.rstrip("/")
        ids: set[tuple[int, int]] = set()
        for path in self.runtime_binaries:
            try:
                st = os.stat(root + path)
            except OSError:
                continue
            ids.add((kernel_dev(st.st_dev), st.st_ino))
            known[(kernel_dev(st.st_dev), st.st_ino)] = Known("runtime", path)
        try:
            pids = [int(name) for name in os.listdir(self.proc) if name.isdigit()]
        except OSError:
            pids = []
        running: list[tuple[int, tuple[int, int]]] = []
        for pid in pids:
            try:
                st = os.stat(f"{self.proc}/{pid}/exe")
            except OSError:
                continue
            key = (kernel_dev(st.st_dev), st.st_ino)
            if key not in ids and self._host_runtime_process(pid):
                ids.add(key)  # a runtime installed where the list does not look
                known[key] = Known("runtime", _readlink(f"{self.proc}/{pid}/exe"))
            running.append((pid, key))
        for dev, ino in ids:
            entries[("runtime_ids", dev, ino)] = 1
            inos.add(ino)
        for pid, key in running:
            if key in ids:
                yield pid, key

    def _host_runtime_process(self, pid: int) -> bool:
        """A process with a runtime's name that runs outside every container: the host's own."""
        try:
            comm = Path(f"{self.proc}/{pid}/comm").read_text().strip()
            if comm not in RUNTIME_NAMES:
                return False
            return os.readlink(f"{self.proc}/{pid}/ns/mnt") == os.readlink(f"{self.proc}/self/ns/mnt")
        except OSError:
            return False

    def _apply(self, entries: dict[tuple[str, int, int], int], inos: set[int]) -> None:
        kernel = self.kernel
        if kernel is None:
            self._in_kernel, self._runtime_inos = entries, inos
            return
        for (table, dev, ino), value in entries.items():
            if self._in_kernel.get((table, dev, ino)) != value:
                kernel.set_identity(table, dev, ino, value)
        for table, dev, ino in self._in_kernel.keys() - entries.keys():
            kernel.forget_identity(table, dev, ino)
        for ino in inos - self._runtime_inos:
            kernel.set_runtime_ino(ino)
        self._in_kernel, self._runtime_inos = entries, inos

    @property
    def size(self) -> int:
        return len(self._in_kernel)


def _add(
    known: dict[tuple[int, int], Known],
    entries: dict[tuple[str, int, int], int],
    real: str,
    st: os.stat_result,
    what: Known,
    value: int,
) -> None:
    dev = kernel_dev(st.st_dev)
    # A container's own token wins over the host file the same inode is through a hostPath
    # of the kubelet's directory: whose secret it is decides "own" against "another's".
    if what.kind == "token" or (dev, st.st_ino) not in known:
        known[(dev, st.st_ino)] = Known(what.kind, what.path, what.host_path, what.owner, _generation(real))
    entries[("sensitive_ids", dev, st.st_ino)] = value


def _generation(path: str) -> int:
    """The file's i_generation, where its file system tells it (FS_IOC_GETVERSION), else 0."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(fd, FS_IOC_GETVERSION, bytes(8))[:4], "little")
    except OSError:
        return 0
    finally:
        os.close(fd)


def _reachable(mount: HostMount, sensitive: list[str]) -> Iterator[tuple[str, str]]:
    """(host path, path inside the container) of each sensitive prefix a host mount reaches:
    hostPath / at /host reaches /etc/shadow as /host/etc/shadow; hostPath /root/.ssh at /keys
    is sensitive as a whole."""
    host = mount.host_path.rstrip("/") + "/"
    inside = mount.container_path.rstrip("/")
    for path in sensitive:
        if path.startswith(host):
            yield path, inside + "/" + path[len(host) :]
        elif host.startswith(path):
            yield mount.host_path.rstrip("/") + "/", inside + "/"


Found = tuple[str, str, os.stat_result, bool]  # (its name, where it was found, stat, a directory)


def _expand(where: str, named: str) -> Iterator[Found]:
    """The files a sensitive prefix names, seen at `where` and named by `named`: a path
    ending in "/" is a directory and everything under it (bounded); a file is itself; a
    name prefix ("/etc/ssh/ssh_host_") is every file of its directory it starts."""
    if named.endswith("/"):
        yield from _walk(where.rstrip("/"), named.rstrip("/"))
        return
    try:
        st = os.stat(where)
    except FileNotFoundError:
        st = None
    except OSError:
        return
    if st is not None:
        is_dir = os.path.isdir(where)
        if is_dir:
            yield from _walk(where, named)
        else:
            yield named, where, st, False
        return
    directory, prefix = os.path.split(where)
    named_dir = os.path.dirname(named)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            try:
                yield f"{named_dir}/{name}", f"{directory}/{name}", os.stat(f"{directory}/{name}"), False
            except OSError:
                continue


def _walk(where: str, named: str) -> Iterator[Found]:
    try:
        st = os.stat(where)
    except OSError:
        return
    if not os.path.isdir(where):
        yield named, where, st, False
        return
    yield named + "/", where, st, True
    budget = MAX_WALK
    stack = [(where, named, 0)]
    while stack and budget > 0:
        real, shown, depth = stack.pop()
        try:
            with os.scandir(real) as it:
                children = list(it)
        except OSError:
            continue
        for child in children:
            if budget <= 0:
                return
            budget -= 1
            try:
                st = child.stat()  # follows links: kubelet's ..data, a key's symlink
            except OSError:
                continue
            is_dir = child.is_dir()
            yield f"{shown}/{child.name}" + ("/" if is_dir else ""), child.path, st, is_dir
            if is_dir and depth + 1 < MAX_DEPTH and not child.is_symlink():
                stack.append((child.path, f"{shown}/{child.name}", depth + 1))


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
