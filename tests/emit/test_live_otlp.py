"""End to end: real kernel, real runc container, the agent exporting OTLP to a receiver built
on the official protobufs; bodies decoded and compared with the mapped documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from bench.helpers.otlp_receiver import OtlpReceiver
from exporter.config import load_config
from exporter.correlate.engine import build_correlator
from exporter.mapping.mapper import Mapper
from exporter.scenarios.runc import ContainerSpec, Runc
from exporter.source.replay import ReplaySource
from tests.emit.test_resilience import wait_until
from tests.helpers.schemas import ecs_errors, ocsf_errors

pytestmark = [pytest.mark.ebpf, pytest.mark.containers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLONE_NEWUSER = 0x10000000
UNSHARE = ["sysprobe", "unshare", str(CLONE_NEWUSER)]
REPLAY = [sys.executable, "-m", "exporter", "replay"]
HTTP = ["--otlp-protocol", "http/protobuf"]


@pytest.fixture(scope="module")
def runc(tmp_path_factory):
    runtime = Runc(tmp_path_factory.mktemp("runc"))
    yield runtime
    runtime.close()


def otlp_agent(tmp_path: Path, receiver: OtlpReceiver, *extra: str) -> Agent:
    """`provex run --schema ecs` exporting to `receiver`."""
    return Agent(tmp_path, "--schema", "ecs", "--otlp-endpoint", receiver.endpoint, *extra, command="run")


def test_live_alert_reaches_the_collector_over_grpc(tmp_path, runc):
    receiver = OtlpReceiver("grpc").start()
    agent = otlp_agent(tmp_path, receiver, "--node-name", "node-e2e")
    try:
        run = runc.run(ContainerSpec(UNSHARE, name="otlp-e2e", privileged=True))
        assert run.returncode == 0, run.stderr
        cid = run.spec.container_id

        def alert_of_container(records):
            return [
                r
                for r in records
                if r.body.get("event", {}).get("kind") == "alert"
                and r.body.get("container", {}).get("id") == cid
            ]

        alerts = []
        deadline = time.monotonic() + 20  # bounds a failing test only
        while not alerts and time.monotonic() < deadline:
            alerts = alert_of_container(receiver.records())
            time.sleep(0.05)
        assert alerts, "no alert for the container reached the receiver"
        alert = alerts[0]
        assert isinstance(alert.body, dict)  # a structured map, not a string
        assert alert.body["rule"]["name"] == "User Or Mount Namespace Created From A Container"
        assert "T1611" in alert.body["threat"]["technique"]["id"]
        assert ecs_errors(alert.body) == []
        assert alert.resource["service.name"] == "provex"
        assert alert.resource["k8s.node.name"] == "node-e2e"
        assert alert.attributes["container.id"] == cid
        assert alert.severity_number > 0
    finally:
        assert_clean_exit(agent.stop(), agent.stderr_path)
        receiver.stop()


def test_recorded_run_replayed_over_http_gives_the_mapped_documents(tmp_path, runc):
    """The decoded OTLP bodies equal, one for one, what the mapping makes of the same records."""
    recorder = Agent(tmp_path)
    try:
        run = runc.run(
            ContainerSpec(
                ["/bin/sh", "-c", "cat /etc/passwd; " + " ".join(UNSHARE)], name="otlp-rec", privileged=True
            )
        )
        assert run.returncode == 0
        recorder.wait_for(
            lambda evs: any(e.cgroup_id == run.cgroup_id and e.syscall == "unshare" for e in evs)
        )
    finally:
        assert_clean_exit(recorder.stop(), recorder.stderr_path)
    events_file = tmp_path / "events.jsonl"
    assert events_file.exists()

    receiver = OtlpReceiver("http/protobuf").start()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NODE_NAME": "node-replay"}
    try:
        result = subprocess.run(
            [*REPLAY, str(events_file), "--schema", "ocsf", "--otlp-endpoint", receiver.endpoint, *HTTP],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        received = [r.body for r in receiver.records()]
    finally:
        receiver.stop()

    # The same records through the same stages, in process. A replay's documents name the
    # node each record was made on, never the replaying machine (its NODE_NAME above).
    correlator = build_correlator(load_config(None, environ={}).correlate)
    mapper = Mapper("ocsf", recorded=True)
    documents = []
    for event in ReplaySource(events_file):
        documents += [mapper.map(alert) for alert in correlator.process(event)]
        documents.append(mapper.map(event))  # None: a kind no schema class fits (fork, exit)
    documents += [mapper.map(a) for a in correlator.drain()]
    expected = [d.body for d in documents if d is not None]

    def canonical(docs):
        return sorted(json.dumps(d, sort_keys=True) for d in docs)

    assert canonical(received) == canonical(expected)
    assert {d["device"].get("name") for d in received} == {"unknown"}  # a container without a Pod
    assert any(d.get("class_uid") == 2004 for d in received), "the replay raised no Detection Finding"
    assert [(d.get("class_uid"), ocsf_errors(d)) for d in received if ocsf_errors(d)] == []


def test_live_readyz_reports_a_failing_collector_with_raw_events_exported(tmp_path, runc):
    """`provex run` exporting raw events too (the default): /readyz says the collector is
    degraded while it fails, stays 200 (detection goes on), and ok once it heals."""
    receiver = OtlpReceiver("grpc").start()
    receiver.grpc_status = grpc.StatusCode.UNAVAILABLE
    agent = otlp_agent(tmp_path, receiver, "--set", "output.otlp.timeout_s=0.5")
    try:
        code, body = agent._get("/readyz")
        assert code == 200 and "[+]collector ok" in body
        run = runc.run(ContainerSpec(UNSHARE, name="readyz-raw", privileged=True))
        assert run.returncode == 0, run.stderr

        def readyz_says(text: str) -> bool:
            code, body = agent._get("/readyz")
            assert code == 200, body
            return text in body

        wait_until(lambda: readyz_says("[-]collector degraded: collector "), timeout_s=30)
        receiver.grpc_status = None  # the collector heals: the held alert and new events go out
        runc.run(ContainerSpec(UNSHARE, name="readyz-raw-2", privileged=True))
        wait_until(lambda: any(r.scope_name == "provex.events" for r in receiver.records()), timeout_s=30)
        wait_until(lambda: readyz_says("[+]collector ok"), timeout_s=30)
    finally:
        agent.stop()
        receiver.stop()
