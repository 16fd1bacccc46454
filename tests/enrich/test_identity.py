"""The identity registry: what files are, by device and inode, kept in the kernel's maps."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from exporter.enrich.identity import ID_DIR, ID_FILE, IdentityRegistry, kernel_dev
from exporter.model import Event, EventType, FileRef, HostMount


class Maps:
    """The probes' side, recorded."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, int, int], int] = {}
        self.inos: set[int] = set()
        self.tasks: set[int] = set()
        self.judged: set[int] = set()

    def set_identity(self, table: str, dev: int, ino: int, value: int = 1) -> None:
        self.ids[(table, dev, ino)] = value

    def forget_identity(self, table: str, dev: int, ino: int) -> None:
        del self.ids[(table, dev, ino)]

    def set_runtime_ino(self, ino: int) -> None:
        self.inos.add(ino)

    def mark_runtime_task(self, tgid: int) -> None:
        self.tasks.add(tgid)

    def mark_judged(self, cgroup_id: int) -> None:
        self.judged.add(cgroup_id)


def _key(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return kernel_dev(st.st_dev), st.st_ino


def _open(path: Path, container: str = "") -> Event:
    dev, ino = _key(path)
    from exporter.model import ContainerInfo

    return Event(
        id="e",
        type=EventType.OPEN,
        syscall="openat",
        ts_ns=1,
        pid=1,
        tid=1,
        path=str(path),
        file=FileRef(dev, ino, 0o100644),
        container=ContainerInfo(id=container) if container else None,
    )


def _host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc/shadow").write_text("root:x:1::::::\n")
    (root / "root/.ssh").mkdir(parents=True)
    (root / "root/.ssh/id_ed25519").write_text("key\n")
    (root / "etc/ssh").mkdir()
    (root / "etc/ssh/ssh_host_rsa_key").write_text("host key\n")
    (root / "etc/hostname").write_text("node\n")
    return root


def test_the_hosts_sensitive_files_are_registered_in_the_kernel_and_named(tmp_path):
    root = _host(tmp_path)
    maps = Maps()
    registry = IdentityRegistry(
        maps, ["/etc/shadow", "/root/.ssh/", "/etc/ssh/ssh_host_"], host_root=str(root), proc=str(tmp_path)
    )
    registry.scan()
    dev, ino = _key(root / "etc/shadow")
    assert maps.ids[("sensitive_ids", dev, ino)] == ID_FILE
    assert (
        maps.ids[("sensitive_ids", *_key(root / "root/.ssh"))] == ID_DIR
    )  # a new key in it is sensitive too
    assert maps.ids[("sensitive_ids", *_key(root / "root/.ssh/id_ed25519"))] == ID_FILE
    assert maps.ids[("sensitive_ids", *_key(root / "etc/ssh/ssh_host_rsa_key"))] == ID_FILE
    assert ("sensitive_ids", *_key(root / "etc/hostname")) not in maps.ids
    event = _open(root / "etc/shadow")
    registry.annotate(event)
    assert (event.file.kind, event.file.path, event.file.host_path) == (
        "host_file",
        "/etc/shadow",
        "/etc/shadow",
    )
    # Replaced (passwd renames a new file over it): the old identity leaves the kernel's maps.
    (root / "etc/shadow.new").write_text("root:y:1::::::\n")
    os.rename(root / "etc/shadow.new", root / "etc/shadow")
    registry.scan()
    assert ("sensitive_ids", dev, ino) not in maps.ids
    assert maps.ids[("sensitive_ids", *_key(root / "etc/shadow"))] == ID_FILE


def test_a_containers_token_is_its_own_and_nobody_elses_once_it_is_gone(tmp_path):
    """The container's view is /proc/<pid>/root: this test's own process, whose root is /, with
    the token under a temporary directory standing for /var/run/secrets/..."""
    proc = tmp_path / "proc"
    token_dir = tmp_path / "view/var/run/secrets/kubernetes.io/serviceaccount"
    token_dir.mkdir(parents=True)
    (token_dir / "token").write_text("eyJ.x\n")
    (proc / "4242").mkdir(parents=True)
    (proc / "4242/root").symlink_to(tmp_path / "view")
    maps = Maps()
    registry = IdentityRegistry(maps, [], host_root=str(tmp_path / "nohost"), proc=str(proc))
    registry.container_seen("c1", 4242, [])
    registry._scan_changed(registry._take_jobs())
    own, other = _open(token_dir / "token", "c1"), _open(token_dir / "token", "c2")
    registry.annotate(own)
    registry.annotate(other)
    assert (own.file.kind, own.file.owner) == ("token", "c1")
    assert other.file.owner == "c1"  # the reader is c2: another container's secret
    assert maps.ids[("sensitive_ids", *_key(token_dir))] == ID_DIR  # a rotated token lands below it
    registry.container_gone("c1", gone_ns=10)
    late = _open(token_dir / "token", "c3")
    late.ts_ns = 20
    registry.annotate(late)
    assert late.file.kind == ""  # its inode may be the next container's: it names nothing now
    registry._scan_changed(registry._take_jobs())
    assert ("sensitive_ids", *_key(token_dir / "token")) not in maps.ids
    # Its own events from before it went, still in the pipeline behind it, are named.
    before = _open(token_dir / "token", "c1")
    before.ts_ns = 9
    registry.annotate(before)
    assert (before.file.kind, before.file.owner) == ("token", "c1")


def test_a_reused_inode_number_with_another_generation_is_not_the_registered_file(tmp_path):
    root = _host(tmp_path)
    registry = IdentityRegistry(Maps(), ["/etc/shadow"], host_root=str(root), proc=str(tmp_path))
    registry.scan()
    known = registry.lookup(*_key(root / "etc/shadow"))
    assert known is not None
    event = _open(root / "etc/shadow")
    event.file.gen = (known.gen or 7) + 1  # what the kernel reads of a file reusing the number
    registry.annotate(event)
    if known.gen:  # the file system tells generations (ext4, xfs, btrfs)
        assert event.file.kind == ""
    else:  # it does not (tmpfs): the number is all there is
        assert event.file.kind == "host_file"


def test_the_runtimes_binaries_and_the_processes_running_them(tmp_path):
    maps = Maps()
    exe = Path(os.path.realpath(sys.executable))
    registry = IdentityRegistry(maps, [], [str(exe)], host_root="/", proc="/proc")
    registry.scan()
    assert ("runtime_ids", *_key(exe)) in {(t, d, i) for t, d, i in maps.ids}
    assert os.stat(exe).st_ino in maps.inos
    assert os.getpid() in maps.tasks  # this interpreter runs "the runtime's" binary


def _container_view(tmp_path: Path) -> tuple[Path, Path]:
    """/proc with process 7, whose root holds the host's shadow at /host/etc (a hostPath)."""
    proc = tmp_path / "proc"
    view = tmp_path / "view"
    (view / "host/etc").mkdir(parents=True)
    (view / "host/etc/shadow").write_text("root:x:1::::::\n")
    (proc / "7").mkdir(parents=True)
    (proc / "7/root").symlink_to(view)
    return proc, view


def test_a_container_seen_through_a_host_mount(tmp_path):
    """A hostPath /etc at /host/etc: the container's view of the host's shadow is registered
    with the host's path, wherever the mount's source really is (the lab's stand-in)."""
    proc, view = _container_view(tmp_path)
    registry = IdentityRegistry(Maps(), ["/etc/shadow"], host_root=str(tmp_path / "nohost"), proc=str(proc))
    registry.container_seen("c1", 7, [HostMount(host_path="/etc", container_path="/host/etc")])
    registry._scan_changed(registry._take_jobs())
    event = _open(view / "host/etc/shadow", "c1")
    registry.annotate(event)
    assert (event.file.kind, event.file.host_path) == ("host_file", "/etc/shadow")


def test_a_container_is_judged_by_the_kernel_once_its_view_is_registered(tmp_path):
    """Until then the kernel sends its reads up and the enrich stage holds its file events:
    `registered` answers for the host mounts it was asked with, and a host cgroup is judged
    at once."""
    proc, _view = _container_view(tmp_path)
    maps = Maps()
    registry = IdentityRegistry(maps, ["/etc/shadow"], host_root=str(tmp_path / "nohost"), proc=str(proc))
    registry.container_seen("c1", 7, [], cgroup_id=55)  # before its Pod (and mounts) are known
    assert not registry.registered("c1", 0)
    registry._scan_changed(registry._take_jobs())
    assert registry.registered("c1", 0) and maps.judged == {55}
    mount = HostMount(host_path="/etc", container_path="/host/etc")
    assert not registry.registered("c1", 1)  # its host mount is not in the kernel yet
    registry.container_seen("c1", 7, [mount], cgroup_id=55)
    registry._scan_changed(registry._take_jobs())
    assert registry.registered("c1", 1)
    registry.host_cgroup_seen(9)
    registry.host_cgroup_seen(9)  # once
    registry._take_jobs()
    assert maps.judged == {55, 9}
    registry.container_gone("c1")
    assert registry.registered("c1", 5)  # gone: nothing more will be registered, none waits


def test_a_container_that_ended_before_its_scan_is_registered_from_the_hosts_side(tmp_path):
    """A container that lives milliseconds: its /proc view is gone when the registry gets to
    it. Its host mounts reach the host's own files (on a node, the same inodes): registered
    from host_root, so its held events are released, named; and a view registered while it
    ran is not dropped when a later process is gone before its scan."""
    root = _host(tmp_path)
    proc = tmp_path / "proc"
    proc.mkdir()
    maps = Maps()
    registry = IdentityRegistry(maps, ["/etc/shadow"], host_root=str(root), proc=str(proc))
    mount = HostMount(host_path="/etc", container_path="/host/etc")
    registry.container_seen("c1", 4040, [mount], cgroup_id=66)  # no /proc/4040: it is gone
    registry._scan_changed(registry._take_jobs())
    assert registry.registered("c1", 1) and 66 in maps.judged
    event = _open(root / "etc/shadow", "c1")
    registry.annotate(event)
    assert (event.file.kind, event.file.host_path) == ("host_file", "/etc/shadow")
    registry.scan()  # a full rescan keeps it
    assert registry.lookup(*_key(root / "etc/shadow")) is not None and registry.registered("c1", 1)
    registry.container_gone("c1")
    registry._scan_changed(registry._take_jobs())
    assert "c1" not in registry._parts


def test_a_pods_token_is_every_one_of_its_containers_own(tmp_path):
    """kubelet mounts one token volume into each container of a Pod: the same file. A sidecar
    reading it reads its own Pod's token, not another container's; another Pod's container
    reading it reads someone else's. It names nothing once the Pod's last container is gone."""
    from exporter.model import ContainerInfo, PodInfo

    proc = tmp_path / "proc"
    token_dir = tmp_path / "kubelet/pods/uid-a/volumes/kubernetes.io~projected/kube-api-access-x"
    token_dir.mkdir(parents=True)
    (token_dir / "token").write_text("eyJ.x\n")
    view = tmp_path / "view/var/run/secrets/kubernetes.io"
    view.mkdir(parents=True)
    (view / "serviceaccount").symlink_to(token_dir)
    for pid in (11, 12):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "root").symlink_to(tmp_path / "view")
    registry = IdentityRegistry(Maps(), [], host_root=str(tmp_path / "nohost"), proc=str(proc))
    registry.container_seen("app", 11, [], 1, pod_uid="uid-a")
    registry.container_seen("sidecar", 12, [], 2, pod_uid="uid-a")
    registry._scan_changed(registry._take_jobs())

    def read_by(cid: str, pod_uid: str, ts_ns: int = 1) -> Event:
        event = _open(token_dir / "token")
        event.ts_ns = ts_ns
        event.container = ContainerInfo(id=cid, pod=PodInfo(uid=pod_uid, name="p", namespace="n"))
        registry.annotate(event)
        return event

    from exporter.taxonomy.fields import FIELDS

    for cid in ("app", "sidecar"):
        event = read_by(cid, "uid-a")
        assert event.file.owner == "uid-a"
        assert FIELDS["IsOwnSecret"].get(event) and not FIELDS["IsOtherContainerSecret"].get(event)
    stranger = read_by("web", "uid-b")
    assert FIELDS["IsOtherContainerSecret"].get(stranger) and not FIELDS["IsOwnSecret"].get(stranger)
    registry.container_gone("app", gone_ns=10)
    assert read_by("web", "uid-b", 20).file.owner == "uid-a"  # the sidecar still has it
    registry.container_gone("sidecar", gone_ns=30)
    assert read_by("web", "uid-b", 40).file.kind == ""  # the Pod is gone: its inode may be reused
    assert read_by("web", "uid-b", 25).file.owner == "uid-a"  # a read from before it went
