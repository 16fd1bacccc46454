"""A small Kubernetes API client on the standard library: GET JSON and watch streams.

Credentials come from a kubeconfig (token, token file, client certificate,
CA; exec and auth-provider plugins are refused with a clear error) or from
the in-cluster service account. Only what the enricher needs: no writes.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from exporter import yamlfile
from exporter.errors import InputError, Source

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeConfigError(InputError):
    """A kubeconfig we cannot use: its file and line, the key, and why."""


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: bytes = b"") -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:200]!r}")
        self.status = status
        self.reason = reason
        self.body = body


class GoneError(ApiError):
    """410 Gone: the resourceVersion is too old; the caller must relist."""


@dataclass(frozen=True)
class KubeAuth:
    server: str  # https://host:port
    ca_file: str = ""
    ca_data: str = ""  # PEM
    insecure: bool = False
    token: str = ""
    token_file: str = ""  # re-read on every connection: bound tokens rotate
    client_cert_file: str = ""
    client_key_file: str = ""
    client_cert_data: bytes = b""
    client_key_data: bytes = b""
    origin: str = ""  # where this came from, for messages

    @property
    def host_port(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.server)
        default = 443 if u.scheme == "https" else 80
        return u.hostname or "", u.port or default


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise KubeConfigError(f"{where}: not valid base64 ({exc})") from exc


def _kind(value: object) -> str:
    """How YAML would call a value's type, for messages."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null" if value is None else type(value).__name__


