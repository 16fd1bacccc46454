"""The enrich stage: identity from caches, bounded waits, order per container, degrade."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from exporter.config.schema import EnrichConfig
from exporter.enrich import build_enricher
from exporter.enrich.apiserver import ApiServerSet
from exporter.enrich.cgroups import CgroupResolver
from exporter.enrich.mounts import MountResolver
from exporter.enrich.pods import PodCache, pod_from_json
from exporter.enrich.proctable import ProcEntry, ProcessTable
from exporter.enrich.stage import EnrichStage
from exporter.model import ContainerInfo, Event, EventType, HostMount, PodInfo
from tests.enrich.conftest import metric
from tests.helpers.apiserver import FaultyApiServer, make_pod

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "enrich"
MS = 1_000_000
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
C1, C2, CD = "1" * 64, "2" * 64, "d" * 64
# cgroup ids (inode numbers) of a few cgroups
HOST, POD1, POD2, DOCKER, NEW = 10, 11, 12, 13, 14
PATHS = {
    HOST: "/system.slice/sshd.service",
    POD1: f"/kubepods/besteffort/pod{U1}/{C1}",
    POD2: f"/kubepods.slice/kubepods-pod{U2.replace('-', '_')}.slice/cri-containerd-{C2}.scope",
    DOCKER: f"/docker/{CD}",
}
T0 = 1_000_000_000_000


def pod1() -> dict:
    return make_pod(
        "web", U1, namespace="shop", containers=[("nginx", "nginx:1.27", f"containerd://{C1}")],
        host_paths={"logs": "/var/log"}, mounts={"nginx": [("logs", "/host/logs", True)]},
        service_account="web-sa",
    )  # fmt: skip


class Rig:
    def __init__(self, wait_ms: int = 50, park_max: int = 100, ready: bool = True, mounts=None) -> None:
        self.cgroups = CgroupResolver(None)
        for cid, path in PATHS.items():
            self.cgroups.remember(cid, path)
        self.pods = PodCache()
        self.procs = ProcessTable()
        self.procs.put(ProcEntry(pid=1, exe="/sbin/init"))
        self.ready = ready
        self.stage = EnrichStage(
            cgroups=self.cgroups, processes=self.procs, pods=self.pods,
            apiservers=ApiServerSet(["10.96.0.1:443", "192.168.1.10"]), mounts=mounts,
            wait_ms=wait_ms, park_max=park_max, k8s_ready=lambda: self.ready,
        )  # fmt: skip
        self.n = 0

    def ev(
        self, cgroup: int, type_: EventType = EventType.OPEN, pid: int = 100, ppid: int = 1, **kw
    ) -> Event:
        self.n += 1
        return Event(
            id=f"e{self.n}", type=type_, syscall=type_.value, ts_ns=T0 + self.n, pid=pid, tid=pid,
            ppid=ppid, cgroup_id=cgroup, **kw,
        )  # fmt: skip


def ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


def test_host_event_passes_at_once_with_process_identity() -> None:
    r = Rig()
    e = r.ev(HOST, EventType.EXEC, path="/usr/bin/curl", argv=["curl", "-H", "Authorization: Bearer x"])
    r.stage.push(e, T0)
    (out,) = r.stage.pop_ready(T0)
    assert out.container is None and not out.late
    assert out.argv == ["curl", "-H", "Authorization: ***"]
    assert out.process.exe == "/usr/bin/curl" and out.process.argv == out.argv
    assert out.process.ancestors == ["/sbin/init"]


def test_known_pod_enriches_at_once() -> None:
    r = Rig()
    r.pods.upsert(pod_from_json(pod1()))
    r.stage.push(r.ev(POD1), T0)
    (out,) = r.stage.pop_ready(T0)
    assert not out.late
    assert out.container == ContainerInfo(
        id=C1, runtime="containerd", cgroup_path=PATHS[POD1], name="nginx", image="nginx:1.27",
        pod=PodInfo(uid=U1, name="web", namespace="shop", labels={"app": "web"},
                    service_account="web-sa", node="node-a"),
        host_mounts=[HostMount(host_path="/var/log", container_path="/host/logs", read_only=True)],
    )  # fmt: skip


def test_unknown_pod_waits_exactly_the_configured_time_then_goes_late() -> None:
    r = Rig(wait_ms=50)
    late = metric("provex_enrich_late_total", cause="pod_timeout")
    r.stage.push(r.ev(POD1), T0)
    assert r.stage.pop_ready(T0) == []
    assert r.stage.pop_ready(T0 + 50 * MS - 1) == []
    (out,) = r.stage.pop_ready(T0 + 50 * MS)
    assert out.late and out.container.id == C1 and out.container.pod is None
    assert metric("provex_enrich_late_total", cause="pod_timeout") == late + 1
    # The Pod did not come in time: later events of that container do not wait again ...
    r.stage.push(r.ev(POD1), T0 + 60 * MS)
    (out,) = r.stage.pop_ready(T0 + 60 * MS)
    assert out.late
    # ... until it is known, when they are enriched at once.
    r.pods.upsert(pod_from_json(pod1()))
    r.stage.push(r.ev(POD1), T0 + 70 * MS)
    (out,) = r.stage.pop_ready(T0 + 70 * MS)
    assert not out.late and out.container.pod.name == "web"


def test_pod_arriving_within_the_wait_resolves_parked_events_in_order() -> None:
    r = Rig(wait_ms=50)
    a, b = r.ev(POD1), r.ev(POD1)
    host = r.ev(HOST)
    r.stage.push(a, T0)
    r.stage.push(b, T0 + 10 * MS)
    r.stage.push(host, T0 + 10 * MS)
    assert ids(r.stage.pop_ready(T0 + 10 * MS)) == [host.id]  # other containers do not wait
    r.pods.upsert(pod_from_json(pod1()))
    out = r.stage.pop_ready(T0 + 20 * MS)
    assert ids(out) == [a.id, b.id]
    assert all(not e.late and e.container.pod.uid == U1 for e in out)


def test_order_per_container_is_kept_even_for_complete_events() -> None:
    r = Rig(wait_ms=50)
    first = r.ev(POD1)
    r.stage.push(first, T0)
    r.pods.upsert(pod_from_json(pod1()))  # now a new event would be complete at once ...
    second = r.ev(POD1)
    replayed = r.ev(POD1, container=ContainerInfo(id=C1))
    r.stage.push(second, T0 + 1)
    r.stage.push(replayed, T0 + 2)
    # ... but neither may overtake the first.
    assert ids(r.stage.pop_ready(T0 + 2)) == [first.id, second.id, replayed.id]


def test_giving_up_on_a_container_releases_its_queue() -> None:
    r = Rig(wait_ms=50)
    a, b = r.ev(POD2), r.ev(POD2)
    r.stage.push(a, T0)
    r.stage.push(b, T0 + 30 * MS)
    assert r.stage.pop_ready(T0 + 50 * MS - 1) == []
    # a's deadline passed: its Pod is given up on, and b (same container) need not wait longer.
    assert ids(r.stage.pop_ready(T0 + 50 * MS)) == [a.id, b.id]
    assert a.late and b.late


def test_already_enriched_events_pass_untouched() -> None:
    r = Rig()
    info = ContainerInfo(id="x" * 64, runtime="containerd", pod=PodInfo(uid=U2, name="replayed"))
    e = r.ev(POD1, container=info, late=True)
    r.stage.push(e, T0)
    (out,) = r.stage.pop_ready(T0)
    assert out is e and out.container is info and out.process is None and out.late
    assert len(r.procs) == 1  # the process table is not fed from replayed identity


def test_api_unavailable_means_container_only_without_waiting() -> None:
    r = Rig(ready=False)
    r.stage.push(r.ev(POD1), T0)
    (out,) = r.stage.pop_ready(T0)
    assert out.late and out.container.id == C1 and out.container.pod is None


def test_wait_zero_never_parks() -> None:
    r = Rig(wait_ms=0)
    r.stage.push(r.ev(POD1), T0)
    (out,) = r.stage.pop_ready(T0)
    assert out.late and out.container.id == C1
    with pytest.raises(ValueError, match="enrichment_wait_ms"):
        Rig(wait_ms=-1)


def test_park_is_bounded_and_overflow_is_counted() -> None:
    r = Rig(park_max=3)
    before = metric("provex_enrich_park_overflow_total")
    evs = [r.ev(POD1), r.ev(POD2), r.ev(POD1), r.ev(POD2)]
    for i, e in enumerate(evs):
        r.stage.push(e, T0 + i)
    # The fourth push released the oldest parked event (head of the oldest queue), late.
    out = r.stage.pop_ready(T0 + 4)
    assert ids(out) == [evs[0].id] and out[0].late
    assert metric("provex_enrich_park_overflow_total") == before + 1
    assert metric("provex_enrich_parked") == 3
    assert ids(r.stage.drain()) == [evs[2].id, evs[1].id, evs[3].id]
    assert metric("provex_enrich_parked") == 0


def test_unknown_cgroup_waits_for_the_background_scan() -> None:
    r = Rig(wait_ms=50)
    e = r.ev(NEW)
    r.stage.push(e, T0)
    assert r.stage.pop_ready(T0 + 1) == []
    r.cgroups.remember(NEW, f"/system.slice/docker-{C2}.scope")  # what the rescan would find
    (out,) = r.stage.pop_ready(T0 + 2)
    assert out.container.id == C2 and out.container.runtime == "docker" and not out.late
    # One that never shows up goes on late, without a container.
    f = r.ev(NEW + 1)
    r.stage.push(f, T0)
    (out,) = r.stage.pop_ready(T0 + 50 * MS)
    assert out.late and out.container is None


def test_connect_to_the_api_server_is_flagged() -> None:
    r = Rig()
    cases = [("10.96.0.1", 443, True), ("10.96.0.1", 80, False), ("192.168.1.10", 6443, True),
             ("::ffff:10.96.0.1", 443, True), ("127.0.0.1", 443, False)]  # fmt: skip
    for daddr, dport, _ in cases:
        r.stage.push(r.ev(HOST, EventType.CONNECT, family=2, daddr=daddr, dport=dport), T0)
    assert [e.dest_is_apiserver for e in r.stage.pop_ready(T0)] == [c[2] for c in cases]


def test_the_peer_of_a_connect_or_an_accept_is_named_when_it_is_a_pod_of_this_node() -> None:
    r = Rig()
    r.pods.upsert(pod_from_json(pod1()))
    r.pods.upsert(pod_from_json(make_pod("db", U2, namespace="shop", pod_ips=["10.244.1.9"])))
    r.stage.push(r.ev(POD1, EventType.CONNECT, daddr="10.244.1.9", dport=5432, family=2), T0)
    r.stage.push(r.ev(POD1, EventType.ACCEPT, saddr="10.244.1.9", sport=40000, family=2), T0)
    r.stage.push(r.ev(POD1, EventType.ACCEPT, saddr="10.244.2.3", sport=40001, family=2), T0)
    to_db, from_db, from_elsewhere = r.stage.pop_ready(T0)
    assert to_db.peer_pod.name == "db" and from_db.peer_pod.uid == U2
    assert from_elsewhere.peer_pod is None  # another node's Pod: that node's agent knows it


def test_fork_exec_lineage_through_the_stage() -> None:
    r = Rig()
    r.pods.upsert(pod_from_json(pod1()))
    r.stage.push(r.ev(POD1, EventType.EXEC, pid=100, path="/bin/sh", argv=["sh"]), T0)
    r.stage.push(r.ev(POD1, EventType.FORK, pid=100, child_pid=101), T0)
    r.stage.push(r.ev(POD1, EventType.EXEC, pid=101, ppid=100, path="/usr/bin/cat", argv=["cat", "tok"]), T0)
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    r.stage.push(r.ev(POD1, EventType.OPEN, pid=101, ppid=100, path=token), T0)
    out = r.stage.pop_ready(T0)
    assert out[-1].process.exe == "/usr/bin/cat"
    assert out[-1].process.ancestors == ["/bin/sh", "/sbin/init"]
    assert out[-1].container.pod.name == "web"


def test_container_without_pod_gets_mounts_from_mountinfo(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, name in (("1", "mountinfo_host_hybrid.txt"), ("4242", "mountinfo_runc_container.txt")):
        (proc / pid).mkdir(parents=True)
        shutil.copy(FIX / name, proc / pid / "mountinfo")
    mounts = MountResolver(str(proc))
    mounts.start()
    try:
        r = Rig(mounts=mounts)
        e = r.ev(DOCKER, pid=4242)
        r.stage.push(e, T0)
        deadline = time.monotonic() + 10
        while mounts.get(CD) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        (out,) = r.stage.pop_ready(T0 + 1)  # resolved before the deadline: not late
        assert not out.late and out.container.runtime == "docker"
        assert {m.container_path: m.host_path for m in out.container.host_mounts} == {
            "/data": "/tmp/provex-hostdata",
            "/etc/hostlogs": "/var/log",
        }
    finally:
        mounts.stop()


# -- against the API double, through build_enricher -----------------------------------


def _build(api: FaultyApiServer, tmp_path: Path, **cfg) -> EnrichStage:
    kc = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    conf = EnrichConfig(kubeconfig=kc, node_name="node-a", resync_backoff_max_s=0.1, **cfg)
    return build_enricher(conf, env={}, cgroup_root=str(tmp_path / "nocgroup"), proc=str(tmp_path / "noproc"))


def _start(stage: EnrichStage) -> None:
    stage.start()
    for cid, path in PATHS.items():  # after start: its first scan replaces the map
        stage.cgroups.remember(cid, path)


def _wait(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        time.sleep(0.01)
    return bool(pred())


def test_pod_added_before_and_after_and_deleted_in_flight(api: FaultyApiServer, tmp_path: Path) -> None:
    api.add_pod(pod1())
    stage = _build(api, tmp_path)
    _start(stage)
    try:
        assert _wait(stage.k8s_ready)
        assert stage.apiservers.is_apiserver("127.0.0.1", api.port)  # the kubeconfig server
        assert _wait(lambda: stage.apiservers.is_apiserver("10.96.0.1", 443))  # the Service
        r = Rig()
        before = r.ev(POD1)
        stage.push(before, T0)
        # Added after the container's first event, within the wait:
        after = r.ev(POD2)
        stage.push(after, T0)
        api.add_pod(make_pod("job", U2, containers=[("main", "busybox:1", f"containerd://{C2}")]))
        assert _wait(lambda: stage.pods.lookup(C2, U2) is not None)
        out = stage.pop_ready(T0 + 1)
        assert {e.id: (e.container.pod.name, e.container.name, e.late) for e in out} == {
            before.id: ("web", "nginx", False),
            after.id: ("job", "main", False),
        }
        # Deleted while events are still in flight: the grace period keeps it resolvable.
        api.delete_pod(U2)
        assert _wait(lambda: len(stage.pods) == 1)
        inflight = r.ev(POD2)
        stage.push(inflight, T0 + 2)
        (out,) = stage.pop_ready(T0 + 2)
        assert out.container.pod.name == "job" and not out.late
    finally:
        stage.stop()


def test_slow_api_server_does_not_slow_delivery(api: FaultyApiServer, tmp_path: Path) -> None:
    api.add_pod(pod1())
    stage = _build(api, tmp_path, enrichment_wait_ms=50, park_max=5000)
    _start(stage)
    try:
        assert _wait(stage.k8s_ready)
        api.delay_s = 3.0  # every request from now on sleeps before it is answered
        api.drop_watches()  # the watcher reconnects into the slow server
        assert _wait(lambda: api.sleeping > 0)
        r = Rig()
        n = 2000
        for i in range(n):
            stage.push(r.ev(POD1 if i % 2 else POD2), T0 + i)
        first = stage.pop_ready(T0 + n)
        # Known Pod: delivered at once; unknown Pod: exactly at its deadline, late, none lost.
        assert len(first) == n // 2 and all(e.container.pod.name == "web" for e in first)
        rest = stage.pop_ready(T0 + (n - 1) + 50 * MS)
        assert len(rest) == n // 2 and all(e.late and e.container.id == C2 for e in rest)
        assert api.sleeping > 0, "the server answered already: the test did not overlap a slow request"
    finally:
        api.delay_s = 0
        stage.stop()


def test_no_kubernetes_configured_is_container_only(tmp_path: Path) -> None:
    stage = build_enricher(EnrichConfig(), env={}, cgroup_root=str(tmp_path), proc=str(tmp_path / "noproc"))
    assert stage.pods is None
    stage.cgroups.remember(POD1, PATHS[POD1])
    stage.push(Rig().ev(POD1), T0)
    (out,) = stage.pop_ready(T0)
    assert out.container.id == C1 and out.container.pod is None


def test_bad_static_apiserver_address_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"enrich.apiserver_addresses: 'nope:1' is not allowed; expected IP, IP:PORT"
    ):
        build_enricher(EnrichConfig(kubernetes=False, apiserver_addresses=["nope:1"]), env={})


def test_api_down_at_start_up_degrades_then_recovers(tmp_path: Path) -> None:
    api = FaultyApiServer().start()
    api.add_pod(pod1())
    kc = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    api.stop()  # down before the agent starts
    conf = EnrichConfig(kubeconfig=kc, node_name="node-a", resync_backoff_max_s=0.05)
    stage = build_enricher(conf, env={}, cgroup_root=str(tmp_path / "none"), proc=str(tmp_path / "none"),
                           sync_timeout_s=0.2)  # fmt: skip
    _start(stage)  # returns after the bounded wait for a first list
    try:
        assert not stage.k8s_ready()
        r = Rig()
        stage.push(r.ev(POD1), T0)
        (out,) = stage.pop_ready(T0)  # no waiting while the API is away
        assert out.late and out.container.id == C1 and out.container.pod is None
        api.start()  # same port
        assert _wait(stage.k8s_ready)
        stage.push(r.ev(POD1), T0 + 1)
        (out,) = stage.pop_ready(T0 + 1)
        assert not out.late and out.container.pod.name == "web"
    finally:
        stage.stop()
        api.stop()


class Registry:
    """The identity registry's side the stage uses, with registration in the test's hands."""

    def __init__(self) -> None:
        self.named: dict[tuple[int, int], str] = {}
        self.done: dict[str, int] = {}
        self.seen: list[tuple[str, int]] = []
        self.host_cgroups: list[int] = []

    def annotate(self, event: Event) -> None:
        path = self.named.get((event.file.dev, event.file.ino))
        if path:
            event.file.kind, event.file.host_path = "host_file", path

    def container_seen(self, cid: str, pid: int, mounts, cgroup_id: int = 0, pod_uid: str = "") -> None:
        self.seen.append((cid, cgroup_id))

    def registered(self, cid: str, mounts: int) -> bool:
        return self.done.get(cid, -1) >= mounts

    def host_cgroup_seen(self, cgroup_id: int) -> None:
        self.host_cgroups.append(cgroup_id)


def test_a_file_read_before_its_container_is_registered_waits_to_be_judged_by_identity() -> None:
    """The kernel sends a new container's reads up until its view of the sensitive set is in
    the kernel; the stage holds them (bounded) so they are named once it is."""
    from exporter.model import FileRef

    r = Rig(wait_ms=50)
    registry = r.stage.identities = Registry()
    r.pods.upsert(pod_from_json(pod1()))
    read = r.ev(POD1, file=FileRef(7, 1001, 0o100644), path="/opt/cfg/shadow", verdict="unjudged")
    r.stage.push(read, T0)
    assert registry.seen == [(C1, POD1)]  # registration asked for, with the cgroup to mark
    assert r.stage.pop_ready(T0 + MS) == []  # held: its file cannot be judged yet
    registry.named[(7, 1001)] = "/etc/shadow"
    registry.done[C1] = 1  # its one host mount is registered
    (out,) = r.stage.pop_ready(T0 + 2 * MS)
    assert (out.file.kind, out.file.host_path, out.late) == ("host_file", "/etc/shadow", False)
    # Registered: the next read is judged at once.
    r.stage.push(r.ev(POD1, file=FileRef(7, 5, 0o100644), path="/tmp/x"), T0 + 3 * MS)
    (out,) = r.stage.pop_ready(T0 + 3 * MS)
    assert out.file.kind == "" and not out.late
    # The host's cgroups have no view to register: marked judged at once, nothing waits.
    r.stage.push(r.ev(HOST, file=FileRef(7, 6, 0o100644), path="/etc/hosts"), T0 + 4 * MS)
    assert len(r.stage.pop_ready(T0 + 4 * MS)) == 1 and registry.host_cgroups == [HOST]


def test_a_registration_that_never_lands_costs_the_wait_and_no_event() -> None:
    from exporter.model import FileRef

    r = Rig(wait_ms=50)
    late = metric("provex_enrich_late_total", cause="identity_timeout")
    r.stage.identities = Registry()
    r.pods.upsert(pod_from_json(pod1()))
    r.stage.push(r.ev(POD1, file=FileRef(7, 1001, 0o100644), path="/opt/cfg/shadow"), T0)
    r.stage.push(r.ev(POD1, EventType.CONNECT, daddr="10.0.0.1", dport=80), T0 + MS)  # behind it
    assert r.stage.pop_ready(T0 + 49 * MS) == []
    first, second = r.stage.pop_ready(T0 + 50 * MS)
    assert first.late and first.file.kind == ""  # released as it is, marked late
    assert second.type is EventType.CONNECT  # the container's order kept
    assert metric("provex_enrich_late_total", cause="identity_timeout") == late + 1
