"""Secrets in command lines are masked, also inside one argument; everything else is kept as given.

The table of real-world forms is tests/fixtures/enrich/redaction.yaml; the patterns
are exporter/enrich/redact.yaml.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.correlate.cli import replay
from exporter.enrich.cgroups import CgroupResolver
from exporter.enrich.proctable import ProcessTable
from exporter.enrich.redact import MASK, PATTERNS_FILE, patterns, redact_argv, redact_text
from exporter.enrich.stage import EnrichStage
from exporter.model import Event, EventType, decode_event, encode_event
from tests.correlate.helpers import RULE_FIXTURES

TABLE = yaml.safe_load((Path(__file__).resolve().parents[1] / "fixtures/enrich/redaction.yaml").read_text())
REDACT = [pytest.param(c["argv"], c["want"], id=" ".join(c["argv"])[:60]) for c in TABLE["redact"]]
KEEP = [pytest.param(argv, id=" ".join(argv)[:60]) for argv in TABLE["keep"]]


def test_the_table_is_large_and_two_sided() -> None:
    assert len(REDACT) >= 30 and len(KEEP) >= 25
    assert len(REDACT) + len(KEEP) >= 60


@pytest.mark.parametrize(("argv", "want"), REDACT)
def test_redacts(argv: list[str], want: list[str]) -> None:
    assert redact_argv(argv) == want
    # Idempotent: a replayed, already redacted argv is unchanged.
    assert redact_argv(want) == want


@pytest.mark.parametrize("argv", KEEP)
def test_keeps_non_secrets_and_evidence(argv: list[str]) -> None:
    assert redact_argv(argv) == argv


def test_empty_and_input_not_mutated() -> None:
    assert redact_argv([]) == []
    argv = ["app", "--password=x"]
    redact_argv(argv)
    assert argv == ["app", "--password=x"]


def test_the_patterns_are_data(tmp_path: Path) -> None:
    """What is a secret is decided by the YAML file: a tool and a name added there are
    masked, with no code change."""
    text = "vaultctl -k hunter2 && deploy --pin=1234"
    assert redact_text(text) == text
    data = yaml.safe_load(PATTERNS_FILE.read_text())
    data["tools"].append({"tool": "vaultctl", "flag": "-k", "kind": "next"})
    data["names"]["words"].append("pin")
    edited = tmp_path / "redact.yaml"
    edited.write_text(yaml.safe_dump(data))
    assert redact_text(text, patterns(edited)) == f"vaultctl -k {MASK} && deploy --pin={MASK}"


def test_every_in_text_rule_is_exercised_by_the_table() -> None:
    loaded = patterns()
    hits = {rule.name: 0 for rule in loaded.text}
    for case in TABLE["redact"]:
        for arg in case["argv"]:
            for rule in loaded.text:
                if rule.pattern.search(arg):
                    hits[rule.name] += 1
    assert all(hits.values()), hits


# -- where argv comes from: live exec events, and /proc for processes started before us ---------

SECRET_SH = [
    "sh",
    "-c",
    "PGPASSWORD=hunter2 psql -h db.internal && curl -H 'Authorization: Bearer xyz' http://h",
]
REDACTED_SH = ["sh", "-c", "PGPASSWORD=*** psql -h db.internal && curl -H 'Authorization: ***' http://h"]


def test_live_exec_events_are_redacted_inside_one_argument() -> None:
    stage = EnrichStage(cgroups=CgroupResolver(None), processes=ProcessTable(), wait_ms=0)
    event = Event(
        id="e1",
        type=EventType.EXEC,
        syscall="execve",
        ts_ns=1,
        pid=4242,
        tid=4242,
        path="/bin/sh",
        argv=SECRET_SH,
    )
    stage.push(event, 1)
    (out,) = stage.pop_ready(1)
    assert out.argv == REDACTED_SH
    assert out.process is not None and out.process.argv == REDACTED_SH
    assert b"hunter2" not in encode_event(out) and b"xyz" not in encode_event(out)


def test_processes_learned_from_proc_are_redacted_inside_one_argument() -> None:
    # A real process started before the table was loaded, with the secret in its `sh -c` string.
    script = "PGPASSWORD=hunter2 sleep 30"
    child = subprocess.Popen(["sh", "-c", f"{script}; true"])
    try:
        table = ProcessTable()
        table.load_proc("/proc", boot_ns=0)
        entry = table.get(child.pid)
        assert entry is not None
        assert entry.argv == ["sh", "-c", "PGPASSWORD=*** sleep 30; true"]
        with open(f"/proc/{child.pid}/cmdline", "rb") as f:
            assert b"hunter2" in f.read()  # the secret was really there
    finally:
        child.kill()
        child.wait()


# -- redaction keeps what the rules need -------------------------------------------------------


def _redacted(event: Event) -> Event:
    event = decode_event(encode_event(event))
    if event.argv:
        event.argv = redact_argv(event.argv)
    if event.process is not None:
        event.process.argv = redact_argv(event.process.argv)
        event.process.parent_argv = redact_argv(event.process.parent_argv)
    return event


def test_redaction_keeps_every_rule_fixture_alert() -> None:
    """Every positive fixture of the default rules alerts the same after redaction."""
    ruleset = load_rules([DEFAULT_RULES_DIR])
    cases = sorted(RULE_FIXTURES.glob("*/*/*.jsonl"))
    assert cases
    for case in cases:
        before, _ = replay(ruleset, case)
        redacted = case.parent / f".redacted-{case.name}"
        try:
            events = [decode_event(line) for line in case.read_bytes().splitlines() if line.strip()]
            redacted.write_bytes(b"".join(encode_event(_redacted(e)) + b"\n" for e in events))
            after, _ = replay(ruleset, redacted)
        finally:
            redacted.unlink(missing_ok=True)
        assert [(a.rule_id, a.key) for a in after] == [(a.rule_id, a.key) for a in before], case


def test_no_secret_marker_reaches_the_documents() -> None:
    """The issue's leak list, through enrichment and the ECS mapping: no marker survives."""
    from exporter.agent.pipeline import Pipeline
    from exporter.mapping import Mapper
    from tests.helpers.memory_sink import MemorySink

    markers = ["hunter2", "abc-token", "xyz-bearer", "pgpw-x", "dbpw-y", "json-z", "yaml-w"]
    argvs = [
        ["sh", "-c", "echo --password=hunter2 token=abc-token Authorization: Bearer xyz-bearer"],
        ["sh", "-c", "PGPASSWORD=pgpw-x psql -h db"],
        ["app", "--dbpassword=dbpw-y"],
        ["curl", "-d", '{"password":"json-z"}', "http://10.0.0.2/"],
        ["sh", "-c", "printf 'password: yaml-w\\n' > /etc/app.yaml"],
    ]
    sink = MemorySink(Mapper("ecs", node_name="n", cluster_name="c", hostname="h"))
    pipeline = Pipeline(
        sink, enricher=EnrichStage(cgroups=CgroupResolver(None), processes=ProcessTable(), wait_ms=0)
    )
    events = [
        Event(
            id=f"e{n}",
            type=EventType.EXEC,
            syscall="execve",
            ts_ns=1 + n,
            pid=100 + n,
            tid=100 + n,
            argv=argv,
        )
        for n, argv in enumerate(argvs)
    ]
    pipeline.feed(events, 10)
    pipeline.finish()
    documents = json.dumps(sink.documents())
    assert len(sink.documents()) == len(argvs)
    for marker in markers:
        assert marker not in documents, marker
    assert documents.count(MASK) >= len(markers)