class _Kubeconfig:
    """A parsed kubeconfig that knows the line of every key, for located errors."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.yaml = yamlfile.load(path)
        except yamlfile.YamlFileError as exc:
            raise KubeConfigError(exc.problem, exc.source) from None
        except OSError as exc:
            raise KubeConfigError(f"cannot read this kubeconfig ({exc.strerror})", Source(path)) from None
        self.doc = self.yaml.data

    def line(self, keys: tuple[str | int, ...]) -> int:
        """1-based line of the key at `keys` (or of the deepest part of it that exists)."""
        return self.yaml.line(*keys)

    def error(self, keys: tuple[str | int, ...], name: str, message: str) -> KubeConfigError:
        return KubeConfigError(f"{name}: {message}", Source(self.path, self.line(keys)))

    def typed(
        self,
        value: object,
        kind: type | tuple[type, ...],
        keys: tuple[str | int, ...],
        name: str,
        expected: str,
    ) -> object:
        if value is None or isinstance(value, kind):
            return value
        raise self.error(keys, name, f"expected {expected}, got {_kind(value)} {value!r:.60}")


_CLUSTER_TEXT = ("server", "certificate-authority", "certificate-authority-data", "tls-server-name")
_USER_TEXT = (
    "token",
    "tokenFile",
    "client-certificate",
    "client-key",
    "client-certificate-data",
    "client-key-data",
)


def load_kubeconfig(path: str) -> KubeAuth:
    """The current context's cluster and user of one kubeconfig file.

    Every value this reads is type-checked: a wrong one is refused with
    file:line, the key and what was expected (never a traceback)."""
    kc = _Kubeconfig(path)
    doc = kc.doc
    if not isinstance(doc, dict):
        raise KubeConfigError(
            f"expected a mapping with clusters/contexts/users, got {_kind(doc)}", Source(path, 1)
        )
    base = os.path.dirname(os.path.abspath(path))

    def named(section: str, name: str) -> tuple[dict, tuple[str | int, ...]]:
        entries = (
            kc.typed(
                doc.get(section), list, (section,), section, f"a list of entries with name and {section[:-1]}"
            )
            or []
        )
        for index, item in enumerate(entries):  # type: ignore[arg-type]
            where = f"{section}[{index}]"
            kc.typed(item, dict, (section, index), where, f"a mapping with name and {section[:-1]}")
            if item.get("name") != name:
                continue
            keys = (section, index, section[:-1])
            value = kc.typed(
                item.get(section[:-1]), dict, keys, f"{section}[{name}].{section[:-1]}", "a mapping"
            )
            return value or {}, keys
        raise kc.error((section,), section, f"no entry named {name!r}")

    ctx_name = kc.typed(doc.get("current-context"), str, ("current-context",), "current-context", "text")
    if not ctx_name:
        raise KubeConfigError("current-context is not set", Source(path))
    ctx, ctx_keys = named("contexts", ctx_name)  # type: ignore[arg-type]
    for key in ("cluster", "user"):
        kc.typed(ctx.get(key), str, (*ctx_keys, key), f"contexts[{ctx_name}].{key}", "text")
    cluster, cluster_keys = named("clusters", ctx.get("cluster") or "")
    user, user_keys = named("users", ctx["user"]) if ctx.get("user") else ({}, ())
    where_c = f"clusters[{ctx.get('cluster')}]"
    where_u = f"users[{ctx.get('user')}]"
    for section, keys, where, names in (
        (cluster, cluster_keys, where_c, _CLUSTER_TEXT),
        (user, user_keys, where_u, _USER_TEXT),
    ):
        for key in names:
            kc.typed(section.get(key), str, (*keys, key), f"{where}.{key}", "text")
    kc.typed(
        cluster.get("insecure-skip-tls-verify"),
        bool,
        (*cluster_keys, "insecure-skip-tls-verify"),
        f"{where_c}.insecure-skip-tls-verify",
        "true or false",
    )
    server = cluster.get("server")
    if not server or urllib.parse.urlsplit(server).scheme not in ("http", "https"):
        raise kc.error(
            (*cluster_keys, "server"), f"{where_c}.server", f"expected an http(s) URL, got {server!r}"
        )
    for unsupported in ("exec", "auth-provider"):
        if unsupported in user:
            raise kc.error(
                (*user_keys, unsupported),
                f"{where_u}.{unsupported}",
                "credential plugins are not supported; use a token, tokenFile or client certificate",
            )

    def file_of(d: dict, keys: tuple[str | int, ...], where: str, key: str) -> str:
        value = d.get(key) or ""
        value = value if not value or os.path.isabs(value) else os.path.join(base, value)
        if value and not os.access(value, os.R_OK):  # now, not when the watch first connects
            raise kc.error((*keys, key), f"{where}.{key}", f"{value}: no such file, or not readable")
        return value

    def data_of(d: dict, keys: tuple[str | int, ...], where: str, key: str) -> bytes:
        value = d.get(key)
        if not value:
            return b""
        try:
            return _b64(value, f"{where}.{key}")
        except KubeConfigError as exc:
            raise KubeConfigError(exc.problem, Source(path, kc.line((*keys, key)))) from None

    return KubeAuth(
        server=server.rstrip("/"),
        ca_file=file_of(cluster, cluster_keys, where_c, "certificate-authority"),
        ca_data=data_of(cluster, cluster_keys, where_c, "certificate-authority-data").decode(
            errors="replace"
        ),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=user.get("token") or "",
        token_file=file_of(user, user_keys, where_u, "tokenFile"),
        client_cert_file=file_of(user, user_keys, where_u, "client-certificate"),
        client_key_file=file_of(user, user_keys, where_u, "client-key"),
        client_cert_data=data_of(user, user_keys, where_u, "client-certificate-data"),
        client_key_data=data_of(user, user_keys, where_u, "client-key-data"),
        origin=path,
    )


def in_cluster_auth(env: Mapping[str, str], sa_dir: str = SA_DIR) -> KubeAuth | None:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not os.path.exists(f"{sa_dir}/token"):
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return KubeAuth(
        server=f"https://{host}:{port}",
        ca_file=f"{sa_dir}/ca.crt",
        token_file=f"{sa_dir}/token",
        origin="in-cluster service account",
    )


def resolve_auth(kubeconfig: str, env: Mapping[str, str], sa_dir: str = SA_DIR) -> KubeAuth | None:
    """enrich.kubeconfig, then $KUBECONFIG (first existing file of the list), then in-cluster."""
    if kubeconfig:
        return load_kubeconfig(kubeconfig)
    for candidate in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if candidate and os.path.exists(candidate):
            return load_kubeconfig(candidate)
    return in_cluster_auth(env, sa_dir)


def check_auth(kubeconfig: str, env: Mapping[str, str]) -> None:
    """Resolve the credentials and load their TLS material as the Pod watch will, so that
    an unusable kubeconfig is refused before the agent starts (KubeConfigError)."""
    auth = resolve_auth(kubeconfig, env)
    if auth is None or not auth.server.startswith("https"):
        return
    try:
        _ssl_context(auth)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise KubeConfigError(f"its TLS files cannot be loaded ({reason})", Source(auth.origin)) from None


def _ssl_context(auth: KubeAuth) -> ssl.SSLContext:
    ctx = (
        ssl.create_default_context(cafile=auth.ca_file or None, cadata=auth.ca_data or None)
        if (auth.ca_file or auth.ca_data)
        else ssl.create_default_context()
    )
    if auth.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if auth.client_cert_file:
        ctx.load_cert_chain(auth.client_cert_file, auth.client_key_file or None)
    elif auth.client_cert_data:
        # ssl only loads key pairs from files: a private temp dir, removed at once.
        with tempfile.TemporaryDirectory(prefix="provex-kube-") as tmp:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            for name, data in ((cert, auth.client_cert_data), (key, auth.client_key_data)):
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(cert, key if auth.client_key_data else None)
    return ctx


class KubeClient:
    """GET requests against one API server; each call opens its own connection."""

    def __init__(self, auth: KubeAuth, timeout_s: float = 10.0) -> None:
        self.auth = auth
        self.timeout_s = timeout_s
        u = urllib.parse.urlsplit(auth.server)
        self._https = u.scheme == "https"
        self._host, self._port = auth.host_port
        self._prefix = u.path.rstrip("/")
        self._ctx = _ssl_context(auth) if self._https else None
        self._lock = threading.Lock()
        # Open connections, each with the abort generation it was opened in: close_all bumps
        # the generation, so a request whose socket did not exist yet is aborted too.
        self._open: dict[http.client.HTTPConnection, int] = {}
        self._generation = 0

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "provex-enrich"}
        token = self.auth.token
        if self.auth.token_file:
            with open(self.auth.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _connect(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout_s, context=self._ctx
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
        with self._lock:
            self._open[conn] = self._generation
        return conn

    def _forget(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.pop(conn, None)
        conn.close()

    def _request(self, conn: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
        conn.request("GET", self._prefix + path, headers=self._headers())
        with self._lock:
            aborted = self._open.get(conn) != self._generation
        if aborted:  # close_all came while this socket was being connected
            raise ConnectionAbortedError(f"GET {path}: client closed")
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read()
            cls = GoneError if resp.status == 410 else ApiError
            raise cls(resp.status, resp.reason, body)
        return resp

    def get_json(self, path: str) -> dict:
        conn = self._connect(self.timeout_s)
        try:
            body = self._request(conn, path).read()
        finally:
            self._forget(conn)
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError(f"GET {path}: expected a JSON object, got {type(doc).__name__}")
        return doc

    def watch(
        self, path: str, idle_timeout_s: float, on_open: Callable[[], None] | None = None
    ) -> Iterator[dict]:
        """Yield the watch events of a streaming GET, one JSON object per line.

        The socket times out after idle_timeout_s without a byte, so a dead
        peer is noticed; `close_all` from another thread ends the stream.
        """
        conn = self._connect(self.timeout_s)  # connect and headers: the short timeout
        try:
            resp = self._request(conn, path)
            if conn.sock is not None:
                conn.sock.settimeout(idle_timeout_s)  # then a quiet stream may idle this long
            if on_open is not None:
                on_open()
            while True:
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError(f"watch {path}: expected a JSON object per line")
                yield doc
        finally:
            self._forget(conn)

    def close_all(self) -> None:
        """Abort every open request (used to stop the watch thread)."""
        with self._lock:
            self._generation += 1
            conns = list(self._open)
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def server_addresses(auth: KubeAuth) -> list[tuple[str, int]]:
    """The (ip, port) of the configured server, when its host is an IP literal or resolves."""
    host, port = auth.host_port
    try:
        return [(str(ipaddress.ip_address(host)), port)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({(str(ipaddress.ip_address(info[4][0])), port) for info in infos})
