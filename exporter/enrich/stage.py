"""The enrich stage: process, container and Pod identity for every event.

Implements the Enricher protocol of exporter.agent.pipeline. Every answer
comes from a cache; nothing here waits on I/O. An event whose identity is
still being resolved in the background (a cgroup not scanned yet, a Pod the
watch has not delivered, a container's mounts, a container's view of the
sensitive set not registered yet, for a file it opened) is parked for at most
`wait_ns` after it was pushed and then released marked `late`. Events of one
container (one cgroup) leave in the order they came.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from exporter.enrich.apiserver import ApiServerSet
from exporter.enrich.cgroups import CgroupResolver, ContainerRef, classify_cgroup_path
from exporter.enrich.fscontext import ContextReader
from exporter.enrich.identity import IdentityRegistry
from exporter.enrich.metrics import LATE, PARK_OVERFLOW, PARKED
from exporter.enrich.mounts import MountResolver
from exporter.enrich.pods import PodCache
from exporter.enrich.proctable import ProcEntry, ProcessTable
from exporter.enrich.redact import redact_argv
from exporter.model import ContainerInfo, Event, EventType

_UNCLASSIFIED = object()
CACHE_MAX = 65536  # cgroups remembered per cache
_NETWORK = (EventType.CONNECT, EventType.ACCEPT)
_JUDGED_BY_IDENTITY = (EventType.OPEN, EventType.EXEC)


# The comm of runc's init stages (runc:[0:PARENT], runc:[1:CHILD], runc:[2:INIT]).
RUNTIME_INIT_COMM = "runc:["


@dataclass(slots=True)
class _Parked:
    event: Event
    deadline_ns: int
    done: bool  # complete already, waits only to keep its container's order
    why: str = ""  # what it waits for: "cgroup", "pod", "mounts", "identity"


def _pivoted(event: Event) -> bool:
    return event.syscall == "pivot_root" and event.ret == 0


class EnrichStage:
    def __init__(
        self,
        *,
        cgroups: CgroupResolver,
        processes: ProcessTable,
        pods: PodCache | None = None,
        apiservers: ApiServerSet | None = None,
        mounts: MountResolver | None = None,
        contexts: ContextReader | None = None,
        identities: IdentityRegistry | None = None,
        wait_ms: int = 50,
        park_max: int = 10000,
        k8s_ready: Callable[[], bool] = lambda: True,
        lifecycle: list | None = None,
    ) -> None:
        if wait_ms < 0:
            raise ValueError(f"enrich.enrichment_wait_ms must be >= 0, got {wait_ms}")
        self.cgroups = cgroups
        self.processes = processes
        self.pods = pods
        self.apiservers = apiservers or ApiServerSet()
        self.mounts = mounts
        self.contexts = contexts
        self.identities = identities
        self.wait_ns = wait_ms * 1_000_000
        self.park_max = park_max
        self.k8s_ready = k8s_ready
        self._lifecycle = lifecycle or []  # things with start()/stop(), in start order
        self._ready: list[Event] = []
        self._parked: OrderedDict[int, deque[_Parked]] = OrderedDict()
        self._n_parked = 0
        # Bounded by LRU (a node's cgroups come and go): each one is refilled from its source.
        self._refs: LRUCache[int, ContainerRef | None] = LRUCache(CACHE_MAX)
        self._gave_up: LRUCache[int, bool] = LRUCache(CACHE_MAX)  # Pod did not come in time: no more waiting
        # cgroup id -> (pod cache generation, valid until now_ns, resolved ContainerInfo). The
        # ContainerInfo is shared by that container's events: downstream must not mutate it.
        self._memo: LRUCache[int, tuple[int, int, ContainerInfo]] = LRUCache(CACHE_MAX)
        self._anchors: LRUCache[str, int] = LRUCache(CACHE_MAX)  # container -> its first process seen

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        for part in self._lifecycle:
            part.start()

    def stop(self) -> None:
        for part in reversed(self._lifecycle):
            part.stop()

    # -- the Enricher protocol ---------------------------------------------
    def push(self, event: Event, now_ns: int) -> None:
        key = event.cgroup_id
        if event.container is not None or event.process is not None:
            # Enriched upstream (a replay): untouched but for redaction (idempotent), and
            # still behind its container's queue.
            if event.argv:
                event.argv = redact_argv(event.argv)
            if event.process is not None:
                event.process.argv = redact_argv(event.process.argv)
                event.process.parent_argv = redact_argv(event.process.parent_argv)
            self._enqueue(key, _Parked(event, now_ns, True), now_ns)
            return
        entry = self.processes.observe(event)
        if not entry.forked_in_stream and not entry.context_sent:
            self._send_context(entry, event, key, now_ns)
        if event.argv:
            # A successful exec already stored the redacted argv in the table.
            ok_exec = event.type is EventType.EXEC and event.ret >= 0
            event.argv = entry.argv if ok_exec else redact_argv(event.argv)
        event.process = self.processes.info(entry)
        if not event.ppid:
            event.ppid = event.process.ppid
        if event.type is EventType.CONNECT and event.daddr:
            event.dest_is_apiserver = self.apiservers.is_apiserver(event.daddr, event.dport)
        peer = event.daddr if event.type is EventType.CONNECT else event.saddr
        if peer and self.pods is not None and event.type in _NETWORK:
            event.peer_pod = self.pods.by_ip(peer)  # a Pod of this node at the other end
        why = self._resolve(event, now_ns)
        identities = self.identities
        if identities is not None:
            container = event.container
            # Its view of the sensitive set: asked for by its workload's events, or as soon as
            # the runtime's pivot_root has made it (the same process then runs the workload: a
            # container that lives milliseconds is still there to be read).
            if container is not None and (not event.by_runtime or _pivoted(event)):
                pod_uid = container.pod.uid if container.pod is not None else ""
                identities.container_seen(
                    container.id, event.pid, container.host_mounts, event.cgroup_id, pod_uid
                )
            why = why or self._judge_file(event)  # what the file is, by its identity
        park = _Parked(event, now_ns + self.wait_ns, not why, why)
        if why and self.wait_ns == 0:
            self._release_late(park)
            park.done = True
        self._enqueue(key, park, now_ns)

    def pop_ready(self, now_ns: int) -> list[Event]:
        if self._parked:
            self._release(now_ns, final=False)
        out, self._ready = self._ready, []
        return out

    def drain(self) -> list[Event]:
        self._release(0, final=True)
        out, self._ready = self._ready, []
        return out

    def identity(self, cgroup_id: int) -> ContainerInfo | None:
        """What the caches know of a cgroup's container (and Pod), without waiting: for
        reports about a container (e.g. one that floods), not for events."""
        ref = self._ref(cgroup_id)
        if not isinstance(ref, ContainerRef):
            return None
        info = ContainerInfo(id=ref.container_id, runtime=ref.runtime, cgroup_path=ref.cgroup_path)
        if ref.pod_uid and self.pods is not None:
            rec = self.pods.lookup(ref.container_id, ref.pod_uid)
            if rec is not None:
                info.pod = rec.info
        return info

    def forget_cgroup(self, cgroup_id: int) -> None:
        """The cgroup is gone: its container's entries in the caches go too (they would stay
        until their LRU bound under container churn)."""
        ref = self._refs.pop(cgroup_id, None)
        self._memo.pop(cgroup_id, None)
        self._gave_up.pop(cgroup_id, None)
        if isinstance(ref, ContainerRef):
            self._anchors.pop(ref.container_id, None)
            if self.mounts is not None:
                self.mounts.forget(ref.container_id)

    # -- internals -----------------------------------------------------------
    def _send_context(self, entry: ProcEntry, event: Event, key: int, now_ns: int) -> None:
        """Put the process's cwd and root (from /proc) into the stream before its event."""
        if entry.context is None and self.contexts is not None:
            entry.context = self.contexts.get(entry.pid)
            if entry.context is None and not entry.context_asked:
                entry.context_asked = True
                # runc init still stands in the host's tree: its pivot_root, in the stream, says
                # where the container's view begins.
                if not event.comm.startswith(RUNTIME_INIT_COMM):
                    self.contexts.request(entry.pid)
                    entry.context = self.contexts.get(entry.pid)
        if entry.context is None:
            return
        entry.context_sent = True
        cwd, root, read_ns = entry.context
        seed = Event(
            id=f"{event.id}-ctx",
            type=EventType.CONTEXT,
            syscall="procfs",
            ts_ns=min(read_ns, event.ts_ns),
            pid=event.pid,
            tid=event.pid,
            comm=event.comm,
            cgroup_id=event.cgroup_id,
            path=cwd,
            target=root,
        )
        self._enqueue(key, _Parked(seed, now_ns, True), now_ns)

    def _enqueue(self, key: int, p: _Parked, now_ns: int) -> None:
        q = self._parked.get(key)
        if q is None and p.done:
            self._ready.append(p.event)
            return
        if self._n_parked >= self.park_max:
            self._overflow()
            q = self._parked.get(key)
        if q is None:
            if p.done:
                self._ready.append(p.event)
                return
            q = self._parked[key] = deque()
        q.append(p)
        self._n_parked += 1
        PARKED.set(self._n_parked)

    def _overflow(self) -> None:
        # Release the head of the oldest queue: order within a container is kept.
        key, q = next(iter(self._parked.items()))
        head = q.popleft()
        self._n_parked -= 1
        if not head.done:
            PARK_OVERFLOW.inc()
            self._release_late(head, cause="overflow")
        self._ready.append(head.event)
        if not q:
            del self._parked[key]

    def _release(self, now_ns: int, final: bool) -> None:
        for key in list(self._parked):
            q = self._parked[key]
            while q:
                head = q[0]
                if not head.done:
                    head.why = self._resolve(head.event, now_ns) or self._judge_file(head.event)
                    if head.why:
                        if not final and now_ns < head.deadline_ns:
                            break
                        self._release_late(head)
                        if head.why == "pod":
                            self._gave_up[key] = True
                q.popleft()
                self._n_parked -= 1
                self._ready.append(head.event)
            if not q:
                del self._parked[key]
        PARKED.set(self._n_parked)

    def _release_late(self, p: _Parked, cause: str = "") -> None:
        p.event.late = True
        LATE.labels(cause or f"{p.why}_timeout").inc()
        if self.identities is not None and p.event.file is not None:
            self.identities.annotate(p.event)  # what is registered by now, if anything

    def _judge_file(self, event: Event) -> str:
        """Name the event's file by its identity; "identity" while its container's view of
        the sensitive set is still being registered (its first milliseconds: the kernel
        sent the read up for that reason), so the file is judged once it is."""
        identities = self.identities
        ref = event.file
        if identities is None or ref is None:
            return ""
        identities.annotate(event)
        container = event.container
        if (
            ref.kind
            or container is None
            or event.by_runtime
            or event.type not in _JUDGED_BY_IDENTITY
            or identities.registered(container.id, len(container.host_mounts))
        ):
            return ""
        return "identity"

    def _ref(self, cgroup_id: int) -> object:
        ref = self._refs.get(cgroup_id, _UNCLASSIFIED)
        if ref is _UNCLASSIFIED:
            path = self.cgroups.lookup(cgroup_id)
            if path is None:
                return _UNCLASSIFIED
            ref = classify_cgroup_path(path)
            self._refs[cgroup_id] = ref
        return ref

    def _resolve(self, event: Event, now_ns: int) -> str:
        """Fill what is known; return what is still missing ("" when complete)."""
        cgroup_id = event.cgroup_id
        if not cgroup_id:
            return ""
        gen = self.pods.generation if self.pods is not None else 0
        memo = self._memo.get(cgroup_id)
        if memo is not None and memo[0] == gen and now_ns < memo[1]:
            event.container = memo[2]
            return ""
        why = self._resolve_slow(event)
        if not why and event.container is not None and not event.late and self._mounts_settled(event):
            # Re-checked at least once a second of event time (e.g. a deleted Pod's grace ends).
            self._memo[cgroup_id] = (gen, now_ns + 1_000_000_000, event.container)
        return why

    def _mounts_settled(self, event: Event) -> bool:
        """Whether the container's host mounts are known (or not looked up at all): until
        then its identity is not memoised, so a later process's event asks for them."""
        if self.mounts is None or not self.mounts.running or event.container is None:
            return True
        return event.container.pod is not None or self.mounts.get(event.container.id) is not None

    def _resolve_slow(self, event: Event) -> str:
        ref = self._ref(event.cgroup_id)
        if ref is _UNCLASSIFIED:
            return "cgroup"
        if ref is None:
            if self.identities is not None:
                self.identities.host_cgroup_seen(event.cgroup_id)  # no container view to register
            return ""  # a host cgroup
        assert isinstance(ref, ContainerRef)
        info = event.container
        if info is None:
            info = event.container = ContainerInfo(
                id=ref.container_id, runtime=ref.runtime, cgroup_path=ref.cgroup_path
            )
        if ref.pod_uid and self.pods is not None:
            return self._fill_pod(event, ref, info)
        if self.mounts is not None and self.mounts.running:
            mounts = self.mounts.get(ref.container_id)
            if mounts is None:
                if event.comm.startswith(RUNTIME_INIT_COMM):
                    # runc init, before pivot_root, still sees the host's mount tree (the
                    # container's mounts under the bundle's rootfs): ask a later process.
                    return ""
                # The event's process, its parent, the container's first process: the first
                # still alive answers (a short-lived tool's mountinfo is often gone already).
                anchor = self._anchors.setdefault(ref.container_id, event.pid)
                self.mounts.request(ref.container_id, event.pid, event.ppid, anchor)
                return "mounts"
            info.host_mounts = list(mounts)
        return ""

    def _fill_pod(self, event: Event, ref: ContainerRef, info: ContainerInfo) -> str:
        assert self.pods is not None
        rec = self.pods.lookup(ref.container_id, ref.pod_uid)
        if rec is None:
            if event.cgroup_id in self._gave_up or not self.k8s_ready():
                # Pod did not come in time before, or the API is away: do not wait again.
                event.late = True
                LATE.labels("pod_unknown" if self.k8s_ready() else "k8s_unavailable").inc()
                return ""
            return "pod"
        self._gave_up.pop(event.cgroup_id, None)
        info.pod = rec.info
        spec = rec.container(ref.container_id)
        if spec is not None:
            info.name = spec.name
            info.image = spec.image
            info.runtime = info.runtime or spec.runtime
            info.host_mounts = list(spec.host_mounts)
        return ""
