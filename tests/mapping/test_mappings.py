"""The shipped ECS and OCSF mappings: valid documents, goldens, provenance."""

from __future__ import annotations

import json
import os

import msgspec
import pytest

from exporter.mapping import Mapper
from exporter.model import Event, EventType
from tests.helpers.schemas import document_errors
from tests.mapping.records import AGENT, GOLDEN, records

SCHEMAS = ("ecs", "ocsf")
RECORDS = records()
UPDATE = os.environ.get("PROVEX_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module", params=SCHEMAS)
def mapper(request: pytest.FixtureRequest) -> Mapper:
    return Mapper(request.param, version="0.1.0", **AGENT)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_document_is_valid_against_the_real_schema(mapper: Mapper, name: str) -> None:
    doc = mapper.map(RECORDS[name])
    assert doc is not None
    assert document_errors(mapper.schema, doc.body) == []


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_document_matches_golden(mapper: Mapper, name: str) -> None:
    doc = mapper.map(RECORDS[name])
    assert doc is not None
    path = GOLDEN / mapper.schema / f"{name}.json"
    rendered = json.dumps(doc.body, indent=2, sort_keys=True) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"no golden {path}; run with PROVEX_UPDATE_GOLDEN=1 and review the diff"
    assert rendered == path.read_text()


def test_every_golden_has_a_record() -> None:
    for schema in SCHEMAS:
        assert {p.stem for p in (GOLDEN / schema).glob("*.json")} == set(RECORDS)


def test_every_mapped_event_kind_has_a_record(mapper: Mapper) -> None:
    kinds = {mapper.map(r).kind for r in RECORDS.values()}  # type: ignore[union-attr]
    assert kinds == {name for name, _ in mapper.mapping.kinds}


def test_lineage_only_events_are_not_mapped(mapper: Mapper) -> None:
    fork = Event(id="f", type=EventType.FORK, syscall="fork", ts_ns=1, pid=1, tid=1, child_pid=2)
    assert mapper.map(fork) is None


@pytest.mark.parametrize(
    ("flags", "syscall", "ecs_type", "ocsf_activity"),
    [
        (0, "openat", "access", 14),  # O_RDONLY
        (0o2000000, "openat", "access", 14),  # O_CLOEXEC alone is still a read
        (0o1, "openat", "change", 14),  # O_WRONLY
        (0o2, "open", "change", 14),  # O_RDWR
        (0o101, "openat", "creation", 1),  # O_CREAT|O_WRONLY
        (0o1101, "creat", "creation", 1),  # creat(): O_CREAT|O_WRONLY|O_TRUNC
    ],
)
def test_open_flags_follow_linux_semantics(
    flags: int, syscall: str, ecs_type: str, ocsf_activity: int
) -> None:
    event = Event(
        id="o", type=EventType.OPEN, syscall=syscall, ts_ns=10**18, pid=5, tid=5, path="/x", flags=flags
    )
    ecs = Mapper("ecs", **AGENT).map(event)
    ocsf = Mapper("ocsf", **AGENT).map(event)
    assert ecs is not None and ocsf is not None
    assert ecs.body["event"]["type"] == [ecs_type]
    assert ocsf.body["activity_id"] == ocsf_activity
    assert document_errors("ecs", ecs.body) == [] and document_errors("ocsf", ocsf.body) == []


def test_failed_syscall_is_a_failure_outcome() -> None:
    doc = Mapper("ecs", **AGENT).map(RECORDS["open_denied"])
    assert doc is not None
    assert doc.body["event"]["outcome"] == "failure"
    assert doc.body["error"]["code"] == "EACCES"
    ocsf = Mapper("ocsf", **AGENT).map(RECORDS["open_denied"])
    assert ocsf is not None and (ocsf.body["status_id"], ocsf.body["status_code"]) == (2, "EACCES")


def test_nonblocking_connect_in_progress_is_not_a_failure() -> None:
    ecs = Mapper("ecs", **AGENT).map(RECORDS["connect_apiserver"])
    ocsf = Mapper("ocsf", **AGENT).map(RECORDS["connect_apiserver"])
    assert ecs is not None and ocsf is not None
    assert ecs.body["event"]["outcome"] == "unknown"
    assert ecs.set_by("event.outcome") == "connect.in_progress"
    assert (ocsf.body["activity_id"], ocsf.body["status_id"]) == (1, 0)


def test_refused_connect_is_ocsf_refuse() -> None:
    ocsf = Mapper("ocsf", **AGENT).map(RECORDS["connect_refused_v6"])
    assert ocsf is not None
    assert (ocsf.body["activity_id"], ocsf.body["type_uid"]) == (5, 400105)
    assert ocsf.body["dst_endpoint"] == {"ip": "::1", "port": 8080}
    assert ocsf.body["connection_info"]["protocol_ver_id"] == 6


