"""cgroup path -> container, cgroup id -> path (cache + background rescan), live check."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from exporter.enrich.cgroups import (
    CgroupResolver,
    ContainerRef,
    classify_cgroup_path,
    find_cgroup2_root,
)
from exporter.probes.cgroups import cgroup2_mounts

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "enrich"
C1 = "3f1e9c0b7a6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f"
C2 = "a5b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8"
UID = "5f0c8a7e-1d2b-4c3a-9e8f-0a1b2c3d4e5f"
UID_ = UID.replace("-", "_")
STATIC_UID = "6c7f3d2e1b0a9f8e7d6c5b4a39281706"

# (path as seen under the cgroup2 mount, expected (runtime, id, pod uid) or None), from real nodes.
SAMPLES: list[tuple[str, tuple[str, str, str] | None]] = [
    # kubelet, systemd driver, containerd
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{C1}.scope",
     ("containerd", C1, UID)),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{C1}.scope",
     ("containerd", C1, UID)),
    # guaranteed QoS has no QoS slice
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{C1}.scope", ("containerd", C1, UID)),
    # CRI-O, systemd driver, and crun's nested "container" cgroup
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{C2}.scope",
     ("cri-o", C2, UID)),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{C2}.scope/container",
     ("cri-o", C2, UID)),
    # cri-dockerd, systemd driver
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{C1}.scope",
     ("docker", C1, UID)),
    # kubelet, cgroupfs driver (runtime not in the path), all QoS classes; k3s uses this layout too
    (f"/kubepods/besteffort/pod{UID}/{C1}", ("", C1, UID)),
    (f"/kubepods/burstable/pod{UID}/{C1}", ("", C1, UID)),
    (f"/kubepods/pod{UID}/{C1}", ("", C1, UID)),
    # static (mirror) Pod: UID is a config hash
    (f"/kubepods/burstable/pod{STATIC_UID}/{C2}", ("", C2, STATIC_UID)),
    # kind / k3d: a kubelet inside a container, nested under the outer runtime's cgroup
    (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{C1}.scope", ("containerd", C1, UID)),
    (f"/docker/{C2}/kubepods/besteffort/pod{UID}/{C1}", ("", C1, UID)),
    # k3s rootless
    (f"/user.slice/user-1000.slice/user@1000.service/k3s-rootless.service/kubepods/burstable/pod{UID}/{C1}",
     ("", C1, UID)),
    # plain docker: cgroupfs and systemd drivers
    (f"/docker/{C1}", ("docker", C1, "")),
    (f"/system.slice/docker-{C1}.scope", ("docker", C1, "")),
    # podman: rootful systemd, rootless, cgroupfs, crun's nested cgroup
    (f"/machine.slice/libpod-{C2}.scope", ("podman", C2, "")),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{C2}.scope", ("podman", C2, "")),
    (f"/libpod_parent/libpod-{C2}", ("podman", C2, "")),
    (f"/machine.slice/libpod-{C2}.scope/container", ("podman", C2, "")),
    # nerdctl (containerd without Kubernetes)
    (f"/system.slice/nerdctl-{C1}.scope", ("containerd", C1, "")),
    # not containers: host services, Pod-level slices, the runtimes' monitors, the root
    ("/", None),
    ("/system.slice/containerd.service", None),
    ("/system.slice/kubelet.service", None),
    ("/user.slice/user-1000.slice/session-3.scope", None),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice", None),
    (f"/kubepods/besteffort/pod{UID}", None),
    (f"/machine.slice/libpod-conmon-{C2}.scope", None),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{C2}.scope", None),
    (f"/system.slice/{C1}", None),  # a bare id outside a known parent
    ("/docker/not-a-container-id", None),
]  # fmt: skip


@pytest.mark.parametrize(("path", "expected"), SAMPLES, ids=[p for p, _ in SAMPLES])
def test_classify_real_world_paths(path: str, expected: tuple[str, str, str] | None) -> None:
    ref = classify_cgroup_path(path)
    if expected is None:
        assert ref is None
    else:
        assert ref is not None
        assert (ref.runtime, ref.container_id, ref.pod_uid) == expected
        assert ref.cgroup_path == path


def test_sample_table_is_big_enough() -> None:
    assert sum(1 for _, e in SAMPLES if e is not None) >= 15


def test_cgroup2_mount_hybrid_and_pure() -> None:
    assert cgroup2_mounts((FIX / "mountinfo_host_hybrid.txt").read_text()) == ["/sys/fs/cgroup/unified"]
    assert cgroup2_mounts((FIX / "mountinfo_host_cgroup2_node.txt").read_text()) == ["/sys/fs/cgroup"]
    assert cgroup2_mounts("garbage line\n") == []


def _mkdirs(root: Path, rel: str) -> int:
    d = root / rel.lstrip("/")
    d.mkdir(parents=True)
    return os.stat(d).st_ino


def test_resolver_cache_and_background_rescan(tmp_path: Path) -> None:
    # Any directory tree has inodes: the walk is the same as on a cgroup2 mount.
    early = _mkdirs(tmp_path, f"/kubepods/besteffort/pod{UID}/{C1}")
    res = CgroupResolver(str(tmp_path), min_rescan_s=0.01)
    res.start()
    try:
        assert res.lookup(early) == f"/kubepods/besteffort/pod{UID}/{C1}"
        late = _mkdirs(tmp_path, f"/system.slice/docker-{C2}.scope")
        before = res.rescans
        # A miss answers at once (no walk on the caller's thread) ...
        assert res.lookup(late) is None
        # ... and the background thread learns the new cgroup.
        deadline = 200
        while res.lookup(late) is None and deadline:
            time.sleep(0.01)
            deadline -= 1
        assert res.lookup(late) == f"/system.slice/docker-{C2}.scope"
        assert res.rescans > before
        # An id that does not exist is looked for once, then remembered as missing for a while.
        assert res.lookup(999_999_999_999) is None
    finally:
        res.stop()


def test_resolver_without_cgroup2_answers_none() -> None:
    res = CgroupResolver(None)
    res.start()
    assert res.lookup(12345) is None
    res.stop()


def _live_cgroup_root() -> str:
    root = find_cgroup2_root("/proc/self/mountinfo")
    if root is None:
        pytest.skip("no cgroup2 mount in /proc/self/mountinfo")
    return root


@pytest.mark.containers
def test_live_cgroup_on_this_machine() -> None:
    """Create a kubelet-shaped cgroup under the real cgroup2 mount and resolve its id."""
    root = _live_cgroup_root()
    uid = str(uuid.UUID(int=0x0A1B2C3D_0000_4000_8000_00000000BEEF))
    cid = "e" * 64
    parts = ["kubepods", "besteffort", f"pod{uid}", cid]
    created: list[str] = []
    path = root
    try:
        for p in parts:
            path = os.path.join(path, p)
            if not os.path.isdir(path):
                os.mkdir(path)
                created.append(path)
        ino = os.stat(path).st_ino
        res = CgroupResolver(root)
        res.start()
        try:
            rel = res.lookup(ino)
            assert rel == "/" + "/".join(parts)
            assert classify_cgroup_path(rel) == ContainerRef(cid, "", uid, rel)
        finally:
            res.stop()
    finally:
        for d in reversed(created):
            os.rmdir(d)
