"""The shipped ECS and OCSF mappings: valid documents, goldens, provenance."""

from __future__ import annotations

import json
import os

import msgspec
import pytest

from bench.helpers.records import AGENT, GOLDEN, records
from exporter.mapping import Mapper
from exporter.model import Event, EventType
from tests.helpers.schemas import custom_fields, document_errors, ecs_errors, ecs_fields
from tests.siem.emitted import mapped_fields

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


@pytest.mark.parametrize(
    "event",
    [
        Event(id="f", type=EventType.FORK, syscall="sched_process_fork", ts_ns=1, pid=1, tid=1, child_pid=2),
        Event(id="x", type=EventType.EXIT, syscall="sched_process_exit", ts_ns=1, pid=1, tid=1),
        # A process's directories read from /proc: it seeds the provenance graph only.
        Event(id="c", type=EventType.CONTEXT, syscall="procfs", ts_ns=1, pid=1, tid=1, path="/", target="/"),
    ],
    ids=lambda e: e.type.value,
)
def test_lineage_and_context_events_are_not_mapped(mapper: Mapper, event: Event) -> None:
    assert mapper.map(event) is None


def _provex_fields(schema: str) -> set[str]:
    """The provex custom fields a mapping writes (ECS provex.X, OCSF unmapped.provex.X), as provex.X."""
    prefix = "provex." if schema == "ecs" else "unmapped.provex."
    return {"provex." + f[len(prefix) :] for f in mapped_fields(schema) if f.startswith(prefix)}


def test_every_ecs_custom_field_is_defined_and_every_definition_is_written() -> None:
    defined = set(custom_fields())
    top = {f for f in defined if not f.startswith("provex.evidence.")}
    assert _provex_fields("ecs") == top
    for name, spec in custom_fields().items():
        assert spec["level"] == "custom" and spec["description"].strip(), name
        assert spec["type"] in ("keyword", "boolean", "long", "ip", "date", "nested"), name
    assert not set(ecs_fields()) & defined


def test_ocsf_unmapped_provex_carries_the_ecs_custom_fields() -> None:
    """Same names under unmapped.provex (OCSF's evidences carry an alert's evidence instead);
    the older unmapped.provex fields mirror ECS labels.provex_*."""
    legacy = {"provex.enrichment", "provex.followup_of", "provex.suppressed"}
    defined = {f for f in custom_fields() if not f.startswith("provex.evidence")}
    assert _provex_fields("ocsf") - legacy == defined


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"provex": {"in_host_mount": "yes"}}, "provex.in_host_mount: 'yes' is not of ECS type boolean"),
        ({"provex": {"host_paths": "/x"}}, "provex.host_paths: not an ECS field"),
        ({"provex": {"executed_files": "/bin/sh"}}, "provex.executed_files: ECS expects an array"),
        ({"provex": {"path_resolution": "guessed"}}, "'guessed' not among allowed values"),
        ({"provex": {"evidence": [{"id": "1", "color": "red"}]}}, "[0] provex.evidence.color: not an ECS"),
        ({"provex": {"evidence": [{"id": "1", "pid": "7"}]}}, "provex.evidence.pid: '7' is not of ECS type"),
    ],
)
def test_custom_fields_are_validated_like_ecs_fields(doc: dict, error: str) -> None:
    base = {"@timestamp": "2025-01-01T00:00:00Z", "ecs": {"version": "9.4.0"}}
    errors = ecs_errors({**base, **doc})
    assert any(error in e for e in errors), errors
    ocsf = Mapper("ocsf", **AGENT).map(RECORDS["exec_interpreter_downloaded"])
    assert ocsf is not None
    ocsf.body["unmapped"]["provex"]["in_host_mount"] = "yes"
    assert "unmapped.provex.in_host_mount: 'yes' is not of ECS type boolean" in document_errors(
        "ocsf", ocsf.body
    )


