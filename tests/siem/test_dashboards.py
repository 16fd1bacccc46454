"""The shipped dashboards: generated from exporter.siem.dashboards, and naming only
fields the agent emits (ECS fields for Kibana; Loki labels, structured metadata
and `| json` fields of the ECS log line for Grafana)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from exporter.emit.factory import build_resource
from exporter.emit.otlp import routing_attributes
from exporter.mapping import Mapper
from exporter.siem import dashboards
from tests.mapping.records import AGENT, records
from tests.siem.emitted import REPO, flatten

SIEM = REPO / "siem"


@pytest.mark.parametrize("rel", sorted(str(p) for p in dashboards.FILES))
def test_shipped_dashboards_are_generated(rel: str) -> None:
    """Regenerate with `python -m exporter.siem.dashboards siem`."""
    build = dashboards.FILES[next(p for p in dashboards.FILES if str(p) == rel)]
    assert (SIEM / rel).read_text() == build()


def _documents() -> dict[str, list[dict]]:
    """ECS documents of every sample record, split by kind (alert or event)."""
    mapper = Mapper("ecs", **AGENT)
    out: dict[str, list[dict]] = {"alert": [], "event": []}
    for record in records().values():
        doc = mapper.map(record)
        if doc is not None:
            out["alert" if doc.kind == "alert" else "event"].append(doc.body)
    return out


def _kind_fields(kind: str) -> set[str]:
    """Fields that mapping items applying to `kind` set (alert, or any event kind)."""
    mapping = yaml.safe_load((REPO / "mappings" / "ecs.yaml").read_text())
    fields = set()
    for item in mapping["items"]:
        kinds = item.get("kinds")
        applies = kinds is None or (
            ("alert" in kinds) if kind == "alert" else any(k != "alert" for k in kinds)
        )
        if applies:
            fields |= set(item.get("set", {}))
    return fields | {f for d in _documents()[kind] for f in flatten(d)}


def _kibana_fields(obj: dict) -> set[str]:
    attrs = obj["attributes"]
    fields = set(attrs.get("columns", [])) | {s[0] for s in attrs.get("sort", [])}
    if "visState" in attrs:
        for agg in json.loads(attrs["visState"])["aggs"]:
            if "field" in agg["params"]:
                fields.add(agg["params"]["field"])
    if "timeFieldName" in attrs:
        fields.add(attrs["timeFieldName"])
    source = attrs.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
    if source:
        query = json.loads(source)["query"]["query"]
        fields |= set(re.findall(r"([@\w.]+)\s*:", query))
    return fields


def test_kibana_objects_name_only_emitted_ecs_fields_and_resolve() -> None:
    objects = [
        json.loads(line) for line in (SIEM / "kibana" / "provex-dashboard.ndjson").read_text().splitlines()
    ]
    ids = {(o["type"], o["id"]) for o in objects}
    view_kind = {dashboards.ALERTS_VIEW: "alert", dashboards.EVENTS_VIEW: "event"}
    checked = 0
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, (obj["id"], ref)
        if obj["type"] in ("visualization", "search"):
            (view,) = [r["id"] for r in obj["references"] if r["type"] == "index-pattern"]
            emitted = _kind_fields(view_kind[view])
            missing = sorted(_kibana_fields(obj) - emitted)
            assert not missing, f"{obj['id']}: not emitted on {view_kind[view]} documents: {missing}"
            checked += len(_kibana_fields(obj))
    assert checked > 20
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    names = {r["name"] for r in dashboard["references"]}
    assert {p["panelRefName"] for p in json.loads(dashboard["attributes"]["panelsJSON"])} == names


def _loki_names() -> tuple[set[str], set[str]]:
    """(labels and structured metadata, `| json` fields of the ECS line), Loki-style (dots -> _)."""
    resource = set(build_resource(node_name="n", cluster_name="c").attributes)
    # otel-collector/gateway-loki.yaml groups records by these, making them resource attributes.
    resource |= {"k8s.namespace.name", "k8s.pod.name"}
    mapper = Mapper("ecs", **AGENT)
    attributes: set[str] = set()
    line: set[str] = set()
    for record in records().values():
        doc = mapper.map(record)
        if doc is None:
            continue
        attributes |= set(routing_attributes(record, doc, "ecs"))
        line |= {k for k, v in flatten(doc.body).items() if not isinstance(v, list)}
    loki = {n.replace(".", "_") for n in resource | attributes}
    return loki, {n.replace(".", "_").replace("@", "_") for n in line}


def _array_fields() -> set[str]:
    return {
        k
        for docs in _documents().values()
        for d in docs
        for k, v in flatten(d).items()
        if isinstance(v, list)
    }


def test_grafana_panels_name_only_what_loki_holds() -> None:
    board = json.loads((SIEM / "grafana" / "provex-loki-dashboard.json").read_text())
    labels, line = _loki_names()
    arrays = _array_fields()
    scalars = {f for docs in _documents().values() for d in docs for f in flatten(d)} - arrays
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            extracted: set[str] = set()
            json_args = " ".join(re.findall(r"\| json ([^|]*)", expr))
            for name, path in re.findall(r'(\w+)="([\w.@]+(?:\[\d+\])?)"', json_args):
                if path.endswith("]"):  # an element of an array field
                    assert path.split("[")[0] in arrays, (panel["title"], path)
                else:
                    assert path in scalars or path in arrays, (panel["title"], path)
                extracted.add(name)
            plain_json = re.search(r"\| json(\s*\||\s*$)", expr) is not None
            used = set(re.findall(r"\b(\w+)\s*(?:=~|!=|=)\s*[\"`]", expr))
            used |= {n.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for n in group.split(",")}
            used |= set(re.findall(r"\{\{\s*\.(\w+)\s*\}\}", expr + target.get("legendFormat", "")))
            used -= extracted
            known = labels | (line if plain_json else set())
            missing = sorted(n for n in used if n not in known)
            assert not missing, f"{panel['title']}: not a Loki label, metadata or json field: {missing}"


def test_both_dashboards_show_connections_between_pods_both_ways() -> None:
    objects = {o["id"]: o for o in dashboards.kibana_objects()}
    for vid, direction in (
        ("provex-outbound-connections", "egress"),
        ("provex-inbound-connections", "ingress"),
    ):
        source = json.loads(objects[vid]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert f'network.direction : "{direction}"' in source["query"]["query"]
        assert objects[vid]["references"][0]["id"] == dashboards.EVENTS_VIEW
    assert {"provex.pod_ip", "source.ip", "destination.ip", "host.name"} <= set(
        objects["provex-pod-connections"]["attributes"]["columns"]
    )
    exprs = [t["expr"] for p in dashboards.grafana_dashboard()["panels"] for t in p["targets"]]
    assert any('direction="egress"' in e for e in exprs) and any('direction="ingress"' in e for e in exprs)
