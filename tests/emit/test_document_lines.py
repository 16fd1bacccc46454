"""`--schema ecs|ocsf` to a file or stdout: one document per line that a SIEM ingests as it
is (ECS NDJSON for Filebeat or `_bulk`, OCSF JSON lines), each valid against the real ECS
field list and OCSF schemas, events before the alert they caused, the node each record was
made on; OTLP-JSON stays, as `--format otlp-json`."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import yaml
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from exporter.emit.bounded import BoundedQueue
from exporter.resources import sample_recording
from tests.helpers.schemas import ecs_errors, ocsf_errors
from tests.test_newcomer import provex

REPO = Path(__file__).resolve().parents[2]
CHAIN = "Service-Account Token Read Then Used Against The API Server"
SAMPLE_EVENTS = 411
DOCUMENTS = 285  # the sample's events that have a document kind (not fork, exit, context), and the alert
RECORDING_NODE = "provex-lab"  # the node the bundled recording was made on (its Pods' spec.nodeName)


def documents(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ecs_to_a_file_is_one_valid_ecs_document_per_line(tmp_path: Path) -> None:
    out = tmp_path / "provex.ndjson"
    result = provex("replay", "--schema", "ecs", "--output", str(out))
    assert result.returncode == 0, result.stderr
    docs = documents(out)
    assert "resourceLogs" not in docs[0]  # not OTLP-JSON: what Filebeat and _bulk take as they are
    # Every event with a document kind (fork, exit and context have none) and the alert.
    kinds = {}
    for doc in docs:
        assert ecs_errors(doc) == [], doc["event"]["id"]
        kinds[doc["event"]["kind"]] = kinds.get(doc["event"]["kind"], 0) + 1
    (alert,) = [d for d in docs if d["event"]["kind"] == "alert"]
    assert alert["rule"]["name"] == CHAIN
    assert len(alert["provex"]["rules_digest"]) == 16
    assert kinds["event"] == DOCUMENTS - 1 and len(docs) == DOCUMENTS
    # The story before the verdict: every evidence event is written before the alert.
    position = {d["event"]["id"]: n for n, d in enumerate(docs)}
    assert all(position[e["id"]] < position[alert["event"]["id"]] for e in alert["provex"]["evidence"])
    # The node the recording was made on, not the machine replaying it.
    assert {d["host"]["name"] for d in docs} == {RECORDING_NODE}
    assert not any("hostname" in d["host"] for d in docs)


def test_ocsf_to_stdout_is_one_valid_ocsf_document_per_line() -> None:
    result = provex("replay", "--schema", "ocsf")
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == DOCUMENTS
    for doc in docs:
        assert ocsf_errors(doc) == [], doc["metadata"]["uid"]
        assert doc["device"]["name"] == RECORDING_NODE and "hostname" not in doc["device"]
    (finding,) = [d for d in docs if d["class_uid"] == 2004]
    assert finding["finding_info"]["title"] == CHAIN
    assert finding["unmapped"]["provex"]["rules_digest"]


def test_otlp_json_is_its_own_format(tmp_path: Path) -> None:
    out = tmp_path / "otlp.jsonl"
    result = provex("replay", "--schema", "ecs", "--format", "otlp-json", "--output", str(out))
    assert result.returncode == 0, result.stderr
    records = 0
    for line in out.read_text().splitlines():
        request = json_format.Parse(line, ExportLogsServiceRequest())  # what otlpjsonfile reads
        for resource_logs in request.resource_logs:
            attributes = {kv.key for kv in resource_logs.resource.attributes}
            assert "host.name" not in attributes  # a replay: each document names its node
            records += sum(len(scope.log_records) for scope in resource_logs.scope_logs)
    assert records == DOCUMENTS


def test_the_readme_bulk_command_makes_a_valid_bulk_body(tmp_path: Path) -> None:
    """The README's jq line turns the file into a _bulk body: an action line (create, into the
    data stream the dashboards read, with the document's own id) before each document."""
    readme = (REPO / "README.md").read_text()
    (command,) = [line.strip() for line in readme.splitlines() if line.strip().startswith("jq -c '{create:")]
    out = tmp_path / "provex.ndjson"
    assert provex("replay", "--schema", "ecs", "--output", str(out)).returncode == 0
    body = subprocess.run(
        ["bash", "-c", command.split("|")[0].replace("provex.ndjson", str(out))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(body) == 2 * DOCUMENTS
    ids = set()
    for action_line, doc_line in zip(body[::2], body[1::2], strict=True):
        action, doc = json.loads(action_line), json.loads(doc_line)
        ((op, meta),) = action.items()
        assert op == "create"  # data streams take create only
        kind = doc["event"]["kind"]
        assert meta == {"_index": f"logs-provex.{kind}s-default", "_id": doc["event"]["id"]}
        assert ecs_errors(doc) == []
        ids.add(meta["_id"])
    assert len(ids) == len(body) // 2  # unique: ingesting the file twice duplicates nothing


def test_the_filebeat_config_reads_the_file_as_it_is() -> None:
    config = yaml.safe_load((REPO / "siem" / "filebeat" / "filebeat.yml").read_text())
    (source,) = config["filebeat.inputs"]
    assert source["type"] == "filestream" and source["paths"] == ["/var/log/provex/*.ndjson"]
    ((parser,),) = [list(p.items()) for p in source["parsers"]]
    assert parser == ("ndjson", {"target": "", "overwrite_keys": True, "add_error_key": True})
    output = config["output.elasticsearch"]
    assert output["index"] == "logs-provex.events-default"
    assert output["indices"] == [
        {"index": "logs-provex.alerts-default", "when.equals": {"event.kind": "alert"}}
    ]
    readme = (REPO / "README.md").read_text()
    assert "siem/filebeat/filebeat.yml" in readme and "--output /var/log/provex/provex.ndjson" in readme


def test_a_full_queue_drops_an_event_before_any_alert() -> None:
    handled: list[list[str]] = []
    lost: list[tuple[str, list[str]]] = []
    gate = threading.Event()

    def handle(batch):  # the worker is held until the queue has overflowed
        gate.wait(5)
        handled.append(list(batch))

    queue = BoundedQueue(
        3,
        handle,
        drop=lambda cause, count: None,
        drop_items=lambda cause, items: lost.append((cause, list(items))),
        keep=lambda item: item.startswith("alert"),
        name="test-keep",
    )
    queue.put("first")  # taken by the worker, which waits at the gate
    deadline = time.monotonic() + 5
    while queue._in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for item in ("alert-1", "event-1", "alert-2", "event-2", "alert-3"):
        queue.put(item)
    gate.set()
    queue.wait_idle(5)
    queue.close(1)
    assert lost == [("queue_full", ["event-1"]), ("queue_full", ["event-2"])]
    assert [x for batch in handled for x in batch] == ["first", "alert-1", "alert-2", "alert-3"]


def test_the_sample_recording_is_what_the_counts_above_assume() -> None:
    assert len(sample_recording().read_bytes().splitlines()) == SAMPLE_EVENTS