def test_documents_carry_the_resolved_path_and_keep_the_given_one() -> None:
    ecs = Mapper("ecs", **AGENT)
    ocsf = Mapper("ocsf", **AGENT)
    doc = ecs.map(RECORDS["open_relative_host_mount"])
    odoc = ocsf.map(RECORDS["open_relative_host_mount"])
    assert doc is not None and odoc is not None
    assert doc.body["file"]["path"] == odoc.body["file"]["path"] == "/host/etc/shadow"
    assert doc.body["provex"] == {
        "path_as_given": "shadow",
        "path_resolution": "resolved",
        "in_host_mount": True,
        "host_path": "/etc/shadow",
        "host_mount": {"container_path": "/host", "read_only": True},
        "by_container_runtime": False,
    }
    assert odoc.body["unmapped"]["provex"] == doc.body["provex"]
    # Opened by its handle: no name was given, the kernel's identity names the file.
    doc = ecs.map(RECORDS["open_by_handle_identity"])
    assert doc is not None
    assert doc.body["file"]["path"] == "/etc/shadow" and doc.body["file"]["inode"] == "1001"
    assert doc.body["provex"]["file_identity"] == "8388609:1001"
    assert doc.body["provex"]["file_verdict"] == "sensitive_file" and doc.body["provex"]["repeats"] == 3
    assert doc.body["provex"]["in_host_mount"] is True and doc.body["provex"]["host_path"] == "/etc/shadow"
    # Unresolvable: the path as given, and the document says so.
    doc = ecs.map(RECORDS["open_cwd_unknown"])
    assert doc is not None
    assert doc.body["file"]["path"] == "conf.d/default.conf"
    assert doc.body["provex"]["path_resolution"] == "cwd_unknown"
    # An exec through a link the container made: the image it reached.
    doc = ecs.map(RECORDS["exec_through_symlink_host_mount"])
    assert doc is not None
    assert (doc.body["process"]["executable"], doc.body["process"]["name"]) == (
        "/host/usr/bin/nsenter",
        "nsenter",
    )
    assert doc.body["provex"]["path_as_given"] == "/tmp/ns"
    explained = ecs.explain(RECORDS["exec_through_symlink_host_mount"])
    assert explained is not None and explained.set_by("process.executable") == "exec.event"


def test_interpreter_operand_and_network_origin() -> None:
    doc = Mapper("ecs", **AGENT).map(RECORDS["exec_interpreter_downloaded"])
    assert doc is not None
    provex = doc.body["provex"]
    assert provex["interpreted_file"] == "/tmp/update.sh"
    assert provex["executed_files"] == ["/tmp/update.sh", "/bin/sh"]
    assert provex["executable_from_network"] is True
    origin = RECORDS["exec_interpreter_downloaded"].origin  # type: ignore[union-attr]
    assert provex["origin_event_ids"] == [ref.id for ref in origin]
    assert [ref.type.value for ref in origin] == ["connect", "open", "rename"]


def test_link_rename_and_directory_events() -> None:
    ecs = Mapper("ecs", **AGENT)
    ocsf = Mapper("ocsf", **AGENT)
    symlink = ecs.map(RECORDS["link_symlink_into_host_mount"])
    assert symlink is not None
    assert symlink.body["event"]["type"] == ["creation"]
    assert symlink.body["file"] == {
        "path": "/tmp/ns",
        "name": "ns",
        "directory": "/tmp",
        "type": "symlink",
        "target_path": "/host/usr/bin/nsenter",
    }
    rename = ocsf.map(RECORDS["rename_relative"])
    assert rename is not None
    assert (rename.body["activity_id"], rename.body["type_uid"]) == (5, 100105)
    assert rename.body["file"]["path"] == "/tmp/u.part"
    assert rename.body["file_result"]["path"] == "/tmp/update.sh"
    hard = ecs.map(RECORDS["link_hard_host_mount"])
    assert hard is not None
    assert hard.body["provex"]["source_path"] == "/host/root/.ssh/id_ed25519"
    chdir = ecs.map(RECORDS["chdir_host_mount"])
    assert chdir is not None
    assert chdir.body["process"]["working_directory"] == "/host/etc"
    assert chdir.body["provex"]["host_path"] == "/etc"
    chroot = ocsf.map(RECORDS["chroot_host_mount"])
    assert chroot is not None
    assert (chroot.body["class_uid"], chroot.body["kernel"]["system_call"]) == (1003, "chroot")
    assert chroot.body["unmapped"]["provex"]["root_directory"] == "/host"
    fchdir = ecs.map(RECORDS["fchdir_dirfd_unknown"])
    assert fchdir is not None
    assert "working_directory" not in fchdir.body["process"]
    assert fchdir.body["provex"]["path_resolution"] == "dirfd_unknown"


