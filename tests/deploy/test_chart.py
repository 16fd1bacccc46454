"""The helm/provex chart, rendered by Helm's template engine and checked with the Kubernetes models."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from tests.collector import documented_keys as documented
from tests.deploy.chart import Rendered, Renderer, RenderError, readme_capabilities
from tests.deploy.strict_k8s import ManifestError, load_documents, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "deploy"
BACKENDS = ["elasticsearch", "loki", "splunk"]


def fixture_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / f"values-{name}.yaml").read_text())


def agent_container(rendered: Rendered) -> dict[str, Any]:
    ds = rendered.find("DaemonSet", "provex")
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    return container


# --- every object the chart renders is a valid Kubernetes object ------------


def _validate_all(rendered: Rendered) -> list[str]:
    kinds = []
    for path, obj in rendered.objects():
        if obj["kind"] == "ServiceMonitor":
            _validate_service_monitor(obj, path)
        else:
            validate(obj, path)
        kinds.append(obj["kind"])
    return kinds


def test_default_values_render_valid_objects(renderer: Renderer) -> None:
    rendered = renderer.render()
    kinds = _validate_all(rendered)
    assert sorted(kinds) == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ConfigMap",
            "ConfigMap",
            "DaemonSet",
        ]
    )
    assert "<no value>" not in "".join(rendered.manifests.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_renders_valid_objects(renderer: Renderer, backend: str) -> None:
    rendered = renderer.render(fixture_values(backend))
    kinds = _validate_all(rendered)
    collector_kind = "DaemonSet" if backend == "loki" else "Deployment"  # the loki fixture is per node
    assert kinds.count("Service") == 1
    assert collector_kind in kinds
    assert "<no value>" not in "".join(rendered.manifests.values())


def test_every_optional_part_renders_valid_objects(renderer: Renderer) -> None:
    rendered = renderer.render(fixture_values("everything"), api_versions="monitoring.coreos.com/v1")
    kinds = _validate_all(rendered)
    assert "ServiceMonitor" in kinds
    container = agent_container(rendered)
    assert container["image"] == "provex@" + fixture_values("everything")["image"]["digest"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/sys/kernel/debug" in mounts


# --- the strict checker really is strict -------------------------------------


def test_strict_validation_refuses_a_misspelt_key(renderer: Renderer) -> None:
    ds = renderer.render().find("DaemonSet", "provex")
    validate(ds, "daemonset")
    bad = copy.deepcopy(ds)
    bad["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(ManifestError, match=r"unknown key 'hostPid' for V1PodSpec"):
        validate(bad, "daemonset")
    bad = copy.deepcopy(ds)
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(ManifestError, match=r"containers\[0\]\.securityContext: unknown key"):
        validate(bad, "daemonset")


def test_strict_validation_refuses_wrong_types_and_missing_fields(renderer: Renderer) -> None:
    ds = renderer.render().find("DaemonSet", "provex")
    bad = copy.deepcopy(ds)
    bad["spec"]["template"]["spec"]["hostPID"] = "true"
    with pytest.raises(ManifestError, match=r"hostPID: expected bool, got str"):
        validate(bad, "daemonset")
    bad = copy.deepcopy(ds)
    del bad["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ManifestError, match=r"containers\[0\]: V1Container: .*name"):
        validate(bad, "daemonset")
    with pytest.raises(ManifestError, match="not a built-in Kubernetes kind"):
        validate({"apiVersion": "v1", "kind": "Pdo", "metadata": {"name": "x"}}, "x")


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ManifestError, match="line 3: duplicate key 'a'"):
        load_documents("kind: X\na: 1\na: 2\n", "dup.yaml")


# --- least privilege ---------------------------------------------------------


def test_agent_is_not_privileged_and_has_exactly_the_justified_capabilities(renderer: Renderer) -> None:
    rendered = renderer.render()
    ds = rendered.find("DaemonSet", "provex")
    pod = ds["spec"]["template"]["spec"]
    sc = agent_container(rendered)["securityContext"]
    default_caps, optional_caps = readme_capabilities()
    assert default_caps, "helm/provex/README.md has no privileges table"
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == default_caps
    assert len(sc["capabilities"]["add"]) == len(default_caps)
    assert {"SYS_ADMIN", "DAC_READ_SEARCH"} <= optional_caps
    assert pod["hostPID"] is True
    for shared in ("hostNetwork", "hostIPC", "hostUsers"):
        assert shared not in pod
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_host_path_is_mounted_read_only(renderer: Renderer) -> None:
    rendered = renderer.render(fixture_values("everything"))
    pod = rendered.find("DaemonSet", "provex")["spec"]["template"]["spec"]
    host_volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert set(host_volumes.values()) == {
        "/sys/kernel/tracing",
        "/sys/kernel/debug",
        "/sys/fs/cgroup",
        "/lib/modules",
        "/usr/src",
    }
    for mount in pod["containers"][0]["volumeMounts"]:
        if mount["name"] in host_volumes:
            assert mount.get("readOnly") is True, mount
    writable = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/lib/modules", "/tmp"}  # both emptyDir with a size limit
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v}
    assert set(sizes) == {"modules", "tmp"}


def test_privileged_and_sys_admin_only_behind_values(renderer: Renderer) -> None:
    sc = agent_container(renderer.render({"agent": {"securityContext": {"sysAdmin": True}}}))[
        "securityContext"
    ]
    assert sc["privileged"] is False
    assert "SYS_ADMIN" in sc["capabilities"]["add"]
    sc = agent_container(renderer.render({"agent": {"securityContext": {"privileged": True}}}))[
        "securityContext"
    ]
    assert sc["privileged"] is True
    assert "capabilities" not in sc
    rendered = renderer.render({"agent": {"securityContext": {"privileged": True}}})
    assert "WARNING" in rendered.notes


def test_non_root_mode(renderer: Renderer) -> None:
    rendered = renderer.render({"agent": {"securityContext": {"nonRoot": True}}})
    _validate_all(rendered)
    sc = agent_container(rendered)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    # File capabilities are only granted by an exec that may raise privileges.
    assert sc["allowPrivilegeEscalation"] is True
    assert set(sc["capabilities"]["add"]) == readme_capabilities()[0] | {"DAC_READ_SEARCH"}


def test_rbac_grants_only_reads_of_pods_services_endpoints(renderer: Renderer) -> None:
    rendered = renderer.render(fixture_values("everything"))
    roles = [o for _, o in rendered.objects() if o["kind"] in ("ClusterRole", "Role")]
    assert {r["kind"] for r in roles} == {"ClusterRole", "Role"}
    for role in roles:
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            assert rule["apiGroups"] == [""]
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
            assert set(rule["resources"]) <= {"pods", "services", "endpoints"}
    cluster_role = rendered.find("ClusterRole", "provex")
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    role = rendered.find("Role", "-apiserver")
    assert role["metadata"]["namespace"] == "default"
    assert role["rules"][0]["resourceNames"] == ["kubernetes"]
    binding = rendered.find("ClusterRoleBinding", "provex")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "provex", "namespace": "provex-system"}]


def test_rbac_and_service_account_can_be_left_to_the_user(renderer: Renderer) -> None:
    rendered = renderer.render(
        {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}}
    )
    kinds = {o["kind"] for _, o in rendered.objects()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert rendered.find("DaemonSet", "provex")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# --- the agent: command, probes, config --------------------------------------


def test_agent_runs_provex_with_probes_and_node_name(renderer: Renderer) -> None:
    rendered = renderer.render()
    container = agent_container(rendered)
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    # Bound on the Pod's own IP: what the kubelet's probes and the scrape reach, nothing else.
    assert container["args"][:6] == [
        "provex", "run", "--config", "/etc/provex/provex.yaml", "--health-addr", f"$(POD_IP):{port}"
    ]  # fmt: skip
    probe = {"path": "/healthz", "port": "metrics", "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"] == probe
    assert container["readinessProbe"]["httpGet"] == {**probe, "path": "/readyz"}
    assert container["startupProbe"]["httpGet"] == probe
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert list(env).index("POD_IP") == 0  # $(POD_IP) expands only from variables defined before
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    annotations = rendered.find("DaemonSet", "provex")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    config = yaml.safe_load(rendered.find("ConfigMap", "provex")["data"]["provex.yaml"])
    assert "server" not in config  # the address is the Pod's, on the command line


def _agent_config(rendered: Rendered, tmp_path: Path) -> Any:
    text = rendered.find("ConfigMap", "provex")["data"]["provex.yaml"]
    path = tmp_path / "provex.yaml"
    path.write_text(text)
    return load_config(path, environ={})


def test_agent_config_is_accepted_by_the_provex_loader(renderer: Renderer, tmp_path: Path) -> None:
    config = _agent_config(renderer.render(), tmp_path)
    assert config.output.schema == "raw"  # no collector, no endpoint: JSON lines on stdout
    assert config.output.otlp.endpoint == ""
    assert config.correlate.rules_dirs == ["/etc/provex/rules"]
    assert config.enrich.node_name == ""  # falls back to $NODE_NAME (downward API)
    assert config.output.otlp.insecure is None  # decided from the endpoint's scheme


def test_otlp_to_an_existing_collector(renderer: Renderer, tmp_path: Path) -> None:
    values = {"otlp": {"endpoint": "https://otel.example.internal:4317", "headers": {"x-tenant": "sec"}}}
    config = _agent_config(renderer.render(values), tmp_path)
    assert config.output.otlp.endpoint == "https://otel.example.internal:4317"
    assert config.output.otlp.insecure is None
    assert config.output.otlp.headers == {"x-tenant": "sec"}
    values["otlp"]["insecure"] = False
    assert _agent_config(renderer.render(values), tmp_path).output.otlp.insecure is False


@pytest.mark.parametrize("backend", BACKENDS)
def test_agent_sends_to_the_bundled_collector(renderer: Renderer, tmp_path: Path, backend: str) -> None:
    values = fixture_values(backend)
    config = _agent_config(renderer.render(values), tmp_path)
    port = 4318 if values.get("otlp", {}).get("protocol") == "http/protobuf" else 4317
    assert config.output.otlp.endpoint == f"http://provex-collector.provex-system.svc:{port}"
    assert config.output.schema == ("ocsf" if backend == "splunk" else "ecs")  # what the backend reads
    assert config.output.otlp.insecure is True


def test_agent_config_values_merge_over_the_chart(renderer: Renderer, tmp_path: Path) -> None:
    rendered = renderer.render(fixture_values("everything"))
    config = _agent_config(rendered, tmp_path)
    assert config.probes.ring_buffer_pages == 512
    assert config.enrich.cluster_name == "prod-eu"
    assert config.correlate.window_s == 300
    # The user's rule directories are kept and the chart's rules still load.
    assert config.correlate.rules_dirs == ["/opt/extra-rules", "/etc/provex/rules"]


def test_config_change_rolls_the_agents(renderer: Renderer) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        ds = renderer.render(values).find("DaemonSet", "provex")
        return ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(None) == checksum(None)
    assert checksum(None) != checksum({"agent": {"logLevel": "debug"}})
    # Rules are reloaded in place (the mounted ConfigMap changes, the agents watch it).
    assert checksum(None) == checksum({"rules": {"mine.yml": "title: Mine\n"}})


# --- rules from values ---------------------------------------------------------


def test_user_rules_land_in_the_rules_configmap(renderer: Renderer) -> None:
    values = fixture_values("everything")
    rendered = renderer.render(values)
    data = rendered.find("ConfigMap", "-rules")["data"]
    assert data == values["rules"]
    pod = rendered.find("DaemonSet", "provex")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "rules")
    assert mount["mountPath"] == "/etc/provex/rules"


def test_a_broken_rule_is_refused_with_its_name(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match=r"rules\.bad\.yml: not valid YAML"):
        renderer.render({"rules": {"bad.yml": "title: [unclosed\n"}})
    with pytest.raises(RenderError, match=r"rules\.untitled\.yml: a Sigma rule needs a title"):
        renderer.render({"rules": {"untitled.yml": "detection: {}\n"}})


# --- collector -------------------------------------------------------------------


def _collector_config(rendered: Rendered) -> dict[str, Any]:
    return yaml.safe_load(rendered.find("ConfigMap", "-collector")["data"]["config.yaml"])


def _check_pipeline_references(config: dict[str, Any]) -> None:
    for name, pipeline in config["service"]["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config[section], f"pipeline {name}: {section} {component} is not defined"
    for ext in config["service"].get("extensions", []):
        assert ext in config["extensions"]
    for section in ("receivers", "processors", "exporters", "extensions"):
        used = {c for p in config["service"]["pipelines"].values() for c in p.get(section, [])}
        used |= set(config["service"].get("extensions", [])) if section == "extensions" else set()
        assert set(config.get(section, {})) == used, f"{section} defined but unused"


@pytest.mark.parametrize("backend", BACKENDS)
def test_collector_pipeline_per_backend(renderer: Renderer, backend: str) -> None:
    rendered = renderer.render(fixture_values(backend))
    config = _collector_config(rendered)
    _check_pipeline_references(config)
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"logs/alerts", "logs/events"}
    alerts, events = pipelines["logs/alerts"], pipelines["logs/events"]
    for pipeline in (alerts, events):
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["processors"][0] == "memory_limiter"
    # Raw events are batched; alerts never wait behind a batch.
    assert events["processors"][-1] == "batch/events"
    assert not any(p.startswith("batch") for p in alerts["processors"])
    assert "filter/only_alerts" in alerts["processors"] and "filter/only_events" in events["processors"]
    scope_rules = (
        config["processors"]["filter/only_alerts"]["logs"]["log_record"]
        + config["processors"]["filter/only_events"]["logs"]["log_record"]
    )
    assert scope_rules == [
        'instrumentation_scope.name != "provex.alerts"',
        'instrumentation_scope.name == "provex.alerts"',
    ]
    # Separate exporters, so separate queues.
    (alert_exporter_name,), (event_exporter_name,) = alerts["exporters"], events["exporters"]
    assert alert_exporter_name != event_exporter_name
    exporter = config["exporters"][alert_exporter_name]
    event_exporter = config["exporters"][event_exporter_name]
    if backend == "elasticsearch":  # retries per bulk request, under another key
        assert "retry_on_failure" not in exporter and exporter["retry"]["enabled"] is True
    else:
        assert exporter["retry_on_failure"]["max_elapsed_time"] == "0s"  # alerts: until the queue fills
    assert exporter["sending_queue"]["queue_size"] < event_exporter["sending_queue"]["queue_size"]
    kind = "DaemonSet" if backend == "loki" else "Deployment"
    pod = rendered.find(kind, "-collector")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    if backend == "elasticsearch":
        # mapping::mode is deprecated (collector-contrib v0.144.0): the scope attribute decides.
        assert "mapping" not in exporter and "mapping" not in event_exporter
        assert config["processors"]["transform/bodymap"]["log_statements"] == [
            {"context": "scope", "statements": ['set(attributes["elastic.mapping.mode"], "bodymap")']}
        ]
        assert "transform/bodymap" in alerts["processors"] and "transform/bodymap" in events["processors"]
        assert exporter["logs_index"] == "logs-provex.alerts-prod"
        assert event_exporter["logs_index"] == "logs-provex.events-default"
        assert exporter["flush"]["interval"] == "100ms"  # not the bulk indexer's 30 s default
        assert exporter["password"] == "${env:ELASTICSEARCH_PASSWORD}"
        assert env["ELASTICSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "es-credentials",
            "key": "password",
        }
    elif backend == "loki":
        assert alert_exporter_name.startswith("otlp_http/")  # `otlphttp` before collector v0.144
        assert exporter["endpoint"].endswith("/otlp")
        assert config["processors"]["groupbyattrs"]["keys"] == ["k8s.namespace.name", "k8s.pod.name"]
        assert events["processors"] == [
            "memory_limiter",
            "filter/only_events",
            "groupbyattrs",
            "batch/events",
        ]
        assert exporter["headers"] == {"X-Scope-OrgID": "security"}
        assert exporter["auth"] == {"authenticator": "basicauth/loki"}
        assert config["extensions"]["basicauth/loki"]["client_auth"]["password"] == "${env:LOKI_PASSWORD}"
        assert env["LOKI_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "loki-credentials"
        service = rendered.find("Service", "-collector")
        assert service["spec"]["internalTrafficPolicy"] == "Local"
    else:
        assert exporter["token"] == "${env:SPLUNK_HEC_TOKEN}"
        assert (exporter["sourcetype"], event_exporter["sourcetype"]) == (
            "provex:ocsf:finding",
            "provex:ocsf:activity",
        )
        assert env["SPLUNK_HEC_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "splunk-hec", "key": "token"}
    # No credential is ever written into the collector's config.
    text = rendered.find("ConfigMap", "-collector")["data"]["config.yaml"]
    assert not re.search(r"(password|token):\s+[^$\s{]", text)


def _undocumented(section: Any, documented: Any, where: str) -> list[str]:
    if documented is None or not isinstance(section, dict):
        return []
    if not isinstance(documented, dict):
        return [f"{where}: documented as a value, got a section"]
    out = []
    for key, value in section.items():
        out += (
            [f"{where}.{key}"]
            if key not in documented
            else _undocumented(value, documented[key], f"{where}.{key}")
        )
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_collector_components_use_documented_keys(renderer: Renderer, backend: str) -> None:
    # The component key lists otel-collector/ is checked against (collector v0.144.0).
    config = _collector_config(renderer.render(fixture_values(backend)))
    problems, unchecked = [], []
    for kind, components in documented.KINDS.items():
        for name, section in config.get(kind, {}).items():
            ctype = name.split("/", 1)[0]
            if ctype not in components:
                unchecked.append(f"{kind}.{name}")
                continue
            problems += _undocumented(section or {}, components[ctype], f"{kind}.{name}")
    assert problems == []
    assert unchecked == (["extensions.basicauth/loki"] if backend == "loki" else [])


def test_splunk_without_a_token_secret_is_refused(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match=r"collector\.splunk\.token\.existingSecret"):
        renderer.render({"collector": {"enabled": True, "backend": "splunk"}})


def test_collector_runs_unprivileged(renderer: Renderer) -> None:
    rendered = renderer.render(fixture_values("elasticsearch"))
    pod = rendered.find("Deployment", "-collector")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["GOMEMLIMIT"] == "409MiB"  # 80 % of the 512Mi limit


# --- NOTES.txt -------------------------------------------------------------------


SPLUNK_TOKEN = {"token": {"existingSecret": "splunk-hec"}}
# Where the first alert is, and how to find it, for each destination and schema the chart can render.
NOTES_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("stdout", {}, "raw", "grep '{\"alert\"'"),
    ("stdout", {"agent": {"schema": "ecs"}}, "ecs", 'grep \'"kind":"alert"\''),
    ("stdout", {"agent": {"schema": "ocsf"}}, "ocsf", "grep '\"class_uid\":2004'"),
    ("endpoint", {"otlp": {"endpoint": "https://otel:4317"}}, "ecs", "(event.kind: alert)"),
    (
        "endpoint",
        {"otlp": {"endpoint": "https://otel:4317"}, "agent": {"schema": "ocsf"}},
        "ocsf",
        "class_uid 2004",
    ),
]
for _backend, _ecs, _ocsf in [
    ("elasticsearch", 'event.kind : "alert"', "class_uid : 2004"),
    ("loki", '| json | event_kind="alert"', '| json | class_uid="2004"'),
    ("splunk", 'event.kind="alert"', 'class_name="Detection Finding"'),
]:
    _collector = {"enabled": True, "backend": _backend, "splunk": SPLUNK_TOKEN}
    _default = "ocsf" if _backend == "splunk" else "ecs"
    NOTES_CASES += [
        (_backend, {"collector": _collector}, _default, _ocsf if _default == "ocsf" else _ecs),
        (_backend, {"collector": _collector, "agent": {"schema": "ecs"}}, "ecs", _ecs),
        (_backend, {"collector": _collector, "agent": {"schema": "ocsf"}}, "ocsf", _ocsf),
    ]


@pytest.mark.parametrize(
    ("where", "values", "schema", "query"),
    NOTES_CASES,
    ids=[f"{w}-{s}-{'set' if 'agent' in v else 'auto'}" for w, v, s, _ in NOTES_CASES],
)
def test_notes_match_what_the_agent_ships(
    renderer: Renderer, tmp_path: Path, where: str, values: dict[str, Any], schema: str, query: str
) -> None:
    """The backend sets the schema it reads unless one is chosen, and NOTES name the schema and
    the query of the output the agent's own config (checked by provex's loader) really produces."""
    rendered = renderer.render(values)
    config = _agent_config(rendered, tmp_path)
    assert config.output.schema == schema
    notes = rendered.notes
    assert "kubectl run provex-smoke" in notes
    assert query in notes
    assert "<no value>" not in notes
    if schema != "raw":
        assert f"as {schema.upper()} documents" in notes
    if where == "stdout":
        assert config.output.otlp.endpoint == ""
    else:
        assert config.output.otlp.endpoint


def test_raw_with_an_endpoint_is_refused(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match=r"agent\.schema=raw writes JSON lines on stdout"):
        renderer.render({"agent": {"schema": "raw"}, "otlp": {"endpoint": "http://otel:4317"}})


# --- exposure: TLS, a token, a NetworkPolicy, a ServiceMonitor -------------------------


def test_exposure_is_opt_in_and_coherent(renderer: Renderer, tmp_path: Path) -> None:
    values = fixture_values("everything")
    rendered = renderer.render(values, api_versions="monitoring.coreos.com/v1")
    _validate_all(rendered)
    container = agent_container(rendered)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/provex/tls"]["readOnly"] and mounts["/etc/provex/metrics-token"]["readOnly"]
    pod = rendered.find("DaemonSet", "provex")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert secrets == {"metrics-tls": "provex-metrics-tls", "metrics-token": "provex-metrics-token"}
    config = _agent_config(rendered, tmp_path)
    assert (config.server.tls_cert_file, config.server.tls_key_file) == (
        "/etc/provex/tls/tls.crt",
        "/etc/provex/tls/tls.key",
    )
    assert config.server.metrics_token_file == "/etc/provex/metrics-token/token"
    endpoint = rendered.find("ServiceMonitor", "provex")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == values["metrics"]["serviceMonitor"]["tlsConfig"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "provex-metrics-token", "key": "token"},
    }
    assert rendered.find("Service", "-metrics")["spec"]["publishNotReadyAddresses"] is True
    policy = rendered.find("NetworkPolicy", "-agent")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "agent"
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert "NetworkPolicy admits only connections to that port" in rendered.notes


def test_no_exposure_options_by_default(renderer: Renderer) -> None:
    rendered = renderer.render()
    kinds = {o["kind"] for _, o in rendered.objects()}
    assert "NetworkPolicy" not in kinds and "ServiceMonitor" not in kinds
    assert not any(
        "secret" in v for v in rendered.find("DaemonSet", "provex")["spec"]["template"]["spec"]["volumes"]
    )


# --- ServiceMonitor (a CRD: no model in the Kubernetes client) --------------------

_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_SERVICE_MONITOR_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["selector", "endpoints"],
    "properties": {
        "selector": {"type": "object"},
        "namespaceSelector": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "any": {"type": "boolean"},
                "matchNames": {"type": "array", "items": {"type": "string"}},
            },
        },
        "endpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "port": {"type": "string"},
                    "path": {"type": "string"},
                    "scheme": {"enum": ["http", "https"]},
                    "interval": {"type": "string", "pattern": _DURATION},
                    "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                    "tlsConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "ca": {"type": "object"},
                            "cert": {"type": "object"},
                            "keySecret": {"type": "object"},
                            "serverName": {"type": "string"},
                            "insecureSkipVerify": {"type": "boolean"},
                        },
                    },
                    "authorization": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "credentials": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name", "key"],
                                "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                            },
                        },
                    },
                    "relabelings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "sourceLabels": {"type": "array", "items": {"type": "string"}},
                                "targetLabel": {"type": "string"},
                                "action": {"type": "string"},
                                "regex": {"type": "string"},
                                "replacement": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _validate_service_monitor(obj: dict[str, Any], where: str) -> None:
    """The fields the chart uses, from the monitoring.coreos.com/v1 CRD, unknown keys refused."""
    import jsonschema
    from kubernetes.client.models import V1LabelSelector, V1ObjectMeta  # noqa: F401

    from tests.deploy.strict_k8s import build

    assert obj["apiVersion"] == "monitoring.coreos.com/v1", where
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, where
    build(obj["metadata"], "V1ObjectMeta", f"{where}:metadata")
    build(obj["spec"]["selector"], "V1LabelSelector", f"{where}:spec.selector")
    jsonschema.validate(obj["spec"], _SERVICE_MONITOR_SPEC)


def test_service_monitor_checker_refuses_unknown_keys(renderer: Renderer) -> None:
    import jsonschema

    rendered = renderer.render(fixture_values("everything"))
    monitor = rendered.find("ServiceMonitor", "provex")
    _validate_service_monitor(monitor, "sm")
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError, match="scrapeIntervall"):
        _validate_service_monitor(monitor, "sm")
