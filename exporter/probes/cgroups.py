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


def cgroup2_mounts(mountinfo_text: str) -> list[str]:
    """Mount points of cgroup2 in a mountinfo text (pure v2: /sys/fs/cgroup;
    hybrid: /sys/fs/cgroup/unified)."""
    return cgroup_mounts(mountinfo_text, ("cgroup2",))


def cgroup_mounts(mountinfo_text: str, fstypes: tuple[str, ...] = ("cgroup", "cgroup2")) -> list[str]:
    """Mount points of the given cgroup file system types in a mountinfo text."""
    out = []
    for line in mountinfo_text.splitlines():
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] in fstypes:
            out.append(_unescape(left.split(" ")[4]))
    return out


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def find_cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Path:
    """The cgroup v2 mount: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
        mounts = cgroup2_mounts(handle.read())
    if not mounts:
        raise FileNotFoundError(f"no cgroup2 mount in {mountinfo}: provex needs cgroup v2 (or hybrid)")
    return Path(mounts[0])


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
