"""Build the enrich stage from its config section."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from exporter.config.schema import EnrichConfig, node_name
from exporter.enrich.apiserver import ApiServerRefresher, ApiServerSet
from exporter.enrich.cgroups import CgroupResolver, find_cgroup2_root
from exporter.enrich.fscontext import ContextReader
from exporter.enrich.identity import IdentityRegistry
from exporter.enrich.kubeclient import KubeClient, resolve_auth, server_addresses
from exporter.enrich.mounts import MountResolver
from exporter.enrich.pods import PodCache
from exporter.enrich.proctable import ProcessTable
from exporter.enrich.stage import EnrichStage
from exporter.enrich.watcher import PodWatcher
from exporter.logs import RateLimitedWarning

log = logging.getLogger("provex.enrich")


class _ProcLoader:
    """Start-up fill of the process table (a lifecycle part, so tests can skip it)."""

    def __init__(self, table: ProcessTable, proc: str, cgroup_root: str | None) -> None:
        self.table, self.proc, self.cgroup_root = table, proc, cgroup_root

    def start(self) -> None:
        boot_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        n = self.table.load_proc(self.proc, boot_ns=boot_ns, cgroup_root=self.cgroup_root)
        log.info("process table loaded from /proc", extra={"fields": {"processes": n}})

    def stop(self) -> None:
        pass


class _FirstSync:
    """Start-up waits (bounded) for the first Pod list, so the first events find their Pods."""

    def __init__(self, watcher: PodWatcher, timeout_s: float) -> None:
        self.watcher, self.timeout_s = watcher, timeout_s

    def start(self) -> None:
        if self.timeout_s > 0 and not self.watcher.connected.wait(self.timeout_s):
            log.warning(
                "no Pod list from the API server yet: starting with container-only enrichment",
                extra={"fields": {"waited_s": self.timeout_s, "server": self.watcher.client.auth.server}},
            )

    def stop(self) -> None:
        pass


def build_enricher(
    cfg: EnrichConfig,
    env: Mapping[str, str] | None = None,
    *,
    proc: str = "/proc",
    mountinfo: str = "/proc/self/mountinfo",
    cgroup_root: str | None = None,
    sync_timeout_s: float = 5.0,
    identities: IdentityRegistry | None = None,
) -> EnrichStage:
    """The enrich stage for `cfg`; nothing runs until `.start()`.

    Raises KubeConfigError (naming file and key) for an unusable kubeconfig,
    ValueError for a bad `apiserver_addresses` entry. No kubeconfig and no
    in-cluster account with `kubernetes: true` is not an error: container-only
    enrichment, logged once. `start()` waits at most `sync_timeout_s` for the
    first Pod list (start-up, not the hot path).
    """
    env = os.environ if env is None else env
    root = cgroup_root or find_cgroup2_root(mountinfo)
    cgroups = CgroupResolver(root)
    processes = ProcessTable(cfg.process_table_max, cfg.lineage_depth)
    try:
        apiservers = ApiServerSet(cfg.apiserver_addresses)
    except ValueError as exc:
        raise ValueError(f"enrich.apiserver_addresses: {exc}") from None
    mounts = MountResolver(proc)
    contexts = ContextReader(proc)
    lifecycle: list = [cgroups, _ProcLoader(processes, proc, root), mounts, contexts]
    if identities is not None:
        lifecycle.append(identities)
    pods: PodCache | None = None
    watcher: PodWatcher | None = None
    if cfg.kubernetes:
        auth = resolve_auth(cfg.kubeconfig, env)
        if auth is None:
            log.warning(
                "no kubeconfig and no in-cluster service account: container-only enrichment",
                extra={"fields": {"hint": "set enrich.kubeconfig or KUBECONFIG, or run in a Pod"}},
            )
        else:
            node = node_name(cfg.node_name, environ=env)
            client = KubeClient(auth)
            apiservers.set_source("kubeconfig", server_addresses(auth))
            pods = PodCache(ttl_s=cfg.pod_cache_ttl_s, grace_s=cfg.deleted_pod_grace_s)
            warn = RateLimitedWarning(log)
            watcher = PodWatcher(
                client,
                pods,
                node,
                resync_s=cfg.pod_cache_ttl_s / 2,
                backoff_max_s=cfg.resync_backoff_max_s,
                warn=warn,
            )
            lifecycle += [
                watcher,
                ApiServerRefresher(client, apiservers, warn=warn),
                _FirstSync(watcher, sync_timeout_s),
            ]
    ready = watcher.connected.is_set if watcher is not None else (lambda: False)
    return EnrichStage(
        cgroups=cgroups,
        processes=processes,
        pods=pods,
        apiservers=apiservers,
        mounts=mounts,
        contexts=contexts,
        identities=identities,
        wait_ms=cfg.enrichment_wait_ms,
        park_max=cfg.park_max,
        k8s_ready=ready,
        lifecycle=lifecycle,
    )