def test_apiserver_destination_from_enrichment() -> None:
    # The enricher sets dest_is_apiserver on connect events; the mappings read it.
    event = msgspec.structs.replace(RECORDS["connect_apiserver"], dest_is_apiserver=True)
    ecs = Mapper("ecs", **AGENT).map(event)
    ocsf = Mapper("ocsf", **AGENT).map(event)
    assert ecs is not None and ocsf is not None
    assert ecs.body["labels"]["provex_destination"] == "kubernetes-apiserver"
    assert ocsf.body["dst_endpoint"]["svc_name"] == "kubernetes-apiserver"
    assert document_errors("ecs", ecs.body) == [] and document_errors("ocsf", ocsf.body) == []


def test_alert_fields_ecs() -> None:
    doc = Mapper("ecs", **AGENT).map(RECORDS["alert_token_exfil"])
    assert doc is not None
    body = doc.body
    assert body["event"]["kind"] == "alert"
    assert body["event"]["severity"] == 73
    assert body["rule"]["id"] == "provex-sa-token-then-apiserver"
    assert body["threat"]["framework"] == "MITRE ATT&CK"
    assert body["threat"]["technique"]["id"] == ["T1528", "T1552"]
    assert body["threat"]["technique"]["subtechnique"]["id"] == ["T1552.001"]
    assert body["threat"]["tactic"] == {
        "id": ["TA0006"],
        "name": ["Credential Access"],
        "reference": ["https://attack.mitre.org/tactics/TA0006/"],
    }
    assert body["labels"]["provex_evidence_event_ids"] == [
        "1764100000000000300-4243",
        "1764100000000000700-4244",
    ]
    # The decisive event's identity travels with the alert.
    assert body["orchestrator"]["namespace"] == "shop"
    assert body["container"]["id"].startswith("3f9c1e5b")


def test_alert_fields_ocsf() -> None:
    doc = Mapper("ocsf", **AGENT).map(RECORDS["alert_token_exfil"])
    assert doc is not None
    body = doc.body
    assert (body["class_uid"], body["type_uid"], body["severity_id"]) == (2004, 200401, 4)
    assert body["finding_info"]["uid"] == "a-sa-token-exfil-0001"
    assert [e["uid"] for e in body["evidences"]] == ["1764100000000000300-4243", "1764100000000000700-4244"]
    assert body["attacks"][1]["sub_technique"]["uid"] == "T1552.001"
    pod = body["resources"][0]
    assert (pod["type"], pod["name"], pod["namespace"]) == ("kubernetes.pod", "web-7d9f", "shop")


def test_attack_tactic_table_matches_attack_data() -> None:
    from tests.helpers.schemas import attack

    tactics = attack()["tactics"]
    for schema in SCHEMAS:
        table = Mapper(schema, **AGENT).mapping.tables["attack_tactics"]
        for short, entry in tactics.items():
            assert table[short] == {"id": entry["id"], "name": entry["name"]}


@pytest.mark.parametrize(
    ("schema", "record", "field", "item"),
    [
        ("ecs", "open_create", "event.type", "open.creation"),
        ("ecs", "open_read_token", "event.type", "open.access"),
        ("ecs", "exec_in_pod", "process.executable", "exec.event"),
        ("ecs", "exec_in_pod", "process.parent.executable", "process.parent"),
        ("ecs", "alert_token_exfil", "@timestamp", "alert.event"),
        ("ecs", "alert_token_exfil", "orchestrator.resource.name", "orchestrator.pod"),
        ("ocsf", "connect_refused_v6", "activity_id", "connect.refused"),
        ("ocsf", "setns_mnt", "kernel.system_call", "namespace.class"),
        ("ocsf", "alert_token_exfil", "finding_info.attacks", "alert.finding_info"),
        ("ocsf", "exec_in_pod", "unmapped.k8s.pod.name", "container.pod"),
    ],
)
def test_provenance_names_the_item_that_set_a_field(schema: str, record: str, field: str, item: str) -> None:
    doc = Mapper(schema, **AGENT).map(RECORDS[record])
    assert doc is not None
    assert doc.set_by(field) == item
    found = doc.provenance.get(field)
    if found is not None:
        assert found.location.file.endswith(f"mappings/{schema}.yaml") and found.location.line > 0


def test_every_leaf_has_provenance(mapper: Mapper) -> None:
    def leaves(node: dict, prefix: str = ""):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                yield from leaves(value, prefix + key + ".")
            else:
                yield prefix + key

    for record in RECORDS.values():
        doc = mapper.map(record)
        assert doc is not None
        for leaf in leaves(doc.body):
            assert doc.set_by(leaf)
