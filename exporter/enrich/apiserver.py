"""Which (ip, port) pairs are "the Kubernetes API server".

Sources: the configured server URL, the `kubernetes` Service in `default`
(its ClusterIP and ports), its Endpoints (the real API server addresses),
and `enrich.apiserver_addresses` ("ip" = any port, "ip:port", "[v6]:port").
The set is swapped whole, so `is_apiserver` is a lock-free read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from exporter.enrich.kubeclient import KubeClient
from exporter.enrich.metrics import APISERVER_REFRESH_ERRORS
from exporter.enrich.watcher import classify_error
from exporter.enrich.worker import LoopThread
from exporter.logs import RateLimitedWarning
from exporter.model.addresses import normalize_ip, parse_ip_port

log = logging.getLogger("provex.enrich")


class ApiServerSet:
    def __init__(self, static: Iterable[str] = ()) -> None:
        self._static_any: frozenset[str] = frozenset()
        pairs, anyport = set(), set()
        for text in static:
            ip, port = parse_ip_port(text)
            if port is None:
                anyport.add(ip)
            else:
                pairs.add((ip, port))
        self._static_any = frozenset(anyport)
        self._static_pairs = frozenset(pairs)
        self._sources: dict[str, frozenset[tuple[str, int]]] = {}
        self._pairs: frozenset[tuple[str, int]] = self._static_pairs

    def set_source(self, name: str, pairs: Iterable[tuple[str, int]]) -> None:
        """Replace what one source (kubeconfig, service, endpoints) says."""
        clean = frozenset((ip, int(p)) for raw, p in pairs if (ip := normalize_ip(raw)) is not None)
        self._sources[name] = clean
        self._pairs = self._static_pairs.union(*self._sources.values())

    def pairs(self) -> frozenset[tuple[str, int]]:
        return self._pairs

    def is_apiserver(self, ip: str, port: int) -> bool:
        if not ip:
            return False
        if (ip, port) in self._pairs:  # the common spelling: no parse needed
            return True
        norm = normalize_ip(ip)
        if norm is None:
            return False
        return (norm, port) in self._pairs or norm in self._static_any

    def update_from_service(self, svc: dict) -> None:
        spec = svc.get("spec") or {}
        ips = list(spec.get("clusterIPs") or []) or [spec.get("clusterIP") or ""]
        ports = [p.get("port") for p in spec.get("ports") or [] if isinstance(p, dict)]
        self.set_source("service", [(ip, p) for ip in ips if ip and ip != "None" for p in ports if p])

    def update_from_endpoints(self, ep: dict) -> None:
        pairs = []
        for subset in ep.get("subsets") or []:
            ports = [p.get("port") for p in subset.get("ports") or [] if isinstance(p, dict)]
            for a in subset.get("addresses") or []:
                pairs.extend((a.get("ip", ""), p) for p in ports if p)
        self.set_source("endpoints", pairs)


class ApiServerRefresher:
    """Refresh the Service and Endpoints of `kubernetes` periodically, on its own thread."""

    def __init__(
        self,
        client: KubeClient,
        target: ApiServerSet,
        period_s: float = 60.0,
        warn: RateLimitedWarning | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.period_s = period_s
        self.warn = warn or RateLimitedWarning(log)
        # Closing the client's connections: stop does not wait out a slow request.
        self._loop = LoopThread(self._run, "provex-k8s-apiserver", interrupt=client.close_all, join_s=10)

    def refresh(self) -> None:
        for path, update in (
            ("/api/v1/namespaces/default/services/kubernetes", self.target.update_from_service),
            ("/api/v1/namespaces/default/endpoints/kubernetes", self.target.update_from_endpoints),
        ):
            try:
                update(self.client.get_json(path))
            except Exception as exc:
                cause = classify_error(exc)
                APISERVER_REFRESH_ERRORS.labels(cause).inc()
                self.warn(
                    f"apiserver-{cause}",
                    "cannot refresh the API server addresses",
                    path=path,
                    error=str(exc)[:300],
                )

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def _run(self) -> None:
        while not self._loop.stopping.is_set():
            self.refresh()
            self._loop.stopping.wait(self.period_s)
