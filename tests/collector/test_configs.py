"""Every collector config in otel-collector/ is checked structurally.

No collector runs here (see otel-collector/README.md): these tests check that
each file is valid YAML, that every pipeline's receivers, processors and
exporters (and every service extension) are defined, that every component's
keys are ones its documentation lists (tests/collector/documented_keys.py),
and the properties provex relies on: alerts never pass a batch processor,
memory_limiter comes first, exporters queue and retry.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.collector.documented_keys import KINDS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "otel-collector"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def component_type(name: str) -> str:
    return name.split("/", 1)[0]


def unknown_keys(section: Any, documented: Any, where: str) -> list[str]:
    if documented is None or not isinstance(section, dict):
        return []
    if not isinstance(documented, dict):
        return [f"{where}: documented as a value, got a section"] if isinstance(section, dict) else []
    out = []
    for key, value in section.items():
        if key not in documented:
            out.append(f"{where}.{key}")
        else:
            out += unknown_keys(value, documented[key], f"{where}.{key}")
    return out


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"agent.yaml", "gateway-elasticsearch.yaml", "gateway-loki.yaml", "gateway-splunk.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_pipelines_reference_defined_components(path: Path) -> None:
    config = load(path)
    service = config["service"]
    for extension in service.get("extensions", []):
        assert extension in config.get("extensions", {}), f"extension {extension} not defined"
    assert service["pipelines"], "no pipelines"
    for name, pipeline in service["pipelines"].items():
        assert name.split("/")[0] in ("logs", "metrics", "traces")
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), f"{name}: {kind[:-1]} {component} not defined"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_components_use_documented_keys(path: Path) -> None:
    config = load(path)
    problems = []
    for kind, documented in KINDS.items():
        for name, section in (config.get(kind) or {}).items():
            ctype = component_type(name)
            assert ctype in documented, f"{kind}: no documented keys for {ctype!r} (add them with a source)"
            problems += unknown_keys(section or {}, documented[ctype], f"{kind}.{name}")
    assert problems == [], f"keys the collector does not document: {problems}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_alerts_skip_batching_and_everything_is_bounded(path: Path) -> None:
    config = load(path)
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"logs/alerts", "logs/events"}
    for name, pipeline in pipelines.items():
        processors = pipeline.get("processors", [])
        assert processors[0] == "memory_limiter", f"{name}: memory_limiter must come first"
        if name == "logs/alerts":
            assert not any(component_type(p) == "batch" for p in processors), (
                "alerts must not wait for a batch"
            )
            assert "filter/only_alerts" in processors
        else:
            assert "filter/only_events" in processors
        for exporter in pipeline["exporters"]:
            section = config["exporters"][exporter]
            assert section["sending_queue"]["enabled"] is True, f"{exporter}: needs a bounded sending queue"
            retry = section.get("retry_on_failure") or section.get("retry")
            assert retry and retry["enabled"] is True, f"{exporter}: needs retries"


def test_filters_split_on_provex_scopes() -> None:
    # The scope names the filters test are the ones the sink emits on.
    from exporter.emit.otlp import ALERT_SCOPE

    for path in CONFIGS:
        processors = load(path)["processors"]
        assert processors["filter/only_alerts"]["logs"]["log_record"] == [
            f'instrumentation_scope.name != "{ALERT_SCOPE}"'
        ]
        assert processors["filter/only_events"]["logs"]["log_record"] == [
            f'instrumentation_scope.name == "{ALERT_SCOPE}"'
        ]


def test_elasticsearch_uses_bodymap_per_scope() -> None:
    config = load(CONFIG_DIR / "gateway-elasticsearch.yaml")
    statements = config["processors"]["transform/bodymap"]["log_statements"]
    assert statements == [
        {"context": "scope", "statements": ['set(attributes["elastic.mapping.mode"], "bodymap")']}
    ]
    for name, exporter in config["exporters"].items():
        assert "mapping" not in exporter, f"{name}: mapping::mode is deprecated; the scope attribute decides"
        assert exporter["flush"]["interval"], name
    assert config["exporters"]["elasticsearch/alerts"]["flush"]["interval"] == "100ms"
    for pipeline in config["service"]["pipelines"].values():
        assert "transform/bodymap" in pipeline["processors"]


def test_loki_promotes_k8s_attributes_to_the_resource() -> None:
    config = load(CONFIG_DIR / "gateway-loki.yaml")
    assert config["processors"]["groupbyattrs/k8s"]["keys"] == ["k8s.namespace.name", "k8s.pod.name"]
    for pipeline in config["service"]["pipelines"].values():
        assert "groupbyattrs/k8s" in pipeline["processors"]
    for exporter in config["exporters"].values():
        assert exporter["endpoint"] == "${env:LOKI_OTLP_ENDPOINT}"


def test_splunk_sends_ocsf_with_sourcetype_and_index() -> None:
    config = load(CONFIG_DIR / "gateway-splunk.yaml")
    for exporter in config["exporters"].values():
        assert exporter["sourcetype"].startswith("provex:ocsf:")
        assert exporter["index"] and exporter["token"] == "${env:SPLUNK_HEC_TOKEN}"


_NODE_IDENTITY = re.compile(r"k8s\.node\.name|host\.name|device\.name|NODE_NAME|node_name")


def test_every_node_reaches_one_index() -> None:
    """Cross-node chains are joined in the SIEM: every node's documents must reach the same
    index (data stream, tenant). Every node collector sends to one gateway; the gateway
    listens for all nodes and routes nothing by node; each target has one destination."""
    from exporter.siem.pipeline import EVENTS_INDEX
    from scripts.dashboards import kibana_objects

    agent = load(CONFIG_DIR / "agent.yaml")
    assert {e["endpoint"] for e in agent["exporters"].values()} == {"${env:PROVEX_GATEWAY_ENDPOINT}"}
    destinations = {
        "gateway-elasticsearch.yaml": lambda e: e["logs_index"],
        "gateway-splunk.yaml": lambda e: e["index"],
        "gateway-loki.yaml": lambda e: e["headers"]["X-Scope-OrgID"],
    }
    for name, destination in destinations.items():
        config = load(CONFIG_DIR / name)
        for protocol in config["receivers"]["otlp"]["protocols"].values():
            assert protocol["endpoint"].startswith("0.0.0.0:"), f"{name}: every node must reach the gateway"
        routed = yaml.safe_dump({k: config.get(k) for k in ("processors", "exporters")})
        assert not _NODE_IDENTITY.search(routed), f"{name}: something routes or groups by node"
        targets = {destination(e) for e in config["exporters"].values()}
        if name == "gateway-elasticsearch.yaml":
            # One alerts stream and one events stream, fixed: the events one is what the
            # exported queries and the dashboards read.
            assert all("${" not in t for t in targets)
            assert not any("dynamic" in key for e in config["exporters"].values() for key in e)
            events = config["exporters"]["elasticsearch/events"]["logs_index"]
            assert fnmatch.fnmatch(events, EVENTS_INDEX)
            views = {o["attributes"]["title"] for o in kibana_objects() if o["type"] == "index-pattern"}
            assert all(any(fnmatch.fnmatch(t, v) for v in views) for t in targets)
        else:
            assert len(targets) == 1, f"{name}: alerts and events go to one place for every node"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_secrets_come_from_the_environment(path: Path) -> None:
    text = path.read_text()
    for key in ("token", "api_key", "password"):
        for value in re.findall(rf"^\s*{key}:\s*(.+)$", text, flags=re.M):
            assert value.strip().startswith("${env:"), f"{key} must come from the environment"


def test_the_checker_catches_undocumented_keys() -> None:
    from tests.collector.documented_keys import EXPORTERS

    section = {"endpoint": "x", "flush": {"interval": "1s", "intervall": "2s"}, "mapping_mode": "bodymap"}
    assert unknown_keys(section, EXPORTERS["elasticsearch"], "exporters.elasticsearch") == [
        "exporters.elasticsearch.flush.intervall",
        "exporters.elasticsearch.mapping_mode",
    ]
