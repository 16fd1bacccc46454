"""The shipped dashboards, built from one description of what they show.

siem/kibana/provex-dashboard.ndjson (Kibana saved objects) and
siem/grafana/provex-loki-dashboard.json (Grafana, Loki data source) are
generated here (`python scripts/dashboards.py siem/`); a test checks the
shipped files against this module and every field they name against what the
agent emits. Both answer the same questions: alerts over time by rule and by
ATT&CK technique, the Pods and namespaces with most alerts, the evidence
of each chain (the events an alert rests on, by event.id), and the connections
between Pods, outbound and inbound, from every node (a connect names the
destination Pod's address; an accept, on the other Pod's node, the peer's).

Elastic: the ECS body is the document (bodymap), alerts in
logs-provex.alerts-*, events in logs-provex.events-*. Loki: the ECS body is the
log line (`| json` flattens dots to underscores and skips arrays), resource
attributes k8s.namespace.name / k8s.pod.name are stream labels
(k8s_namespace_name, k8s_pod_name), record attributes (event.name,
container.id, provex.rule.id) are structured metadata (event_name, ...).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ALERTS_VIEW = "provex-alerts"
EVENTS_VIEW = "provex-events"
KIBANA_VERSION = "8.15.0"  # saved-object format; imports into 8.x and 9.x

# Columns of the chain-evidence tables (ECS fields of an alert document).
EVIDENCE_COLUMNS = [
    "rule.name",
    "event.severity",
    "orchestrator.namespace",
    "orchestrator.resource.name",
    "container.id",
    "process.name",
    "event.start",
    "event.end",
    "labels.provex_evidence_event_ids",
    "threat.technique.id",
]
EVENT_COLUMNS = [
    "event.id",
    "event.action",
    "event.outcome",
    "container.id",
    "process.executable",
    "process.command_line",
    "file.path",  # the path the agent resolved (root, cwd, dirfd, links)
    "provex.path_as_given",  # the path the process typed
    "provex.host_path",  # the node's file, through a host mount
    "destination.ip",
    "destination.port",
]


# Connections between Pods, from the raw events of every node: connect (egress) and accept
# (ingress). The local Pod is the document's own (orchestrator.*, provex.pod_ip); the other
# end is its address, and provex.peer_pod names it when it is a Pod of the same node.
CONNECTION_COLUMNS = [
    "host.name",
    "network.direction",
    "orchestrator.namespace",
    "orchestrator.resource.name",
    "provex.pod_ip",
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "provex.peer_pod.namespace",
    "provex.peer_pod.name",
    "process.executable",
]
OUTBOUND = 'event.category : "network" and network.direction : "egress"'
INBOUND = 'event.category : "network" and network.direction : "ingress"'


def _search_source(view_ref: str, query: str = "") -> dict[str, Any]:
    return {
        "searchSourceJSON": json.dumps(
            {
                "query": {"query": query, "language": "kuery"},
                "filter": [],
                "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
            },
            sort_keys=True,
        )
    }


def _ref(view: str) -> list[dict[str, str]]:
    return [{"id": view, "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}]


def _terms(agg_id: str, field: str, size: int, schema: str) -> dict[str, Any]:
    return {
        "id": agg_id,
        "enabled": True,
        "type": "terms",
        "schema": schema,
        "params": {"field": field, "size": size, "order": "desc", "orderBy": "1"},
    }


_COUNT = {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}}


def _over_time(split_field: str) -> list[dict[str, Any]]:
    return [
        _COUNT,
        {
            "id": "2",
            "enabled": True,
            "type": "date_histogram",
            "schema": "segment",
            "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1},
        },
        _terms("3", split_field, 10, "group"),
    ]


def _visualization(
    vid: str,
    title: str,
    vis_type: str,
    aggs: list[dict[str, Any]],
    view: str = ALERTS_VIEW,
    query: str = "",
) -> dict[str, Any]:
    params: dict[str, Any] = {"type": vis_type, "addLegend": True, "legendPosition": "right"}
    if vis_type == "table":
        params = {"type": "table", "perPage": 10, "showPartialRows": False}
    return {
        "type": "visualization",
        "id": vid,
        "attributes": {
            "title": title,
            "description": "",
            "uiStateJSON": "{}",
            "version": 1,
            "visState": json.dumps(
                {"title": title, "type": vis_type, "aggs": aggs, "params": params}, sort_keys=True
            ),
            "kibanaSavedObjectMeta": _search_source(view, query),
        },
        "references": _ref(view),
    }


def _search(sid: str, title: str, view: str, columns: list[str], query: str = "") -> dict[str, Any]:
    return {
        "type": "search",
        "id": sid,
        "attributes": {
            "title": title,
            "description": "",
            "columns": columns,
            "sort": [["@timestamp", "desc"]],
            "kibanaSavedObjectMeta": _search_source(view, query),
        },
        "references": _ref(view),
    }


def kibana_objects() -> list[dict[str, Any]]:
    """Saved objects: two data views, six visualizations, three searches, one dashboard."""
    views = [
        {
            "type": "index-pattern",
            "id": vid,
            "attributes": {"title": pattern, "name": name, "timeFieldName": "@timestamp"},
            "references": [],
        }
        for vid, pattern, name in [
            (ALERTS_VIEW, "logs-provex.alerts-*", "provex alerts"),
            (EVENTS_VIEW, "logs-provex.events-*", "provex events"),
        ]
    ]
    panels = [
        _visualization(
            "provex-alerts-by-rule", "provex: alerts over time by rule", "histogram", _over_time("rule.name")
        ),
        _visualization(
            "provex-alerts-by-technique",
            "provex: alerts over time by ATT&CK technique",
            "histogram",
            _over_time("threat.technique.id"),
        ),
        _visualization(
            "provex-top-pods",
            "provex: Pods with most alerts",
            "table",
            [
                _COUNT,
                _terms("2", "orchestrator.namespace", 10, "bucket"),
                _terms("3", "orchestrator.resource.name", 10, "bucket"),
            ],
        ),
        _visualization(
            "provex-top-namespaces",
            "provex: namespaces with most alerts",
            "pie",
            [_COUNT, _terms("2", "orchestrator.namespace", 10, "segment")],
        ),
        _search("provex-chain-evidence", "provex: alerts and their evidence", ALERTS_VIEW, EVIDENCE_COLUMNS),
        _search(
            "provex-evidence-events",
            "provex: events (filter event.id by an alert's evidence ids)",
            EVENTS_VIEW,
            EVENT_COLUMNS,
        ),
        _visualization(
            "provex-outbound-connections",
            "provex: outbound connections from Pods (connect)",
            "table",
            [
                _COUNT,
                _terms("2", "orchestrator.namespace", 10, "bucket"),
                _terms("3", "orchestrator.resource.name", 20, "bucket"),
                _terms("4", "destination.ip", 20, "bucket"),
                _terms("5", "destination.port", 10, "bucket"),
            ],
            EVENTS_VIEW,
            OUTBOUND,
        ),
        _visualization(
            "provex-inbound-connections",
            "provex: inbound connections to Pods (accept)",
            "table",
            [
                _COUNT,
                _terms("2", "orchestrator.namespace", 10, "bucket"),
                _terms("3", "orchestrator.resource.name", 20, "bucket"),
                _terms("4", "source.ip", 20, "bucket"),
            ],
            EVENTS_VIEW,
            INBOUND,
        ),
        _search(
            "provex-pod-connections",
            "provex: connections between Pods, every node (match destination.ip to provex.pod_ip)",
            EVENTS_VIEW,
            CONNECTION_COLUMNS,
            'event.category : "network"',
        ),
    ]
    grid = [
        (0, 0, 24, 15),
        (24, 0, 24, 15),
        (0, 15, 24, 15),
        (24, 15, 24, 15),
        (0, 30, 48, 15),
        (0, 45, 48, 15),
        (0, 60, 24, 15),
        (24, 60, 24, 15),
        (0, 75, 48, 15),
    ]
    panels_json = []
    references = []
    for n, (obj, (x, y, w, h)) in enumerate(zip(panels, grid, strict=True), start=1):
        panels_json.append(
            {
                "panelIndex": str(n),
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(n)},
                "embeddableConfig": {},
                "panelRefName": f"panel_{n}",
                "version": KIBANA_VERSION,
            }
        )
        references.append({"id": obj["id"], "name": f"panel_{n}", "type": obj["type"]})
    dashboard = {
        "type": "dashboard",
        "id": "provex-overview",
        "attributes": {
            "title": "provex: container escape and lateral movement",
            "description": "Alerts of the provex eBPF agent (ECS, bodymap). Pivot from an alert's "
            "labels.provex_evidence_event_ids to the events panel with event.id.",
            "timeRestore": False,
            "version": 1,
            "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}, sort_keys=True),
            "panelsJSON": json.dumps(panels_json, sort_keys=True),
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
            },
        },
        "references": references,
    }
    return [*views, *panels, dashboard]


def kibana_ndjson() -> str:
    objects = kibana_objects()
    for obj in objects:
        obj.setdefault("coreMigrationVersion", KIBANA_VERSION)
    return "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in objects)


# ---- Grafana / Loki ---------------------------------------------------------

STREAM = '{service_name="provex"}'
ALERTS = f'{STREAM} | event_name="provex.alert"'
CONNECTIONS = f'{STREAM} | event_name=~"provex.network_(connection|accept)"'


def _target(expr: str, legend: str = "", instant: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": {"type": "loki", "uid": "${datasource}"},
        "editorMode": "code",
        "expr": expr,
        "queryType": "instant" if instant else "range",
        "refId": "A",
    }
    if legend:
        target["legendFormat"] = legend
    return target


def _panel(
    pid: int, title: str, kind: str, expr: str, grid: tuple[int, int, int, int], **extra: Any
) -> dict[str, Any]:
    x, y, w, h = grid
    panel: dict[str, Any] = {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": {"type": "loki", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [_target(expr, extra.pop("legend", ""), extra.pop("instant", False))],
    }
    panel.update(extra)
    return panel


def grafana_dashboard() -> dict[str, Any]:
    """A Grafana dashboard (JSON model) whose panels are LogQL queries."""
    panels = [
        _panel(
            1,
            "Alerts over time by rule",
            "timeseries",
            f'sum by (rule_name) (count_over_time({ALERTS} | json rule_name="rule.name" [$__auto]))',
            (0, 0, 12, 8),
            legend="{{rule_name}}",
        ),
        _panel(
            2,
            "Alerts over time by ATT&CK technique (first technique of each alert)",
            "timeseries",
            f'sum by (technique) (count_over_time({ALERTS} | json technique="threat.technique.id[0]" [$__auto]))',
            (12, 0, 12, 8),
            legend="{{technique}}",
        ),
        _panel(
            3,
            "Pods with most alerts",
            "table",
            f"topk(10, sum by (k8s_namespace_name, k8s_pod_name) (count_over_time({ALERTS} [$__range])))",
            (0, 8, 12, 8),
            instant=True,
        ),
        _panel(
            4,
            "Namespaces with most alerts",
            "piechart",
            f"topk(10, sum by (k8s_namespace_name) (count_over_time({ALERTS} [$__range])))",
            (12, 8, 12, 8),
            instant=True,
            legend="{{k8s_namespace_name}}",
        ),
        _panel(
            5,
            "Alerts and their evidence (event ids)",
            "logs",
            f'{ALERTS} | json rule="rule.name", severity="event.severity", container="container.id", '
            'first="event.start", last="event.end", evidence="labels.provex_evidence_event_ids" '
            '| line_format "{{.rule}} severity={{.severity}} pod={{.k8s_namespace_name}}/{{.k8s_pod_name}} '
            'container={{.container}} {{.first}}..{{.last}} evidence={{.evidence}}"',
            (0, 16, 24, 9),
        ),
        _panel(
            6,
            "Events of the chain (set event_id to an evidence id)",
            "logs",
            f'{STREAM} | event_name!="provex.alert" | json | event_id=~"$event_id"',
            (0, 25, 24, 9),
        ),
        _panel(
            7,
            "Outbound connections from Pods (connect), every node",
            "table",
            "topk(20, sum by (k8s_namespace_name, k8s_pod_name, destination_ip) (count_over_time("
            f'{CONNECTIONS} | json direction="network.direction", destination_ip="destination.ip"'
            ' | direction="egress" [$__range])))',
            (0, 34, 12, 8),
            instant=True,
        ),
        _panel(
            8,
            "Inbound connections to Pods (accept), every node",
            "table",
            "topk(20, sum by (k8s_namespace_name, k8s_pod_name, source_ip) (count_over_time("
            f'{CONNECTIONS} | json direction="network.direction", source_ip="source.ip"'
            ' | direction="ingress" [$__range])))',
            (12, 34, 12, 8),
            instant=True,
        ),
        _panel(
            9,
            "Connections between Pods (match a destination to the Pod with that address)",
            "logs",
            f'{CONNECTIONS} | json node="host.name", direction="network.direction", pod_ip="provex.pod_ip", '
            'src="source.ip", dst="destination.ip", dport="destination.port", peer="provex.peer_pod.name" '
            '| line_format "{{.node}} {{.k8s_namespace_name}}/{{.k8s_pod_name}} ({{.pod_ip}}) {{.direction}} '
            '{{.src}} -> {{.dst}}:{{.dport}} peer={{.peer}}"',
            (0, 42, 24, 9),
        ),
    ]
    return {
        "uid": "provex-loki",
        "title": "provex: container escape and lateral movement (Loki)",
        "tags": ["provex", "security", "ebpf"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "loki", "label": "Loki"},
                {
                    "name": "event_id",
                    "type": "textbox",
                    "label": "event.id",
                    "query": ".+",
                    "current": {"value": ".+"},
                },
            ]
        },
        "panels": panels,
    }


def grafana_json() -> str:
    return json.dumps(grafana_dashboard(), indent=2, sort_keys=True) + "\n"


FILES = {
    Path("kibana") / "provex-dashboard.ndjson": kibana_ndjson,
    Path("grafana") / "provex-loki-dashboard.json": grafana_json,
}


def write(root: Path) -> None:
    for rel, build in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(build())


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "siem"))
