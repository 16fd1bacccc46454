"""LIST + WATCH of this node's Pods, on a thread of its own.

Follows the API's contract: list, then watch from the list's
resourceVersion; on a dropped stream, watch again from the last version
seen; on 410 Gone (an HTTP 410 or a watch ERROR event with code 410),
list again. Failures back off exponentially up to a cap, count a metric by
cause, log one warning per cause per minute, and never stop the thread.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.parse

from exporter.backoff import Backoff
from exporter.enrich.kubeclient import ApiError, GoneError, KubeClient
from exporter.enrich.metrics import K8S_CONNECTED, K8S_RELISTS, K8S_WATCH_ERRORS
from exporter.enrich.pods import PodCache, PodFormatError, pod_from_json
from exporter.enrich.worker import LoopThread
from exporter.logs import RateLimitedWarning

log = logging.getLogger("provex.enrich")


# Failure labels, the first matching kind wins (SSLError and the timeouts are OSErrors too).
_CAUSES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ssl.SSLError, "tls"),
    ((json.JSONDecodeError, PodFormatError, ValueError, KeyError, TypeError), "bad_response"),
    (TimeoutError, "timeout"),
    (ConnectionRefusedError, "refused"),
    (OSError, "connection"),
)


def classify_error(exc: BaseException) -> str:
    """A short, bounded metric label for a failure."""
    if isinstance(exc, GoneError):
        return "gone"
    if isinstance(exc, ApiError):
        return f"http_{exc.status}"
    return next((cause for kinds, cause in _CAUSES if isinstance(exc, kinds)), "other")


class _Relist(Exception):
    pass


class PodWatcher:
    def __init__(
        self,
        client: KubeClient,
        cache: PodCache,
        node_name: str,
        *,
        resync_s: float = 1800.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        watch_timeout_s: int = 300,
        warn: RateLimitedWarning | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.node_name = node_name
        self.resync_s = resync_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.watch_timeout_s = watch_timeout_s
        self.warn = warn or RateLimitedWarning(log)
        self.resource_version = ""
        self.lists = 0
        self.watches = 0
        self._loop = LoopThread(self._run, "provex-k8s-pods", interrupt=client.close_all, join_s=10)
        self.connected = threading.Event()

    def _query(self, **extra: str) -> str:
        params = {"fieldSelector": f"spec.nodeName={self.node_name}"} if self.node_name else {}
        params.update(extra)
        return "/api/v1/pods?" + urllib.parse.urlencode(params)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()  # closing the client's connections ends a watch at once

    def _set_connected(self, ok: bool) -> None:
        K8S_CONNECTED.set(1 if ok else 0)
        if ok:
            self.connected.set()
        else:
            self.connected.clear()

    def list_pods(self) -> None:
        """One full (paginated) list; replaces the cache's view of this node."""
        records, cont = [], ""
        while True:
            extra = {"limit": "500"}
            if cont:
                extra["continue"] = cont
            doc = self.client.get_json(self._query(**extra))
            items = doc.get("items")
            if not isinstance(items, list):
                raise ValueError("pod list: 'items' is not a list")
            records.extend(pod_from_json(item) for item in items)
            meta = doc.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                self.resource_version = str(meta.get("resourceVersion") or "")
                break
        self.cache.replace_all(records)
        self.lists += 1

    def watch_once(self) -> None:
        """Follow one watch stream until the server ends it; raise _Relist on 410."""
        q = self._query(
            watch="1",
            resourceVersion=self.resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(self.watch_timeout_s),
        )
        self.watches += 1
        stream = self.client.watch(
            q, idle_timeout_s=self.watch_timeout_s + 30, on_open=lambda: self._set_connected(True)
        )
        for ev in stream:
            if self._loop.stopping.is_set():
                return
            kind, obj = ev.get("type"), ev.get("object")
            if kind == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                if code == 410:
                    raise _Relist("watch ERROR 410 Gone")
                raise ApiError(int(code or 500), str((obj or {}).get("message", "watch error")))
            if not isinstance(obj, dict):
                raise ValueError(f"watch event {kind!r} without an object")
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if kind == "BOOKMARK":
                pass
            elif kind in ("ADDED", "MODIFIED"):
                self.cache.upsert(pod_from_json(obj))
            elif kind == "DELETED":
                self.cache.delete(pod_from_json(obj))
            else:
                raise ValueError(f"watch event of unknown type {kind!r}")
            if rv:
                self.resource_version = str(rv)

    def _run(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s, self._loop.stopping)
        need_list, listed_at = True, 0.0
        while not self._loop.stopping.is_set():
            try:
                if need_list or time.monotonic() - listed_at >= self.resync_s:
                    self.list_pods()
                    need_list, listed_at = False, time.monotonic()
                    self._set_connected(True)
                    if backoff.failures:
                        log.info(
                            "Kubernetes Pod watch recovered",
                            extra={"fields": {"after_failures": backoff.failures}},
                        )
                    backoff.reset()
                self.watch_once()
                # The server ended the stream (timeoutSeconds): watch again at once.
            except (_Relist, GoneError) as exc:
                K8S_RELISTS.labels("gone").inc()
                K8S_WATCH_ERRORS.labels("gone").inc()
                log.info("resourceVersion too old, relisting", extra={"fields": {"reason": str(exc)}})
                need_list = True
            except Exception as exc:
                if self._loop.stopping.is_set():
                    return
                cause = classify_error(exc)
                K8S_WATCH_ERRORS.labels(cause).inc()
                self._set_connected(False)
                self.warn(
                    cause,
                    "Kubernetes API unavailable: enriching with container identity only",
                    server=self.client.auth.server,
                    error=str(exc)[:300],
                )
                if cause == "bad_response":
                    need_list = True  # our view may have a hole: start from a fresh list
                backoff.wait()
        self._set_connected(False)