def test_download_and_execute_alert_tells_the_whole_story() -> None:
    alert = RECORDS["alert_download_and_execute"]
    ecs = Mapper("ecs", **AGENT).map(alert)
    ocsf = Mapper("ocsf", **AGENT).map(alert)
    assert ecs is not None and ocsf is not None
    story = ecs.body["provex"]["evidence"]
    assert [(e["type"], e["step"]) for e in story] == [
        ("connect", "connect"),
        ("open", "write"),
        ("rename", "rename"),
        ("exec", "download_and_execute"),
    ]
    assert story[0]["destination"] == "203.0.113.50:443"
    assert [e.get("path") for e in story[1:]] == ["/tmp/u.part", "/tmp/update.sh", "/bin/sh"]
    assert [e["id"] for e in story] == ecs.body["labels"]["provex_evidence_event_ids"]
    assert ecs.body["provex"]["executed_files"] == ["/tmp/update.sh", "/bin/sh"]
    evidences = ocsf.body["evidences"]
    assert evidences[0]["dst_endpoint"] == {"ip": "203.0.113.50", "port": 443}
    assert [e["file"]["path"] for e in evidences[1:]] == ["/tmp/u.part", "/tmp/update.sh", "/bin/sh"]
    assert [e["process"]["pid"] for e in evidences] == [4301, 4301, 4302, 4303]


def test_alert_evidence_carries_host_path_and_mount_source() -> None:
    read = Mapper("ocsf", **AGENT).map(RECORDS["alert_host_file_read_relative"])
    assert read is not None
    (evidence,) = read.body["evidences"]
    assert evidence["file"]["path"] == "/host/etc/shadow"
    assert evidence["data"]["host_path"] == "/etc/shadow"
    mount = Mapper("ecs", **AGENT).map(RECORDS["alert_mount_bind_host_mount"])
    assert mount is not None
    (entry,) = mount.body["provex"]["evidence"]
    assert (entry["source"], entry["host_path"]) == ("/host/var/lib/kubelet", "/var/lib/kubelet")
    ocsf = Mapper("ocsf", **AGENT).map(RECORDS["alert_mount_bind_host_mount"])
    assert ocsf is not None
    assert ocsf.body["evidences"][0]["data"]["mount"] == {"source": "/host/var/lib/kubelet"}


def test_tactics_are_paired_with_the_techniques_they_belong_to() -> None:
    """A rule's tactic tag that none of its techniques belongs to (download_and_execute tags
    execution beside T1105, a command-and-control technique) makes no ATT&CK statement."""
    ecs = Mapper("ecs", **AGENT).map(RECORDS["alert_download_and_execute"])
    assert ecs is not None
    assert ecs.body["threat"]["tactic"]["id"] == ["TA0011"]
    ocsf = Mapper("ocsf", **AGENT).map(RECORDS["alert_host_file_read_relative"])
    assert ocsf is not None
    pairs = [(a["technique"]["uid"], [t["uid"] for t in a["tactics"]]) for a in ocsf.body["attacks"]]
    assert pairs == [("T1611", ["TA0004"]), ("T1552", ["TA0006"])]


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
    explained = Mapper("ecs", **AGENT).explain(RECORDS["connect_apiserver"])
    assert explained is not None and explained.set_by("event.outcome") == "connect.in_progress"
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
        ("ocsf", "setns_mnt", "kernel.system_call", "kernel.class"),
        ("ocsf", "alert_token_exfil", "finding_info.attacks", "alert.finding_info"),
        ("ocsf", "exec_in_pod", "unmapped.k8s.pod.name", "container.pod"),
    ],
)
def test_provenance_names_the_item_that_set_a_field(schema: str, record: str, field: str, item: str) -> None:
    doc = Mapper(schema, **AGENT).explain(RECORDS[record])
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
        doc = mapper.explain(record)
        assert doc is not None
        for leaf in leaves(doc.body):
            assert doc.set_by(leaf)
