"""Host mounts: which host path a container path reaches through the container's mounts.

Shared by the rule fields (`IsHostMount`, `HostMountPath`) and the provenance graph, which
resolves a container's paths before the rules read them.
"""

from __future__ import annotations

from exporter.model import HostMount


def host_mount_of(path: str, mounts: list[HostMount]) -> tuple[HostMount, str] | None:
    """The host mount an absolute container path lies in, and the host path it reaches.
    The longest matching container path wins (mounts nest)."""
    if not mounts or not path.startswith("/"):
        return None
    best: HostMount | None = None
    best_len = -1
    for mount in mounts:
        root = mount.container_path.rstrip("/") or "/"
        if (root == "/" or path == root or path.startswith(root + "/")) and len(root) > best_len:
            best, best_len = mount, len(root)
    if best is None:
        return None
    root = best.container_path.rstrip("/") or "/"
    rest = path if root == "/" else path[len(root) :]
    host = best.host_path.rstrip("/") + rest if rest else best.host_path
    return best, host or "/"
