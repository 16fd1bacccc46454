"""A local Kubernetes API server stand-in (127.0.0.1 only) speaking the real JSON.

`provex demo` and `provex verify` register their scenario Pods here at run time,
so it ships with the package; the enrichment tests drive it too, with the faults
they inject added by tests/helpers/apiserver.py.

It serves what the enricher and kubectl ask for: discovery (/version, /api,
/apis, /api/v1), Pods list and watch (newline-delimited JSON events over a
chunked response, resourceVersion semantics, 410 Gone as a watch ERROR event
for a version older than its history), the `kubernetes` Service and Endpoints.
Its driver adds, modifies and deletes Pods, and ends open watches.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_pod(
    name: str,
    uid: str,
    *,
    namespace: str = "default",
    node: str = "node-a",
    containers: list[tuple[str, str, str]] = (),  # (name, image, "containerd://<id>" or "")
    host_paths: dict[str, str] | None = None,  # volume name -> host path
    mounts: dict[str, list[tuple[str, str, bool]]] | None = None,  # container -> (volume, mountPath, ro)
    labels: dict[str, str] | None = None,
    service_account: str = "default",
    pod_ips: list[str] | tuple[str, ...] = (),  # status.podIP (the first) and status.podIPs
    host_network: bool = False,
) -> dict:
    host_paths = host_paths or {}
    mounts = mounts or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "labels": labels or {"app": name},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "nodeName": node,
            **({"hostNetwork": True} if host_network else {}),
            "serviceAccountName": service_account,
            "volumes": [{"name": v, "hostPath": {"path": p, "type": ""}} for v, p in host_paths.items()]
            + [{"name": "kube-api-access", "projected": {"sources": []}}],
            "containers": [
                {
                    "name": c,
                    "image": img,
                    "volumeMounts": [
                        {"name": v, "mountPath": mp, **({"readOnly": True} if ro else {})}
                        for v, mp, ro in mounts.get(c, [])
                    ]
                    + [
                        {
                            "name": "kube-api-access",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        }
                    ],
                }
                for c, img, _ in containers
            ],
        },
        "status": {
            "phase": "Running",
            **({"podIP": pod_ips[0], "podIPs": [{"ip": ip} for ip in pod_ips]} if pod_ips else {}),
            "containerStatuses": [
                {"name": c, "image": img, "imageID": "", "containerID": cid, "ready": True, "restartCount": 0}
                for c, img, cid in containers
                if cid
            ],
        },
    }


def status_object(code: int, reason: str, message: str) -> dict:
    """A Kubernetes Status (the body of an API error)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class ApiHandler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, doc: object, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        api = self.api
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        if path == "/version":
            return self._send(
                200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
            )
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{api.port}"}]})  # fmt: skip
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self._send(200, _RESOURCES)
        if path == "/api/v1/namespaces/default/services/kubernetes":
            port = {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
            spec = {
                "clusterIP": api.service_ip,
                "clusterIPs": [api.service_ip],
                "type": "ClusterIP",
                "ports": [port],
            }
            meta = {"name": "kubernetes", "namespace": "default"}
            return self._send(200, {"kind": "Service", "apiVersion": "v1", "metadata": meta, "spec": spec})
        if path == "/api/v1/namespaces/default/endpoints/kubernetes":
            subset = {
                "addresses": [{"ip": ip} for ip, _ in api.endpoints],
                "ports": [{"name": "https", "port": api.endpoints[0][1], "protocol": "TCP"}],
            }
            meta = {"name": "kubernetes", "namespace": "default"}
            return self._send(
                200, {"kind": "Endpoints", "apiVersion": "v1", "metadata": meta, "subsets": [subset]}
            )
        if path == "/api/v1/pods":
            if q.get("watch") in ("1", "true"):
                return self._watch(q)
            return self._list(q)
        return self._send(404, status_object(404, "NotFound", f"the server could not find {path}"))

    def _selected(self, q: dict[str, str], pod: dict) -> bool:
        sel = q.get("fieldSelector", "")
        if sel.startswith("spec.nodeName="):
            return pod["spec"].get("nodeName") == sel.split("=", 1)[1]
        return True

    def _list(self, q: dict[str, str]) -> None:
        api = self.api
        with api.cond:
            items = [copy.deepcopy(p) for p in api.pods.values() if self._selected(q, p)]
            rv = api.rv
        self._send(
            200,
            {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}, "items": items},
        )

    def _chunk(self, doc: dict) -> None:
        data = json.dumps(doc).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, q: dict[str, str]) -> None:
        api = self.api
        since = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 1800)
        with api.cond:
            # One snapshot: a compaction after this point must end this watch, however
            # late this thread gets to run (else it would watch on from a forgotten version).
            too_old = since and since < api.oldest_rv
            epoch = api.epoch
        if too_old:
            return self._gone(since)
        self._open_stream()
        try:
            self._stream(q, since, epoch, timeout)
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            self._close_stream()

    def _gone(self, since: int) -> None:
        """410 Gone the way the API server says it to a watch: an ERROR event."""
        self._open_stream()
        try:
            msg = f"too old resource version: {since} ({self.api.oldest_rv})"
            self._chunk({"type": "ERROR", "object": status_object(410, "Expired", msg)})
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            self._close_stream()

    def _stream(self, q: dict[str, str], since: int, epoch: int, timeout: float) -> None:
        """Events after `since` until the watch times out or the epoch changes."""
        api = self.api
        with api.cond:
            if since == 0:  # "any": synthetic ADDED for the current state first
                backlog = [(api.rv, "ADDED", p) for p in api.pods.values()]
            else:
                backlog = [h for h in api.history if h[0] > since]
            sent = api.rv if since == 0 else since
        end = time.monotonic() + timeout
        while True:
            for rv, kind, pod in backlog:
                if self._selected(q, pod):
                    self._chunk({"type": kind, "object": pod})
                sent = max(sent, rv)
            with api.cond:
                last = sent
                api.cond.wait_for(
                    lambda last=last: (
                        api.epoch != epoch
                        or bool(api.history and api.history[-1][0] > last)
                        or time.monotonic() >= end
                    ),
                    timeout=max(0.0, min(1.0, end - time.monotonic())),
                )
                if api.epoch != epoch or time.monotonic() >= end:
                    return
                backlog = [h for h in api.history if h[0] > sent]

    def _open_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _close_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True


