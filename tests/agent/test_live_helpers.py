from exporter.agent.flood import FloodReporter, Pressure
from exporter.agent.live import HostMountPrefixes, sensitive_in_mount
from exporter.config.schema import ProbesConfig
from exporter.model import ContainerInfo, Event, EventType, HostMount, PodInfo


class FakeProbes:
    def __init__(self) -> None:
        self.config = ProbesConfig()
        self.prefixes: list[str] = []
        self.sensitive: list[str] = []

    def add_path_prefix(self, prefix: str, sensitive: bool = False) -> None:
        (self.sensitive if sensitive else self.prefixes).append(prefix)


def event(mounts: list[HostMount]) -> Event:
    return Event(
        id="e", type=EventType.OPEN, syscall="openat", ts_ns=1, pid=1, tid=1,
        container=ContainerInfo(id="c", host_mounts=mounts),
    )  # fmt: skip


def test_host_mounts_widen_the_kernel_path_filter_once_each():
    probes = FakeProbes()
    widen = HostMountPrefixes(probes)  # type: ignore[arg-type]
    data = HostMount(host_path="/etc", container_path="/data/")
    widen(event([data, HostMount(host_path="/var/log", container_path="/logs")]))
    widen(event([data]))
    widen(Event(id="h", type=EventType.OPEN, syscall="openat", ts_ns=2, pid=2, tid=2))  # host: nothing
    assert probes.prefixes == ["/data/", "/logs/"]
    # /etc reaches the host's secrets: their paths through the mount are never sampled away
    assert probes.sensitive == ["/data/shadow", "/data/gshadow", "/data/sudoers", "/data/ssh/ssh_host_",
                                "/data/kubernetes/"]  # fmt: skip


def test_sensitive_paths_through_a_host_mount():
    sensitive = ["/etc/shadow", "/root/.ssh/", "/var/lib/kubelet/"]
    assert sensitive_in_mount("/", "/host", sensitive) == ["/host/etc/shadow", "/host/root/.ssh/",
                                                           "/host/var/lib/kubelet/"]  # fmt: skip
    assert sensitive_in_mount("/root/.ssh", "/keys", sensitive) == ["/keys/"]  # inside a sensitive dir
    assert sensitive_in_mount("/var/log", "/logs", sensitive) == []


def test_pressure_engages_on_lag_and_lets_go_after_keeping_up():
    calls: list[bool] = []
    valve = Pressure(calls.append, on_ms=50, off_ms=10, on_after=2, off_after=3)
    ms = 1_000_000
    for lag in (60 * ms, 5 * ms, 60 * ms):  # a single slow drain is not a lag
        valve.update(lag)
    assert calls == []
    valve.update(70 * ms)
    assert calls == [True] and valve.on
    for lag in (5 * ms, 5 * ms, 20 * ms, 5 * ms, 5 * ms):  # must keep up off_after drains in a row
        valve.update(lag)
    assert calls == [True]
    valve.update(1 * ms)
    assert calls == [True, False] and not valve.on


def test_flood_reporter_names_the_container_once_per_interval(caplog):
    counts = {7: (100, 0, 0)}
    pod = PodInfo(uid="u", name="noisy-0", namespace="shop")
    reporter = FloodReporter(lambda: dict(counts), lambda cg: ContainerInfo(id=f"c{cg}", pod=pod))
    assert reporter.report() == {"c7": 100}
    assert reporter.report() == {}  # nothing new: nothing said
    counts[7] = (250, 4, 6)  # sampled, summarized (decisive, past its budget), repeated reads
    counts[8] = (3, 0, 0)
    assert reporter.report() == {"c7": 160, "c8": 3}
    lines = [r for r in caplog.records if r.getMessage().startswith("container flooding")]
    assert [(r.fields["container"], r.fields["sampled"], r.fields["summarized"], r.fields["repeated"])
            for r in lines] == [("c7", 100, 0, 0), ("c7", 150, 4, 6), ("c8", 3, 0, 0)]  # fmt: skip
    assert all(r.fields["pod"] == "noisy-0" for r in lines)


def test_flood_reporter_waits_one_interval_for_an_unresolved_cgroup():
    known: dict[int, ContainerInfo] = {}
    reporter = FloodReporter(lambda: {9: (5, 0, 0)}, known.get)
    assert reporter.report() == {}  # not resolved yet: its rescan gets one interval
    known[9] = ContainerInfo(id="c9")
    assert reporter.report() == {"c9": 5}  # counted from the start, under its name


def test_flood_reporter_names_an_unknown_cgroup_by_id_after_waiting():
    reporter = FloodReporter(lambda: {9: (5, 0, 0)}, lambda cg: None)
    assert reporter.report() == {}
    assert reporter.report() == {"cgroup:9": 5}
    assert FloodReporter(lambda: {9: (5, 0, 0)}, lambda cg: None).report(final=True) == {"cgroup:9": 5}
