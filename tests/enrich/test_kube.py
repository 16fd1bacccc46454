"""The Kubernetes client and Pod watch against a local API server double (and kubectl)."""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.enrich.kubeclient import (
    KubeAuth,
    KubeClient,
    KubeConfigError,
    in_cluster_auth,
    load_kubeconfig,
    resolve_auth,
)
from exporter.enrich.pods import PodCache, pod_from_json
from exporter.enrich.watcher import PodWatcher
from exporter.model import HostMount
from tests.enrich.conftest import metric
from tests.helpers.apiserver import FaultyApiServer, make_pod
from tests.tools import tool

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
U3 = "33333333-3333-4333-8333-333333333333"
C1, C2, C3 = "1" * 64, "2" * 64, "3" * 64


def wait(pred, timeout: float = 30.0) -> bool:
    """Wait for a condition; the timeout only bounds a failure (a busy machine is slow, not wrong)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


def watcher_for(api: FaultyApiServer, cache: PodCache, **kw) -> PodWatcher:
    client = KubeClient(KubeAuth(server=api.url), timeout_s=5)
    kw = {"backoff_initial_s": 0.02, "backoff_max_s": 0.1, **kw}
    return PodWatcher(client, cache, "node-a", **kw)


# -- kubeconfig and in-cluster credentials ----------------------------------------


def _kubeconfig(tmp_path: Path, user: str, cluster_extra: str = "") -> Path:
    p = tmp_path / "config"
    p.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\n{cluster_extra}"
        "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
        f"users:\n- name: u\n  user:\n{user}"
    )
    return p


def test_kubeconfig_token_and_relative_files(tmp_path: Path) -> None:
    for name in ("ca.crt", "token", "c.crt", "c.key"):
        (tmp_path / name).write_text("x")
    p = _kubeconfig(tmp_path, "    token: abc\n", "    certificate-authority: ca.crt\n")
    auth = load_kubeconfig(str(p))
    assert auth.server == "https://10.0.0.1:6443" and auth.token == "abc"
    assert auth.ca_file == str(tmp_path / "ca.crt") and auth.host_port == ("10.0.0.1", 6443)
    p = _kubeconfig(
        tmp_path, f"    tokenFile: {tmp_path}/token\n    client-certificate: c.crt\n    client-key: c.key\n"
    )
    auth = load_kubeconfig(str(p))
    assert (auth.token_file, auth.client_cert_file, auth.client_key_file) == (
        str(tmp_path / "token"),
        str(tmp_path / "c.crt"),
        str(tmp_path / "c.key"),
    )


@pytest.mark.parametrize(
    ("user", "extra", "message"),
    [
        ("    exec: {command: aws}\n", "", r"users\[u\]\.exec: credential plugins are not supported"),
        (
            "    client-certificate-data: '@@notbase64'\n",
            "",
            r"users\[u\]\.client-certificate-data: not valid base64",
        ),
        ("    token: x\n", "    insecure-skip-tls-verify: true\n", None),
    ],
)
def test_kubeconfig_errors_name_file_and_key(
    tmp_path: Path, user: str, extra: str, message: str | None
) -> None:
    p = _kubeconfig(tmp_path, user, extra)
    if message is None:
        assert load_kubeconfig(str(p)).insecure
        return
    with pytest.raises(KubeConfigError, match=rf"{p}:\d+: {message}"):
        load_kubeconfig(str(p))


# Wrong types anywhere the loader reads: a located error (file:line, key, what was expected).
MALFORMED = [
    ("clusters: 5\n", 1, "clusters: expected a list of entries with name and cluster, got a number 5"),
    ("clusters: {name: k}\n", 1, "clusters: expected a list .* got a mapping"),
    ("clusters:\n- just-a-name\n", 2, r"clusters\[0\]: expected a mapping with name and cluster, got text"),
    ("clusters:\n- name: k\n  cluster: [a]\n", 3, r"clusters\[k\]\.cluster: expected a mapping, got a list"),
    (
        "clusters:\n- name: k\n  cluster: {server: 6443}\n",
        3,
        r"clusters\[k\]\.server: expected text, got a number",
    ),
    (
        "clusters:\n- name: k\n  cluster:\n    server: https://a\n    insecure-skip-tls-verify: 'yes'\n",
        5,
        r"clusters\[k\]\.insecure-skip-tls-verify: expected true or false, got text 'yes'",
    ),
    (
        "clusters:\n- name: k\n  cluster:\n    server: https://a\n    certificate-authority-data: [1]\n",
        5,
        r"clusters\[k\]\.certificate-authority-data: expected text, got a list",
    ),
    ("contexts: 7\n", 1, "contexts: expected a list"),
    (
        "contexts:\n- name: c\n  context: {cluster: [k], user: u}\n",
        3,
        r"contexts\[c\]\.cluster: expected text",
    ),
    ("users:\n- name: u\n  user: {token: 12345}\n", 3, r"users\[u\]\.token: expected text, got a number"),
    (
        "users:\n- name: u\n  user: {client-key: {a: b}}\n",
        3,
        r"users\[u\]\.client-key: expected text, got a mapping",
    ),
    ("current-context: [c]\n", 1, "current-context: expected text, got a list"),
]
VALID = {
    "current-context": "current-context: c\n",
    "clusters": "clusters:\n- name: k\n  cluster: {server: 'https://10.0.0.1:6443'}\n",
    "contexts": "contexts:\n- name: c\n  context: {cluster: k, user: u}\n",
    "users": "users:\n- name: u\n  user: {token: t}\n",
}


@pytest.mark.parametrize(("section", "line", "message"), MALFORMED, ids=[m[2][:40] for m in MALFORMED])
def test_malformed_kubeconfig_values_get_a_located_error(
    tmp_path: Path, section: str, line: int, message: str
) -> None:
    key = section.split(":", 1)[0]
    others = "".join(text for name, text in VALID.items() if name != key)
    p = tmp_path / "config"
    p.write_text(section + others)  # the malformed section first: its lines are the file's
    with pytest.raises(KubeConfigError, match=rf"^{p}:{line}: {message}"):
        load_kubeconfig(str(p))


def test_malformed_kubeconfig_is_refused_by_provex_run_without_a_traceback(tmp_path: Path) -> None:
    p = tmp_path / "config"
    p.write_text("clusters: 5\n" + VALID["contexts"] + VALID["users"] + VALID["current-context"])
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "run", "--kubeconfig", str(p)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    if "cannot start the probes" not in result.stderr:  # needs root and BCC to get as far as enrichment
        assert f"{p}:1: clusters: expected a list" in result.stderr


def test_kubeconfig_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"missing: cannot read this kubeconfig \(No such file"):
        load_kubeconfig(str(tmp_path / "missing"))
    (tmp_path / "bad").write_text("current-context: nope\nclusters: []\n")
    with pytest.raises(KubeConfigError, match=r"contexts: no entry named 'nope'"):
        load_kubeconfig(str(tmp_path / "bad"))
    (tmp_path / "list").write_text("- a\n- b\n")
    with pytest.raises(KubeConfigError, match="expected a mapping"):
        load_kubeconfig(str(tmp_path / "list"))


def test_resolve_order_and_in_cluster(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("tok\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    auth = in_cluster_auth(env, str(sa))
    assert (
        auth is not None and auth.server == "https://[fd00::1]:443" and auth.token_file == str(sa / "token")
    )
    assert auth.host_port == ("fd00::1", 443)
    assert in_cluster_auth({}, str(sa)) is None
    kc = _kubeconfig(tmp_path, "    token: abc\n")
    # $KUBECONFIG (first existing file of the list) before in-cluster; explicit setting first of all.
    assert resolve_auth("", {**env, "KUBECONFIG": f"/nonexistent:{kc}"}, str(sa)).token == "abc"
    assert resolve_auth("", env, str(sa)).origin == "in-cluster service account"
    assert resolve_auth("", {}, str(sa)) is None
    with pytest.raises(KubeConfigError):
        resolve_auth(str(tmp_path / "nope"), env, str(sa))


# -- TLS: CA and client certificate from kubeconfig data --------------------------


def _tls_server(pki: dict[str, Path]) -> FaultyApiServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_crt"], pki["server_key"])
    ctx.load_verify_locations(pki["ca_crt"])
    ctx.verify_mode = ssl.CERT_REQUIRED  # the client must present a certificate
    server = FaultyApiServer()
    server.tls = ctx
    return server.start()


def test_tls_with_client_certificate_from_kubeconfig_data(tmp_path: Path, pki: dict[str, Path]) -> None:
    server = _tls_server(pki)
    try:
        server.add_pod(make_pod("web", U1, containers=[("nginx", "nginx:1", f"containerd://{C1}")]))

        def b64(name: str) -> str:
            return base64.b64encode(pki[name].read_bytes()).decode()

        kc = tmp_path / "kc"
        kc.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters:\n- name: k\n  cluster:\n    server: {server.url}\n"
            f"    certificate-authority-data: {b64('ca_crt')}\n"
            "contexts:\n- name: c\n  context: {cluster: k, user: u}\n"
            f"users:\n- name: u\n  user:\n    client-certificate-data: {b64('client_crt')}\n"
            f"    client-key-data: {b64('client_key')}\n"
        )
        client = KubeClient(load_kubeconfig(str(kc)))
        doc = client.get_json("/api/v1/pods")
        assert [p["metadata"]["uid"] for p in doc["items"]] == [U1]
        # The wrong CA: refused, and the watcher counts it as a TLS failure and stays down.
        bad = KubeClient(KubeAuth(server=server.url, ca_file=str(pki["other_crt"])))
        with pytest.raises(ssl.SSLError):
            bad.get_json("/api/v1/pods")
        cache = PodCache()
        before = metric("provex_k8s_watch_errors_total", cause="tls")
        w = PodWatcher(bad, cache, "node-a", backoff_initial_s=0.02, backoff_max_s=0.05)
        w.start()
        try:
            assert wait(lambda: metric("provex_k8s_watch_errors_total", cause="tls") > before)
            assert not w.connected.is_set() and not cache.synced
        finally:
            w.stop()
    finally:
        server.stop()


# -- list + watch ---------------------------------------------------------------------


def test_pod_record_fields() -> None:
    pod = make_pod(
        "agent",
        U1,
        namespace="kube-system",
        containers=[("agent", "reg/agent:2", f"containerd://{C1}"), ("sidecar", "reg/side:1", "")],
        host_paths={"varlog": "/var/log", "root": "/"},
        mounts={"agent": [("varlog", "/host/var/log", True), ("root", "/host", False)]},
        labels={"app": "agent", "tier": "node"},
        service_account="agent-sa",
    )
    rec = pod_from_json(pod)
    assert rec.info.name == "agent" and rec.info.namespace == "kube-system" and rec.info.node == "node-a"
    assert rec.info.labels == {"app": "agent", "tier": "node"} and rec.info.service_account == "agent-sa"
    spec = rec.container(C1)
    assert spec is not None and (spec.name, spec.image, spec.runtime) == (
        "agent",
        "reg/agent:2",
        "containerd",
    )
    assert spec.host_mounts == (
        HostMount(host_path="/", container_path="/host"),
        HostMount(host_path="/var/log", container_path="/host/var/log", read_only=True),
    )
    assert rec.container(C2) is None  # two containers, id unknown: no guess


def test_pod_ips_and_the_lookup_by_ip() -> None:
    """status.podIPs (primary first); none for hostNetwork (the node's addresses); the
    newest Pod with an address has it; a deleted Pod's for the grace period only."""
    now = [0.0]
    cache = PodCache(ttl_s=3600, grace_s=60, timer=lambda: now[0])
    web = make_pod("web", U1, pod_ips=["10.244.1.5", "fd00::5"])
    assert pod_from_json(web).info.ips == ["10.244.1.5", "fd00::5"]
    assert pod_from_json(make_pod("agent", U2, pod_ips=["192.168.1.10"], host_network=True)).info.ips == []
    cache.upsert(pod_from_json(web))
    assert cache.by_ip("10.244.1.5").name == "web" and cache.by_ip("fd00::5").name == "web"
    assert cache.by_ip("10.244.1.6") is None
    # A new address (the old one is not the Pod's any more), then deleted: grace, then gone.
    cache.upsert(pod_from_json(make_pod("web", U1, pod_ips=["10.244.1.7"])))
    assert cache.by_ip("10.244.1.5") is None and cache.by_ip("10.244.1.7").name == "web"
    cache.delete(pod_from_json(make_pod("web", U1, pod_ips=["10.244.1.7"])))
    assert cache.by_ip("10.244.1.7").name == "web"
    # The address is reused by a new Pod at once: the live one wins.
    cache.upsert(pod_from_json(make_pod("db", U3, pod_ips=["10.244.1.7"])))
    assert cache.by_ip("10.244.1.7").name == "db"
    cache.delete(pod_from_json(make_pod("db", U3, pod_ips=["10.244.1.7"])))
    now[0] = 61.0
    assert cache.by_ip("10.244.1.7") is None


def test_list_then_watch_add_modify_delete_with_grace(api: FaultyApiServer) -> None:
    now = [0.0]
    cache = PodCache(ttl_s=3600, grace_s=60, timer=lambda: now[0])
    api.add_pod(make_pod("before", U1, containers=[("c", "img:1", f"containerd://{C1}")]))
    api.add_pod(make_pod("elsewhere", U3, node="node-b", containers=[("c", "img:3", f"containerd://{C3}")]))
    w = watcher_for(api, cache)
    w.start()
    try:
        assert wait(w.connected.is_set)
        assert cache.lookup(C1, "").info.name == "before"
        assert cache.lookup(C3, U3) is None  # fieldSelector: only this node's Pods
        # Added after start, first without a container id (Pending), then Running.
        api.add_pod(make_pod("after", U2, containers=[("c", "img:2", "")]))
        assert wait(lambda: cache.lookup("", U2) is not None)
        api.modify_pod(make_pod("after", U2, containers=[("c", "img:2", f"cri-o://{C2}")]))
        assert wait(lambda: C2 in cache.lookup("", U2).by_id)
        assert cache.lookup(C2, "").by_id[C2].runtime == "cri-o"
        # Deleted: still resolves during the grace period, then not.
        api.delete_pod(U1)
        assert wait(lambda: len(cache) == 1)
        assert cache.lookup(C1, U1).info.name == "before"
        now[0] = 61.0
        assert cache.lookup(C1, U1) is None
        assert w.lists == 1  # no relist was needed
    finally:
        w.stop()
    watch_requests = [r for r in api.requests if "watch=1" in r]
    assert "fieldSelector=spec.nodeName%3Dnode-a" in watch_requests[0]
    assert "resourceVersion=102" in watch_requests[0]


def test_dropped_watch_resumes_from_resource_version(api: FaultyApiServer) -> None:
    cache = PodCache()
    w = watcher_for(api, cache)
    w.start()
    try:
        assert wait(w.connected.is_set)
        api.add_pod(make_pod("a", U1))
        assert wait(lambda: cache.lookup("", U1) is not None)
        rv = w.resource_version
        api.drop_watches()
        api.add_pod(make_pod("b", U2))  # happens while no watch is open
        assert wait(lambda: cache.lookup("", U2) is not None)
        assert w.lists == 1 and w.watches >= 2
        resumed = [r for r in api.requests if "watch=1" in r][1]
        assert f"resourceVersion={rv}" in resumed
    finally:
        w.stop()


@pytest.mark.parametrize("as_http", [False, True], ids=["watch-error-event", "http-status"])
def test_410_gone_relists(api: FaultyApiServer, as_http: bool) -> None:
    api.gone_as_http = as_http
    cache = PodCache()
    api.add_pod(make_pod("a", U1))
    w = watcher_for(api, cache)
    relists = metric("provex_k8s_relists_total", cause="gone")
    w.start()
    try:
        assert wait(w.connected.is_set)
        # The Pods change and the history is compacted in one step (the server's lock is
        # re-entrant), so no watch, open or about to open, can see the changes as events:
        # resuming from the listed version must get 410 Gone and relist. (Compacting first and
        # changing after let an open watch deliver the changes, so no relist was needed.)
        with api.cond:
            api.delete_pod(U1)
            api.add_pod(make_pod("b", U2))
            api.compact()
        assert wait(lambda: w.lists >= 2)
        assert wait(lambda: cache.lookup("", U2) is not None)
        assert len(cache) == 1  # "a" vanished between lists: treated as deleted (still in grace)
        assert cache.lookup("", U1) is not None
        assert metric("provex_k8s_relists_total", cause="gone") > relists
    finally:
        w.stop()


def test_a_compaction_once_the_watch_is_open_always_ends_it(api: FaultyApiServer) -> None:
    """The relist test's old race: the server read its watch epoch only after answering, so a
    compaction the client made as soon as the watch opened could go unseen by that watch."""
    api.add_pod(make_pod("a", U1))
    client = KubeClient(KubeAuth(server=api.url), timeout_s=5)
    rv = client.get_json("/api/v1/pods")["metadata"]["resourceVersion"]
    for _ in range(20):
        # Ends at once when the compaction is seen; otherwise only at the 30 s idle timeout.
        events = list(client.watch(f"/api/v1/pods?watch=1&resourceVersion={rv}", 30, on_open=api.compact))
        assert events == []
        rv = client.get_json("/api/v1/pods")["metadata"]["resourceVersion"]


def test_close_all_also_aborts_a_request_still_connecting(api: FaultyApiServer) -> None:
    """stop() closes every connection; one whose socket did not exist yet used to go on (and
    a watch then held the watcher's thread past its 10 s join)."""
    client = KubeClient(KubeAuth(server=api.url), timeout_s=5)
    conn = client._connect(5)  # the request is about to be sent: no socket yet
    client.close_all()
    with pytest.raises(ConnectionAbortedError):
        client._request(conn, "/version")
    client._forget(conn)
    assert client.get_json("/version")["major"] == "1"  # later requests are not affected


def test_server_down_degrades_and_recovers(api: FaultyApiServer) -> None:
    cache = PodCache()
    api.add_pod(make_pod("a", U1))
    w = watcher_for(api, cache)
    w.start()
    try:
        assert wait(w.connected.is_set)
        assert metric("provex_k8s_connected") == 1
        errors = metric("provex_k8s_watch_errors_total", cause="refused")
        api.stop()
        assert wait(lambda: not w.connected.is_set())
        assert wait(lambda: metric("provex_k8s_watch_errors_total", cause="refused") > errors)
        assert metric("provex_k8s_connected") == 0
        assert cache.lookup("", U1) is not None  # what we knew stays usable
        api.add_pod(make_pod("b", U2))  # changes while we were away
        api.start()  # same port
        assert wait(w.connected.is_set)
        assert wait(lambda: cache.lookup("", U2) is not None)
    finally:
        w.stop()


def test_garbage_json_is_counted_and_recovered(api: FaultyApiServer) -> None:
    api.garbage = True
    cache = PodCache()
    w = watcher_for(api, cache)
    before = metric("provex_k8s_watch_errors_total", cause="bad_response")
    w.start()
    try:
        assert wait(lambda: metric("provex_k8s_watch_errors_total", cause="bad_response") > before)
        assert not cache.synced
        api.garbage = False
        api.add_pod(make_pod("a", U1))
        assert wait(lambda: cache.lookup("", U1) is not None)
    finally:
        w.stop()


# -- fidelity of the double: the real kubectl must accept it ------------------------------


def _kubectl(api: FaultyApiServer, tmp_path: Path) -> tuple[str, dict[str, str]]:
    kubectl = tool("kubectl")  # the real client; CI fails without it
    kc = api.write_kubeconfig(str(tmp_path / "kubeconfig"))
    env = {**os.environ, "KUBECONFIG": kc, "HOME": str(tmp_path)}
    return kubectl, env


def test_kubectl_lists_pods(api: FaultyApiServer, tmp_path: Path) -> None:
    kubectl, env = _kubectl(api, tmp_path)
    api.add_pod(make_pod("web", U1, containers=[("nginx", "nginx:1.27", f"containerd://{C1}")]))
    out = subprocess.run(
        [kubectl, "get", "pods", "-A", "-o", "json", "--request-timeout=10s"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["kind"] == "List"
    assert [
        (p["metadata"]["name"], p["status"]["containerStatuses"][0]["containerID"]) for p in doc["items"]
    ] == [("web", f"containerd://{C1}")]


def test_kubectl_watch_receives_injected_events(api: FaultyApiServer, tmp_path: Path) -> None:
    kubectl, env = _kubectl(api, tmp_path)
    api.add_pod(make_pod("first", U1))
    proc = subprocess.Popen(
        [kubectl, "get", "pods", "-A", "--watch", "-o", "json", "--request-timeout=30s"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait(lambda: api.open_watches > 0, timeout=30), "kubectl never opened a watch"
        api.add_pod(make_pod("second", U2))
        api.modify_pod(make_pod("second", U2, labels={"app": "second", "v": "2"}))
        api.delete_pod(U1)
        time.sleep(1.0)  # let kubectl print; the assertions below are on content only
    finally:
        proc.kill()
        out, err = proc.communicate(timeout=30)
    decoder, pos, seen = json.JSONDecoder(), 0, []
    while pos < len(out):
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos >= len(out):
            break
        obj, pos = decoder.raw_decode(out, pos)
        seen.append((obj["metadata"]["name"], obj["metadata"].get("labels", {}).get("v")))
    assert seen[0] == ("first", None), err
    assert ("second", None) in seen and ("second", "2") in seen
    assert seen.count(("first", None)) == 2  # the list, then the DELETED event
    watch = [r for r in api.requests if "watch=true" in r]
    assert watch and "resourceVersion=" in watch[0]


def test_warnings_are_rate_limited_per_cause(caplog: pytest.LogCaptureFixture) -> None:
    from exporter.logs import RateLimitedWarning

    now = [0.0]
    warn = RateLimitedWarning(logging.getLogger("provex.enrich"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="provex.enrich"):
        assert warn("refused", "down")
        assert not warn("refused", "down")  # same cause within the minute: silent
        assert warn("tls", "bad cert")  # another cause speaks
        now[0] = 61.0
        assert warn("refused", "down")
    assert [r.fields["cause"] for r in caplog.records] == ["refused", "tls", "refused"]
    assert [r.fields.get("repeats_held_back") for r in caplog.records] == [None, None, 1]
