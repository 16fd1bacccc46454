"""The Pods of this node: parsed from API JSON, cached by Pod UID and container id.

Live Pods sit in a TTL cache (refreshed by the watch and by periodic
relists); a deleted Pod moves to a grace cache so that events still in
flight when it went away resolve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cachetools import TTLCache

from exporter.enrich.metrics import K8S_PODS
from exporter.model import HostMount, PodInfo


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    name: str
    image: str = ""
    runtime: str = ""  # from the status containerID scheme: containerd, cri-o, docker
    host_mounts: tuple[HostMount, ...] = ()


@dataclass(frozen=True, slots=True)
class PodRecord:
    uid: str
    info: PodInfo
    by_name: dict[str, ContainerSpec] = field(default_factory=dict)
    by_id: dict[str, ContainerSpec] = field(default_factory=dict)  # runtime container id -> spec

    def container(self, container_id: str) -> ContainerSpec | None:
        spec = self.by_id.get(container_id)
        if spec is None and len(self.by_name) == 1:
            # One container only: the status may not carry its id yet.
            spec = next(iter(self.by_name.values()))
        return spec


_RUNTIME_SCHEMES = {"containerd": "containerd", "cri-o": "cri-o", "docker": "docker"}


class PodFormatError(ValueError):
    pass


def pod_from_json(obj: object) -> PodRecord:
    """A PodRecord from one v1 Pod object; raises PodFormatError on a non-Pod."""
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise PodFormatError(f"expected a Pod object with metadata, got {str(obj)[:120]!r}")
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    uid = meta.get("uid")
    if not isinstance(uid, str) or not uid:
        raise PodFormatError(f"Pod {meta.get('namespace')}/{meta.get('name')}: metadata.uid missing")
    labels = meta.get("labels") or {}
    ips: list[str] = []
    if not spec.get("hostNetwork"):  # a hostNetwork Pod's addresses are the node's: no join key
        for entry in [{"ip": status.get("podIP")}, *(status.get("podIPs") or [])]:
            ip = entry.get("ip") if isinstance(entry, dict) else None
            if isinstance(ip, str) and ip and ip not in ips:
                ips.append(ip)
    info = PodInfo(
        uid=uid,
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or ""),
        node=str(spec.get("nodeName", "")),
        ips=ips,
    )
    host_paths: dict[str, str] = {}
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict) and isinstance(vol.get("hostPath"), dict):
            host_paths[str(vol.get("name"))] = str(vol["hostPath"].get("path", ""))
    by_name: dict[str, ContainerSpec] = {}
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict) or "name" not in c:
                continue
            mounts = []
            for vm in c.get("volumeMounts") or []:
                if isinstance(vm, dict) and vm.get("name") in host_paths:
                    host = host_paths[vm["name"]]
                    sub = vm.get("subPath") or ""
                    mounts.append(
                        HostMount(
                            host_path=f"{host.rstrip('/')}/{sub}" if sub else host,
                            container_path=str(vm.get("mountPath", "")),
                            read_only=bool(vm.get("readOnly", False)),
                        )
                    )
            mounts.sort(key=lambda m: m.container_path)
            by_name[c["name"]] = ContainerSpec(str(c["name"]), str(c.get("image", "")), "", tuple(mounts))
    by_id: dict[str, ContainerSpec] = {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if not isinstance(cs, dict):
                continue
            scheme, sep, cid = str(cs.get("containerID") or "").partition("://")
            if not sep or not cid:
                continue
            base = by_name.get(str(cs.get("name")))
            by_id[cid] = ContainerSpec(
                name=str(cs.get("name", "")),
                image=base.image if base else str(cs.get("image", "")),
                runtime=_RUNTIME_SCHEMES.get(scheme, scheme),
                host_mounts=base.host_mounts if base else (),
            )
    return PodRecord(uid=uid, info=info, by_name=by_name, by_id=by_id)


class PodCache:
    """Thread-safe: the watch thread writes, the event loop reads."""

    def __init__(
        self,
        ttl_s: float = 3600.0,
        grace_s: float = 60.0,
        maxsize: int = 65536,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._by_uid: TTLCache[str, PodRecord] = TTLCache(maxsize, ttl_s, timer=timer)
        self._by_cid: TTLCache[str, PodRecord] = TTLCache(maxsize * 4, ttl_s, timer=timer)
        self._gone_uid: TTLCache[str, PodRecord] = TTLCache(maxsize, grace_s, timer=timer)
        self._gone_cid: TTLCache[str, PodRecord] = TTLCache(maxsize * 4, grace_s, timer=timer)
        # Pod IP -> the live Pod that has it (this node's Pods: the watch's field selector),
        # and a deleted Pod's for the grace period, for the peer of a connect or an accept.
        self._by_ip: dict[str, PodRecord] = {}
        self._gone_ip: TTLCache[str, PodRecord] = TTLCache(maxsize, grace_s, timer=timer)
        self.synced = False  # a list has succeeded at least once
        self.generation = 0  # bumped on every change: lets readers retry cheaply

    def lookup(self, container_id: str, pod_uid: str) -> PodRecord | None:
        with self._lock:
            for cache, key in (
                (self._by_cid, container_id),
                (self._by_uid, pod_uid),
                (self._gone_cid, container_id),
                (self._gone_uid, pod_uid),
            ):
                if key:
                    rec = cache.get(key)
                    if rec is not None:
                        return rec
        return None

    def by_ip(self, ip: str) -> PodInfo | None:
        """The Pod of this node that has address `ip` (a dict lookup: never waits on I/O)."""
        with self._lock:
            rec = self._by_ip.get(ip)
            if rec is not None and self._by_uid.get(rec.uid) is not rec:
                rec = None  # expired from the cache without a delete: not known any more
            rec = rec or self._gone_ip.get(ip)
        return rec.info if rec is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_uid)

    def upsert(self, rec: PodRecord) -> None:
        with self._lock:
            self._put(rec)
            self.generation += 1

    def delete(self, rec: PodRecord) -> None:
        with self._lock:
            self._retire(rec)
            self.generation += 1

    def replace_all(self, records: Iterable[PodRecord]) -> None:
        """A fresh list: Pods missing from it are treated as deleted.

        The lock is taken per Pod, so a reader never waits for a whole relist.
        """
        fresh = {r.uid: r for r in records}
        with self._lock:
            gone = [old for uid, old in self._by_uid.items() if uid not in fresh]
        for old in gone:
            with self._lock:
                self._retire(old)
        for rec in fresh.values():
            with self._lock:
                self._put(rec)
        with self._lock:
            self.synced = True
            self.generation += 1

    def _put(self, rec: PodRecord) -> None:
        old = self._by_uid.get(rec.uid)
        if old is not None:
            for cid in old.by_id:
                if cid not in rec.by_id:
                    self._by_cid.pop(cid, None)
        self._by_uid[rec.uid] = rec
        for cid in rec.by_id:
            self._by_cid[cid] = rec
        if old is not None:
            self._drop_ips(old, keep=rec.info.ips)
        for ip in rec.info.ips:  # the newest Pod with an address has it (addresses are reused)
            self._by_ip[ip] = rec
            self._gone_ip.pop(ip, None)
        self._gone_uid.pop(rec.uid, None)
        K8S_PODS.set(len(self._by_uid))

    def _retire(self, rec: PodRecord) -> None:
        current = self._by_uid.pop(rec.uid, None) or rec
        # Keep the richer record (the last one we had may know more container ids).
        merged = {**current.by_id, **rec.by_id}
        for cid in merged:
            self._by_cid.pop(cid, None)
            self._gone_cid[cid] = rec
        self._gone_uid[rec.uid] = rec
        self._drop_ips(current, keep=())
        for ip in current.info.ips or rec.info.ips:
            if ip not in self._by_ip:
                self._gone_ip[ip] = current
        K8S_PODS.set(len(self._by_uid))

    def _drop_ips(self, rec: PodRecord, keep: Iterable[str]) -> None:
        for ip in set(rec.info.ips) - set(keep):
            if ip in self._by_ip and self._by_ip[ip].uid == rec.uid:
                del self._by_ip[ip]
