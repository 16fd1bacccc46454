"""End to end on this machine: a real runc container with a kubelet-shaped cgroup.

The event is synthetic (the kernel side is not part of this stage), but
everything it is resolved against is real: the cgroup2 directory and its
inode, the container's /proc/<pid>/mountinfo and bind mount, /proc for the
process table, and the Pod served by the API double.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config.schema import EnrichConfig
from exporter.enrich import build_enricher
from exporter.enrich.cgroups import find_cgroup2_root
from exporter.model import Event, EventType
from tests.helpers.apiserver import FaultyApiServer, make_pod

pytestmark = pytest.mark.containers


class Container:
    def __init__(self, name: str, pid: int, pod_uid: str, cid: str, host_dir: Path, cgroup_id: int) -> None:
        self.name, self.pid, self.pod_uid, self.cid = name, pid, pod_uid, cid
        self.host_dir, self.cgroup_id = host_dir, cgroup_id


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    root = find_cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 mount")
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    for d in ("proc", "dev", "sys", "data", "tmp"):
        (bundle / "rootfs" / d).mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", bundle / "rootfs" / "bin" / "busybox")
    host_dir = tmp_path / "hostdata"
    host_dir.mkdir()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    pod_uid = str(uuid.uuid4())
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    name = f"provex-enrich-{cid[:12]}"
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/busybox", "sleep", "60"]
    spec["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(host_dir), "options": ["rbind", "rw"]}
    )
    spec["linux"]["cgroupsPath"] = f"/kubepods/besteffort/pod{pod_uid}/{cid}"
    # runc spec keeps its default namespaces, a new network namespace among them: loopback only.
    (bundle / "config.json").write_text(json.dumps(spec))
    proc = subprocess.Popen(["runc", "run", name], cwd=bundle, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        pid = 0
        for _ in range(500):
            state = subprocess.run(["runc", "state", name], capture_output=True, text=True)
            if state.returncode == 0 and json.loads(state.stdout).get("status") == "running":
                pid = json.loads(state.stdout)["pid"]
                break
            time.sleep(0.01)
        assert pid, f"runc did not start: {proc.stderr.read1() if proc.poll() is not None else ''}"
        rel = f"/kubepods/besteffort/pod{pod_uid}/{cid}"
        cgroup_line = Path(f"/proc/{pid}/cgroup").read_text()
        assert f"0::{rel}" in cgroup_line, cgroup_line
        yield Container(name, pid, pod_uid, cid, host_dir, os.stat(root + rel).st_ino)
    finally:
        subprocess.run(["runc", "kill", name, "KILL"], capture_output=True)
        proc.wait(timeout=30)
        subprocess.run(["runc", "delete", "-f", name], capture_output=True)
        # runc leaves the Pod-level parents it created: remove ours (empty) in every hierarchy.
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            pod_dir = hierarchy / "kubepods" / "besteffort" / f"pod{pod_uid}"
            if pod_dir.is_dir():
                for child in pod_dir.iterdir():
                    if child.is_dir():
                        child.rmdir()
                pod_dir.rmdir()


def _event(c: Container) -> Event:
    return Event(id="live-1", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=c.pid, tid=c.pid,
                 cgroup_id=c.cgroup_id, path="/data/x")  # fmt: skip


def _pop_until(stage, now_ns: int, count: int = 1, timeout: float = 10.0) -> list[Event]:
    deadline = time.monotonic() + timeout
    out: list[Event] = []
    while len(out) < count and time.monotonic() < deadline:
        out += stage.pop_ready(now_ns)
        time.sleep(0.01)
    return out


def test_real_container_without_pod_gets_identity_and_bind_mounts(container: Container) -> None:
    stage = build_enricher(EnrichConfig(kubernetes=False, enrichment_wait_ms=10_000), env={})
    stage.start()
    try:
        stage.push(_event(container), 0)
        seed, out = _pop_until(stage, 1, count=2)  # long before the deadline: resolved, not late
        # The container started before the stage: its context, read from /proc, comes first,
        # as paths inside the container.
        assert (seed.type, seed.pid, seed.path, seed.target) == (EventType.CONTEXT, container.pid, "/", "/")
        assert not out.late
        assert out.container.id == container.cid
        assert out.container.cgroup_path == f"/kubepods/besteffort/pod{container.pod_uid}/{container.cid}"
        assert out.process.exe.endswith("busybox")  # from /proc at start-up
        assert out.process.argv == ["/bin/busybox", "sleep", "60"]
        mounts = {m.container_path: m.host_path for m in out.container.host_mounts}
        assert mounts == {"/data": str(container.host_dir)}
    finally:
        stage.stop()


def test_real_container_with_its_pod_from_the_api(container: Container, tmp_path: Path) -> None:
    api = FaultyApiServer().start()
    try:
        api.add_pod(make_pod("live", container.pod_uid, namespace="prod",
                             containers=[("app", "busybox:1.36", f"containerd://{container.cid}")],
                             host_paths={"data": str(container.host_dir)},
                             mounts={"app": [("data", "/data", False)]}))  # fmt: skip
        conf = EnrichConfig(kubeconfig=api.write_kubeconfig(str(tmp_path / "kc")), node_name="node-a")
        stage = build_enricher(conf, env={})
        stage.start()
        try:
            deadline = time.monotonic() + 10
            while not stage.k8s_ready() and time.monotonic() < deadline:
                time.sleep(0.01)
            stage.push(_event(container), 0)
            _seed, out = stage.pop_ready(0)
            assert not out.late
            c = out.container
            assert (c.id, c.runtime, c.name, c.image) == (container.cid, "containerd", "app", "busybox:1.36")
            assert (c.pod.name, c.pod.namespace, c.pod.uid) == ("live", "prod", container.pod_uid)
            assert [(m.host_path, m.container_path) for m in c.host_mounts] == [
                (str(container.host_dir), "/data")
            ]
        finally:
            stage.stop()
    finally:
        api.stop()
