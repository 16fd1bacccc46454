"""Which paths of a container are host bind mounts, from /proc/<pid>/mountinfo.

Used when a container has no Pod (docker, podman, bare runc): the Pod's
hostPath volumes say it directly otherwise. A mount inside the container is
a host bind mount when its filesystem is one the host has mounted too (same
major:minor as a real, non-pseudo host filesystem); its host path is where
that filesystem is mounted on the host joined with the mount's root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.model import HostMount

# Filesystems that are not host storage: a mount of one is not a bind of a host path.
_PSEUDO_FS = {
    "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs",
    "debugfs", "tracefs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "rpc_pipefs",
    "binfmt_misc", "nsfs", "overlay", "shm", "ramfs", "efivarfs", "selinuxfs", "squashfs",
}  # fmt: skip
# Files every runtime binds in from its own state dir: plumbing, not a user's choice.
_RUNTIME_PLUMBING = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log"}


class MountinfoError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_id: int
    parent_id: int
    device: str  # "major:minor"
    root: str  # path inside the filesystem that is mounted here
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str, origin: str = "mountinfo") -> list[MountEntry]:
    """Parse proc(5) mountinfo; a malformed line raises MountinfoError naming origin:line."""
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        fields = left.split(" ")
        tail = right.split(" ")
        if not sep or len(fields) < 6 or len(tail) < 2:
            raise MountinfoError(
                f"{origin}:{lineno}: expected 'id parent maj:min root mnt opts ... - fs src', got {line!r}"
            )
        try:
            entries.append(
                MountEntry(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    device=fields[2],
                    root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    options=tuple(fields[5].split(",")),
                    fstype=tail[0],
                    source=_unescape(tail[1]),
                )
            )
        except ValueError as exc:
            raise MountinfoError(f"{origin}:{lineno}: {exc}: {line!r}") from exc
    return entries


def host_bind_mounts(container: list[MountEntry], host: list[MountEntry]) -> list[HostMount]:
    """The container's mounts that show a host path, as HostMount (sorted by container path)."""
    host_by_dev: dict[str, list[MountEntry]] = {}
    for h in host:
        if h.fstype not in _PSEUDO_FS:
            host_by_dev.setdefault(h.device, []).append(h)
    out: dict[str, HostMount] = {}
    for m in container:
        # "/" is the container's own rootfs (a host dir for bare runc), not a bind.
        if m.fstype in _PSEUDO_FS or m.mount_point in _RUNTIME_PLUMBING or m.mount_point == "/":
            continue
        candidates = host_by_dev.get(m.device)
        if not candidates:
            continue
        host_path = _host_path(m.root, candidates)
        if host_path is None:
            continue
        out[m.mount_point] = HostMount(
            host_path=host_path, container_path=m.mount_point, read_only=m.read_only
        )
    return [out[k] for k in sorted(out)]


def _host_path(root: str, candidates: list[MountEntry]) -> str | None:
    """Where `root` (a path inside a filesystem) is visible on the host."""
    best: MountEntry | None = None
    for h in candidates:
        if (root == h.root or root.startswith(h.root.rstrip("/") + "/")) and (
            best is None or len(h.root) > len(best.root)
        ):
            best = h
    if best is None:
        return None
    rest = root[len(best.root.rstrip("/")) :]
    base = best.mount_point.rstrip("/")
    return (base + rest) or "/"
