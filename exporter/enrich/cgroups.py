"""cgroup id -> cgroup path -> container.

`bpf_get_current_cgroup_id()` is the inode number of the task's cgroup v2
directory. We keep a map inode -> path, built by walking the cgroup2 mount
off the hot path; a lookup that misses asks the background thread to rescan
and answers "unknown" at once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.enrich.metrics import CGROUP_MISSES, CGROUP_RESCANS
from exporter.enrich.worker import LoopThread
from exporter.probes.cgroups import find_cgroup2_mount

log = logging.getLogger("provex.enrich")

_HEX64 = r"[0-9a-f]{64}"
# Pod UIDs are UUIDs; systemd slices spell them with '_'; static (mirror) Pods
# use a 32-hex config hash.
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"

# One path component that names a container, innermost match wins.
# (regex, runtime). Sidecar monitors (crio-conmon-, libpod-conmon-) are not
# containers: they are excluded by the (?!conmon-) guards.
_CONTAINER_COMPONENTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"^cri-containerd-({_HEX64})\.scope$"), "containerd"),
    (re.compile(rf"^crio-(?!conmon-)({_HEX64})\.scope$"), "cri-o"),
    (re.compile(rf"^docker-({_HEX64})\.scope$"), "docker"),
    (re.compile(rf"^libpod-(?!conmon-)({_HEX64})(?:\.scope)?$"), "podman"),
    (re.compile(rf"^nerdctl-({_HEX64})\.scope$"), "containerd"),
]
_POD_COMPONENT = re.compile(rf"^(?:[a-z]+-)*kubepods(?:-[a-z]+)*-pod({_UID})\.slice$|^pod({_UID})$")
_BARE_ID = re.compile(rf"^({_HEX64})$")


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """What a cgroup path says about the container it belongs to."""

    container_id: str
    runtime: str  # "" when the layout does not tell (kubelet cgroupfs driver)
    pod_uid: str = ""  # with dashes; "" outside Kubernetes
    cgroup_path: str = ""


def classify_cgroup_path(path: str) -> ContainerRef | None:
    """Tell whether a cgroup v2 path (relative to the mount) is a container's.

    Pure and cheap: the kernel side uses it to fill the monitored-cgroups map.
    Nested cgroups inside a container (crio/crun `container` children, systemd
    in a container) belong to the innermost container above them.
    """
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        ref = _match_component(parts, i, part)
        if ref is not None:
            return ContainerRef(ref[0], ref[1], ref[2], "/" + "/".join(parts))
    return None


def _match_component(parts: list[str], i: int, part: str) -> tuple[str, str, str] | None:
    for pattern, runtime in _CONTAINER_COMPONENTS:
        m = pattern.match(part)
        if m:
            return m.group(1), runtime, _pod_uid_of(parts[i - 1]) if i > 0 else ""
    m = _BARE_ID.match(part)
    if m is None or i == 0:
        return None
    parent = parts[i - 1]
    uid = _pod_uid_of(parent)
    if uid:  # kubelet cgroupfs driver: /kubepods[/qos]/pod<uid>/<id>
        return m.group(1), "", uid
    if parent == "docker":
        return m.group(1), "docker", ""
    if parent == "libpod_parent":
        return m.group(1), "podman", ""
    return None


def _pod_uid_of(component: str) -> str:
    m = _POD_COMPONENT.match(component)
    if m is None:
        return ""
    return (m.group(1) or m.group(2)).replace("_", "-")


def find_cgroup2_root(mountinfo_path: str = "/proc/self/mountinfo") -> str | None:
    try:
        return str(find_cgroup2_mount(mountinfo_path))
    except FileNotFoundError:
        return None


def scan_cgroup_tree(root: str) -> dict[int, str]:
    """inode -> path (relative to root, leading '/') of every cgroup under root."""
    found: dict[int, str] = {}
    try:
        found[os.stat(root).st_ino] = "/"
    except OSError:
        return found
    stack = [(root, "")]
    while stack:
        real, rel = stack.pop()
        try:
            with os.scandir(real) as it:
                for entry in it:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    sub = f"{rel}/{entry.name}"
                    try:
                        found[entry.inode()] = sub
                    except OSError:
                        continue  # removed while we walked
                    stack.append((entry.path, sub))
        except OSError:
            continue
    return found


class CgroupResolver:
    """cgroup id -> path, from a cache; misses are resolved by a background rescan.

    `lookup` never touches the file system. Ids that stay unknown after a
    rescan are not rescanned for again before `min_rescan_s` has passed, so
    a stream of host cgroup ids cannot make the thread walk the tree nonstop.
    """

    def __init__(
        self,
        root: str | None,
        min_rescan_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.min_rescan_s = min_rescan_s
        self._clock = clock
        self._paths: dict[int, str] = {}
        self._wanted: set[int] = set()
        self._negative: dict[int, float] = {}  # id -> when it was last found missing
        self._wake = threading.Event()
        self._loop = LoopThread(self._run, "provex-cgroups", interrupt=self._wake.set, join_s=5)
        self._lock = threading.Lock()
        self.rescans = 0

    def start(self) -> None:
        """Scan once now (start-up is not the hot path), then rescan on demand."""
        self.rescan()
        if self.root is not None:
            self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def lookup(self, cgroup_id: int) -> str | None:
        path = self._paths.get(cgroup_id)
        if path is not None or cgroup_id == 0:
            return path
        CGROUP_MISSES.inc()
        seen = self._negative.get(cgroup_id)
        if seen is not None and self._clock() - seen < self.min_rescan_s:
            return None
        with self._lock:
            self._wanted.add(cgroup_id)
        self._wake.set()
        return None

    def remember(self, cgroup_id: int, path: str) -> None:
        """Teach the cache a mapping learnt elsewhere (e.g. from /proc/<pid>/cgroup)."""
        self._paths[cgroup_id] = path

    def rescan(self) -> None:
        if self.root is None:
            return
        fresh = scan_cgroup_tree(self.root)
        self.rescans += 1
        CGROUP_RESCANS.inc()
        # Swap the whole dict: readers see either the old or the new map.
        self._paths = fresh
        now = self._clock()
        with self._lock:
            wanted, self._wanted = self._wanted, set()
        for cid in wanted:
            if cid not in fresh:
                self._negative[cid] = now
        if len(self._negative) > 65536:  # bounded: forget the oldest half
            for cid, _ in sorted(self._negative.items(), key=lambda kv: kv[1])[:32768]:
                del self._negative[cid]

    def _run(self) -> None:
        while not self._loop.stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._loop.stopping.is_set():
                return
            try:
                self.rescan()
            except Exception:  # a broken walk must not kill the thread
                log.exception("cgroup rescan failed")
            # Coalesce bursts of misses into one walk per interval.
            self._loop.stopping.wait(self.min_rescan_s)
