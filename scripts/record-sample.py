#!/usr/bin/env python3
"""Record exporter/samples/recording.jsonl: what `provex replay` plays with no file.

Runs (as root) a lab of the scenario library (a stand-in API server, runc containers
registered as Pods), `provex record` watching it with the lab's kubeconfig, a few benign
workloads and one attack chain (service-account token read, then a connection to the API
server), and keeps only the lab's own Pods' events. Replaying the result raises the chain's
alert (tests/test_sample.py checks it):

    sudo PYTHONPATH=. .venv/bin/python scripts/record-sample.py
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from exporter.model import decode_event, encode_event
from exporter.resources import sample_recording
from exporter.scenarios.agent import free_port, health_get, parse_metrics, wait_ready
from exporter.scenarios.lab import Lab, subprocess_env
from exporter.scenarios.library import load_library

SCENARIOS = ["startup-shell", "token-read-no-api", "health-checks", "few-endpoints", "cat-then-wget"]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="provex-sample-"))
    raw = work / "recorded.jsonl"
    lab = Lab(work / "lab")
    port = free_port()
    args = [sys.executable, "-m", "exporter", "record", "--output", str(raw), "--kubeconfig", lab.kubeconfig]
    args += ["--node-name", lab.node_name, "--health-addr", f"127.0.0.1:{port}"]
    with open(work / "record.stderr", "wb") as stderr:
        recorder = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, env=subprocess_env())
    try:
        wait_ready(recorder, port, 120, lambda: (work / "record.stderr").read_text())
        by_name = {s.name: s for s in load_library()}
        prepared = [lab.prepare(by_name[name]) for name in SCENARIOS]
        for p in prepared:
            lab.register(p)
        deadline = time.monotonic() + 30
        while parse_metrics(health_get(port, "/metrics")[1]).get("provex_k8s_pods", 0) < len(prepared):
            if time.monotonic() > deadline:
                raise SystemExit("the recorder never learned the lab's Pods")
            time.sleep(0.05)
        for p in prepared:
            run = lab.run(p)
            print(f"{p.scenario.name}: exit {run.returncode}", file=sys.stderr)
        time.sleep(1.0)  # batched events reach the file within the drain interval
    finally:
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(timeout=30)
        lab.close()
    mine = {p.container_id for p in prepared}
    kept = []
    for line in raw.read_bytes().splitlines():
        try:
            event = decode_event(line)
        except msgspec.DecodeError:
            continue
        if event.container is not None and event.container.id in mine:
            kept.append(encode_event(event))
    target = sample_recording()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(line + b"\n" for line in kept))
    print(f"wrote {len(kept)} events to {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
