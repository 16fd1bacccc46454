"""Live: the real agent resolves a runc container at a kubelet-shaped cgroup path to its Pod."""

from __future__ import annotations

import hashlib
import time

import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from exporter.scenarios.runc import ContainerSpec, Runc
from tests.helpers.apiserver import FaultyApiServer, make_pod

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]


def ids(name: str) -> tuple[str, str]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    uid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    return uid, hashlib.sha256(f"ctr-{name}-{time.time_ns()}".encode()).hexdigest()


@pytest.fixture(scope="module")
def api():
    server = FaultyApiServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(api, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent")
    kubeconfig = api.write_kubeconfig(str(tmp / "kubeconfig"))
    process = Agent(tmp, "--kubeconfig", kubeconfig, "--node-name", "node-a")
    yield process
    assert_clean_exit(process.stop(), process.stderr_path)


@pytest.fixture(scope="module")
def runc(tmp_path_factory):
    runtime = Runc(tmp_path_factory.mktemp("runc"))
    yield runtime
    runtime.close()


def test_pod_known_before_the_container_starts(api, agent, runc):
    uid, cid = ids("web")
    api.add_pod(
        make_pod(
            "web-7d9f",
            uid,
            namespace="shop",
            containers=[("nginx", "registry.example/nginx:1.27", f"containerd://{cid}")],
            service_account="web",
            host_paths={"logs": "/var/log"},
            mounts={"nginx": [("logs", "/host/var/log", True)]},
        )
    )
    time.sleep(0.5)  # the watch delivers the Pod (the agent learns it asynchronously)
    run = runc.run(ContainerSpec(["cat", "/etc/passwd"], name="web", pod_uid=uid, container_id=cid))
    assert run.returncode == 0
    events = agent.wait_for(lambda evs: any(e.cgroup_id == run.cgroup_id and e.comm == "cat" for e in evs))
    read = next(e for e in events if e.cgroup_id == run.cgroup_id and e.path == "/etc/passwd")
    assert read.container is not None and read.container.id == cid
    assert read.container.pod is not None
    assert (read.container.pod.name, read.container.pod.namespace) == ("web-7d9f", "shop")
    assert read.container.pod.service_account == "web"
    assert (read.container.name, read.container.image) == ("nginx", "registry.example/nginx:1.27")
    assert [(m.host_path, m.container_path) for m in read.container.host_mounts] == [
        ("/var/log", "/host/var/log")
    ]
    assert not read.late


def test_pod_registered_after_the_container_started(api, agent, runc):
    uid, cid = ids("late")
    container = runc.start(
        ContainerSpec(
            ["/bin/sh", "-c", "cat /etc/hostname; sleep 2; cat /etc/passwd"],
            name="late",
            pod_uid=uid,
            container_id=cid,
        )
    )
    try:
        first = agent.wait_for(lambda evs: any(e.cgroup_id == container.cgroup_id for e in evs))
        early = [e for e in first if e.cgroup_id == container.cgroup_id]
        # Unknown Pod: the event went on after the enrichment wait, container-only and marked late.
        assert early and early[0].container is not None and early[0].container.id == cid
        assert early[0].late and early[0].container.pod is None
        api.add_pod(
            make_pod("late-0", uid, namespace="jobs", containers=[("job", "busybox", f"containerd://{cid}")])
        )
        container.process.wait(timeout=30)  # the script reads /etc/passwd two seconds in
    finally:
        run = container.stop(timeout=15)
    assert run.returncode == 0, run.stderr

    # (runc itself reads the container's /etc/passwd at start: the script's read is cat's.)
    def script_read(e):
        return e.cgroup_id == container.cgroup_id and e.path == "/etc/passwd" and e.comm == "cat"

    events = agent.wait_for(lambda evs: any(script_read(e) for e in evs))
    later = next(e for e in events if script_read(e))
    assert later.container is not None and later.container.pod is not None
    assert (later.container.pod.name, later.container.pod.namespace, later.container.name) == (
        "late-0",
        "jobs",
        "job",
    )
