"""mountinfo parsing on real samples, and which container paths are host bind mounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.enrich.mountinfo import MountinfoError, host_bind_mounts, parse_mountinfo
from exporter.model import HostMount

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "enrich"


def _load(name: str):
    return parse_mountinfo((FIX / name).read_text(), name)


def test_parse_real_runc_container() -> None:
    entries = _load("mountinfo_runc_container.txt")
    assert len(entries) == 27
    root = entries[0]
    assert (root.mount_point, root.fstype, root.device) == ("/", "ext4", "254:0")
    cg = [e for e in entries if e.fstype == "cgroup"]
    assert cg and all(e.read_only for e in cg)


def test_runc_container_bind_mounts() -> None:
    mounts = host_bind_mounts(_load("mountinfo_runc_container.txt"), _load("mountinfo_host_hybrid.txt"))
    assert {m.container_path: m.host_path for m in mounts} == {
        "/data": "/tmp/provex-hostdata",
        "/etc/hostlogs": "/var/log",
    }
    assert [m.container_path for m in mounts] == sorted(m.container_path for m in mounts)


def test_k8s_container_bind_mounts_with_escapes_and_second_disk() -> None:
    mounts = host_bind_mounts(
        _load("mountinfo_k8s_containerd_container.txt"), _load("mountinfo_host_cgroup2_node.txt")
    )
    assert mounts == [
        HostMount(host_path="/home/admin dir", container_path="/data/with space"),
        HostMount(host_path="/var/log", container_path="/host/var/log", read_only=True),
        HostMount(host_path="/var/lib/containerd/run/data", container_path="/run/containerd", read_only=True),
    ]  # /etc/hosts & co. are runtime plumbing; tmpfs, proc, cgroup are not host paths


def test_bad_line_is_located() -> None:
    with pytest.raises(MountinfoError, match=r"sample:2: expected"):
        parse_mountinfo("22 1 259:1 / / rw - ext4 /dev/x rw\nnot a mountinfo line\n", "sample")
    with pytest.raises(MountinfoError, match=r"sample:1"):
        parse_mountinfo("x 1 259:1 / / rw - ext4 /dev/x rw\n", "sample")


def test_self_mountinfo_parses() -> None:
    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text(), "/proc/self/mountinfo")
    assert any(e.mount_point == "/" for e in entries)


def test_a_process_that_exited_is_not_an_error(tmp_path):
    """Reading a dying process's mountinfo fails with EINVAL: retried later, not warned about."""
    from exporter.enrich.mounts import MountResolver

    resolver = MountResolver(str(tmp_path))
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "mountinfo").write_text("")
    assert resolver.resolve_now("c1", 4242) is None  # /proc/4242 does not exist
    assert resolver.get("c1") is None  # nothing cached: a later event's pid will be tried


def test_a_short_lived_process_gives_way_to_its_parent(tmp_path):
    """`sysprobe` exits before its mounts are read: the parent (the container's shell) answers."""
    from exporter.enrich.mounts import MountResolver

    resolver = MountResolver(str(tmp_path))
    for pid in ("1", "10"):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "mountinfo").write_text("")
    resolver.request("c1", 4242, 10)  # not started: resolved in the caller's thread
    resolver.handle(("c1", 4242, 10))
    assert resolver.get("c1") == ()
