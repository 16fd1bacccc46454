"""Which cgroups the kernel side reports: finding container cgroups on the host.

The in-kernel filter reports a cgroup when it, or one of its ancestors, is in
the monitored map. Container parents such as `kubepods` go in once (every
Pod below them is covered from its first syscall); containers outside such a
parent (docker, podman under system.slice / machine.slice) are added as they
appear, from cgroup_mkdir records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

# A path component that holds only containers below it.
_CONTAINER_PARENTS = re.compile(
    r"^(kubepods(\.slice)?|kubepods-[a-z]+\.slice|docker|libpod_parent|lxc\.payload\..*)$"
)
# A path component that is one container's own cgroup.
_CONTAINER_LEAF = re.compile(
    r"^((docker|crio|cri-containerd|libpod|containerd|cri-dockerd)-[0-9a-f]{12,}(\.scope)?|[0-9a-f]{64})$"
)


def is_container_cgroup(relpath: str) -> bool:
    """Whether a cgroup path (relative to the cgroup2 mount) belongs to containers."""
    parts = [p for p in relpath.split("/") if p]
    return any(_CONTAINER_PARENTS.match(p) or _CONTAINER_LEAF.match(p) for p in parts)


def find_cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Path:
    """The cgroup v2 mount: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)."""
    with open(mountinfo) as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return Path(left.split(" ")[4])
    raise FileNotFoundError("no cgroup2 mount in /proc/self/mountinfo: provex needs cgroup v2 (or hybrid)")


def walk_container_cgroups(root: Path, max_depth: int = 8) -> Iterator[tuple[int, str]]:
    """(cgroup id, relative path) of the top-most container cgroups under root."""
    stack = [(root, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            relpath = "/" + os.path.relpath(entry.path, root)
            if is_container_cgroup(relpath):
                yield entry.inode(), relpath
            elif depth < max_depth:
                stack.append((Path(entry.path), depth + 1))