class FakeApiServer:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pods: dict[str, dict] = {}  # uid -> pod
        self.rv = 100
        self.history: list[tuple[int, str, dict]] = []
        self.oldest_rv = 0  # watches from an older version get 410 Gone
        self.epoch = 0  # bumped by drop_watches(): open watches end
        self.service_ip = "10.96.0.1"
        self.endpoints = [("127.0.0.1", 6443)]
        self.port = 0
        self.tls: ssl.SSLContext | None = None  # serve HTTPS with this context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    handler = ApiHandler  # a test server serves faults with a subclass

    # -- lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeApiServer:
        server = self

        class Handler(self.handler):
            api = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Go down: stop listening and end every open watch."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.drop_watches()

    def write_kubeconfig(self, path: str, token: str = "test-token") -> str:
        with open(path, "w", encoding="utf-8") as f:
            f.write(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                f"clusters:\n- name: fake\n  cluster:\n    server: {self.url}\n"
                "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
                f"users:\n- name: fake\n  user:\n    token: {token}\n"
            )
        return path

    # -- driving ---------------------------------------------------------------
    def _record(self, kind: str, pod: dict) -> None:
        with self.cond:
            self.rv += 1
            pod = copy.deepcopy(pod)
            pod["metadata"]["resourceVersion"] = str(self.rv)
            if kind == "DELETED":
                self.pods.pop(pod["metadata"]["uid"], None)
            else:
                self.pods[pod["metadata"]["uid"]] = pod
            self.history.append((self.rv, kind, pod))
            self.cond.notify_all()

    def add_pod(self, pod: dict) -> None:
        self._record("ADDED", pod)

    def drop_watches(self) -> None:
        with self.cond:
            self.epoch += 1
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()


_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]},
        {"name": "services", "singularName": "service", "namespaced": True, "kind": "Service",
         "verbs": ["get", "list", "watch"], "shortNames": ["svc"]},
        {"name": "endpoints", "singularName": "endpoints", "namespaced": True, "kind": "Endpoints",
         "verbs": ["get", "list", "watch"], "shortNames": ["ep"]},
    ],
}  # fmt: skip
