from exporter.agent.live import HostMountPrefixes
from exporter.model import ContainerInfo, Event, EventType, HostMount


class FakeProbes:
    def __init__(self) -> None:
        self.prefixes: list[str] = []

    def add_path_prefix(self, prefix: str) -> None:
        self.prefixes.append(prefix)


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
