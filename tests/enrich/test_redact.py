"""Secrets in command lines are masked, also inside one argument; everything else is kept as given.

The table of real-world forms is tests/fixtures/enrich/redaction.yaml (each with the tool and
the documentation its syntax comes from); the patterns are exporter/enrich/redact.yaml.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from bench.helpers.redaction import KEEP_FORMS, SECRET_FORMS, secrets_of
from exporter.agent.fixtures import replay
from exporter.agent.pipeline import Pipeline
from exporter.config.schema import CorrelateConfig
from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.correlate.engine import build_correlator
from exporter.emit.jsonlines import JsonLinesSink
from exporter.enrich.apiserver import ApiServerSet
from exporter.enrich.cgroups import CgroupResolver
from exporter.enrich.pods import PodCache, pod_from_json
from exporter.enrich.proctable import ProcessTable
from exporter.enrich.redact import (
    CACHE_MAX,
    MASK,
    PATTERNS_FILE,
    Patterns,
    patterns,
    redact_argv,
    redact_text,
)
from exporter.enrich.stage import EnrichStage
from exporter.mapping import Mapper
from exporter.model import Alert, Event, EventType, decode_event, encode_event
from exporter.yamlfile import YamlFileError
from tests.correlate.helpers import RULE_FIXTURES
from tests.helpers.apiserver import make_pod
from tests.helpers.memory_sink import MemorySink, TestSink

REDACT = [pytest.param(c["argv"], c["want"], id=" ".join(c["argv"])[:60]) for c in SECRET_FORMS]
KEEP = [pytest.param(c["argv"], id=" ".join(c["argv"])[:60]) for c in KEEP_FORMS]


def test_the_table_is_large_two_sided_and_sourced() -> None:
    assert len(SECRET_FORMS) >= 100 and len(KEEP_FORMS) >= 50
    for form in SECRET_FORMS + KEEP_FORMS:
        assert form["tool"] and form["doc"], form
        assert all(isinstance(a, str) for a in form["argv"] + form.get("want", [])), form
    # Each secret form hides something distinctive (the end-to-end test looks for it in every
    # output), and shows it nowhere in what redaction keeps.
    for form in SECRET_FORMS:
        secrets = secrets_of(form)
        assert secrets, form
        for secret in secrets:
            assert len(secret) >= 6 and secret not in "\0".join(form["want"]), (secret, form)


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
    """What is a secret is decided by the YAML file: a tool, a name and a shape added there are
    masked, with no code change."""
    text = "vaultctl -k hunter2 && deploy --pin=1234 && echo ACME-0123456789abcdef"
    assert redact_text(text) == text
    data = yaml.safe_load(PATTERNS_FILE.read_text())
    data["tools"].append({"tool": "vaultctl", "flag": "-k", "kind": "value"})
    data["names"]["words"].append("pin")
    data["shapes"].append({"name": "acme", "pattern": "ACME-[0-9a-f]{16}"})
    edited = tmp_path / "redact.yaml"
    edited.write_text(yaml.safe_dump(data))
    assert redact_text(text, patterns(edited)) == f"vaultctl -k {MASK} && deploy --pin={MASK} && echo {MASK}"


def _breaks_a_form(fewer: Patterns) -> bool:
    return any(redact_argv(f["argv"], fewer) != f.get("want", f["argv"]) for f in SECRET_FORMS + KEEP_FORMS)


def test_every_rule_and_shape_is_needed_by_the_table() -> None:
    """Each tool rule, text rule and shape is the only one to get some form of the table right:
    none is dead, and none is covered only by accident of another."""
    p = patterns()
    data = yaml.safe_load(PATTERNS_FILE.read_text())
    unused = [
        f"tools: {rule.tool.pattern} {rule.flag.pattern}"
        for i, rule in enumerate(p.tools)
        if not _breaks_a_form(replace(p, tools=p.tools[:i] + p.tools[i + 1 :]))
    ]
    unused += [
        f"in_text/shapes: {rule.name}"
        for i, rule in enumerate(p.text)
        if not _breaks_a_form(replace(p, text=p.text[:i] + p.text[i + 1 :]))
    ]
    joined = [shape for shape in data["shapes"] if not shape.get("when")]  # one alternation
    for shape in joined:
        others = "|".join(f"(?:{s['pattern']})" for s in joined if s is not shape)
        if not _breaks_a_form(replace(p, shapes=re.compile(others))):
            unused.append(f"shapes: {shape['name']}")
    assert not unused


# -- the patterns file refuses what it cannot use, with file:line ------------------------------


BAD_EDITS = [
    # (find, replace, the problem named)
    (
        "flag: 'obscure', kind: next}",
        "flag: 'obscure', kind: next, sep: ','}",
        "applies to kind userpass only",
    ),
    ("flag: 'obscure', kind: next}", "flag: 'obscure', kind: nxt}", "expected one of"),
    ("(?<![\\w-])pass:(?P<value>", "(?<![\\w-])pass:(?P<val>", "group named `value`"),
    ("    when: ['pass:']", "    when: ['PASS:']", "lower case"),
    ("pattern: 'hf_[A-Za-z0-9]{34,}'", "pattern: '(hf)_[A-Za-z0-9]{34,}'", "not capturing groups"),
    ("pattern: 'hf_[A-Za-z0-9]{34,}'", "pattern: 'hf_[A-Za-z0-9{34,}'", "not a regular expression"),
    ("  switch_first_words: [ask,", "  switch_first_word: [ask,", "did you mean names.switch_first_words?"),
]


@pytest.mark.parametrize(("find", "replace", "problem"), BAD_EDITS)
def test_a_bad_patterns_file_is_refused_at_its_line(
    tmp_path: Path, find: str, replace: str, problem: str
) -> None:
    text = PATTERNS_FILE.read_text()
    assert text.count(find) == 1, find
    line = text[: text.index(find)].count("\n") + 1
    edited = tmp_path / "redact.yaml"
    edited.write_text(text.replace(find, replace))
    with pytest.raises(YamlFileError) as caught:
        patterns(edited)
    assert (caught.value.file, caught.value.line) == (str(edited), line)
    assert problem in caught.value.problem


# -- what a workload can throw at it ------------------------------------------------------------


def test_truncated_and_odd_arguments() -> None:
    """The probe cuts long arguments: an unterminated quote, a cut PEM block, a lone flag."""
    assert redact_argv(["sh", "-c", "mysql -pTrunc4242 -e 'select"]) == ["sh", "-c", "mysql -p*** -e 'select"]
    assert redact_argv(["sh", "-c", "sshpass -p 'cut off"]) == ["sh", "-c", f"sshpass -p {MASK}"]
    assert redact_argv(["sh", "-c", "bash -c 'sshpass -p Cut4242 ssh h"]) == [
        "sh",
        "-c",
        f"bash -c 'sshpass -p {MASK} ssh h",
    ]
    assert redact_argv(["app", "--password"]) == ["app", "--password"]
    assert redact_argv(["sh", "-c", "a=\\", "'", '"', "\\", ""]) == ["sh", "-c", "a=\\", "'", '"', "\\", ""]
    huge = "x" * 200_000
    assert redact_argv(["sh", "-c", f"echo {huge} --token=Huge123456"]) == [
        "sh",
        "-c",
        f"echo {huge} --token={MASK}",
    ]


def test_the_caches_are_bounded_and_hold_no_secret() -> None:
    p = patterns()
    for n in range(CACHE_MAX * 2):
        redact_argv([f"tool{n}", f"--flag{n}", f"arg{n}"])
    assert len(p.clean) <= CACHE_MAX
    for form in SECRET_FORMS:
        redact_argv(form["argv"])
    remembered = "\0".join(p.clean)
    for form in SECRET_FORMS:
        for secret in secrets_of(form):
            assert secret not in remembered


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


def test_events_enriched_upstream_are_redacted_too() -> None:
    """An event that arrives with its process already known (a replayed recording made by an
    older version) has its own, its process's and its parent's argv redacted."""
    stage = EnrichStage(cgroups=CgroupResolver(None), processes=ProcessTable(), wait_ms=0)
    event = decode_event(
        json.dumps({
            "id": "e1", "type": "exec", "syscall": "execve", "ts_ns": 1, "pid": 7, "tid": 7,
            "argv": ["mysql", "-pUpstream11"],
            "process": {"pid": 7, "argv": ["mysql", "-pUpstream22"], "parent_argv": ["sshpass", "-p", "Upstream33"]},
        })
    )  # fmt: skip
    stage.push(event, 1)
    (out,) = stage.pop_ready(1)
    assert b"Upstream" not in encode_event(out)


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


# -- no secret of the table reaches any output --------------------------------------------------


def strings_in(value: Any) -> list[str]:
    """Every string (keys too) in a decoded JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def leaks(secrets: list[str], texts: list[str]) -> list[str]:
    joined = "\0".join(texts)
    return [s for s in secrets if s in joined]


class Tee(TestSink):
    """The pipeline's Sink protocol, to every output at once."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def emit_event(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit_event(event)

    def emit_alert(self, alert: Alert) -> None:
        for sink in self.sinks:
            sink.emit_alert(alert)

    def batch_done(self) -> None:
        for sink in self.sinks:
            sink.batch_done()

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


T0 = 1_764_000_000_000_000_000


def _container_exec(stage: EnrichStage, n: int, argv: list[str]) -> list[Event]:
    """A Pod whose container mounts the host's /usr/bin at /hostbin, and in it: a process that
    runs argv from the host mount (host_binary_exec alerts; its evidence is this exec), then
    forks a child that runs `true` (whose parent argv is argv)."""
    uid = f"00000000-0000-4000-8000-{n:012x}"
    cid = f"{n:064x}"
    cgroup = 5000 + n
    stage.cgroups.remember(cgroup, f"/kubepods/besteffort/pod{uid}/{cid}")
    stage.pods.upsert(
        pod_from_json(
            make_pod(
                f"app-{n}", uid, namespace="shop", containers=[("app", "busybox:1.36", f"containerd://{cid}")],
                host_paths={"hostbin": "/usr/bin"}, mounts={"app": [("hostbin", "/hostbin", True)]},
            )
        )
    )  # fmt: skip
    pid, ts = 10_000 + 10 * n, T0 + n * 1_000_000
    base = {"cgroup_id": cgroup, "uid": 0}
    return [
        Event(id=f"x{n}", type=EventType.EXEC, syscall="execve", ts_ns=ts, pid=pid, tid=pid, ppid=1,
              path=f"/hostbin/{argv[0].rsplit('/', 1)[-1]}", argv=list(argv), comm="sh", **base),
        Event(id=f"f{n}", type=EventType.FORK, syscall="fork", ts_ns=ts + 1, pid=pid, tid=pid, ppid=1,
              child_pid=pid + 1, **base),
        Event(id=f"c{n}", type=EventType.EXEC, syscall="execve", ts_ns=ts + 2, pid=pid + 1, tid=pid + 1,
              ppid=pid, path="/bin/true", argv=["true"], comm="true", **base),
    ]  # fmt: skip


def test_no_secret_of_the_table_reaches_any_output(tmp_path: Path) -> None:
    """Every form of the table, live-shaped (raw exec events from containers), through
    enrichment, the default rules, the JSON-lines output (the replay format) and the ECS and
    OCSF mappings: none of its secrets is in any event, alert (evidence included) or document,
    while the keep forms reach the documents exactly as given."""
    stage = EnrichStage(
        cgroups=CgroupResolver(None), processes=ProcessTable(), pods=PodCache(),
        apiservers=ApiServerSet(["10.96.0.1:443"]), wait_ms=0, k8s_ready=lambda: True,
    )  # fmt: skip
    lines = tmp_path / "out.jsonl"
    ecs = MemorySink(Mapper("ecs", node_name="n", cluster_name="c", hostname="h"))
    ocsf = MemorySink(Mapper("ocsf", node_name="n", cluster_name="c", hostname="h"))
    pipeline = Pipeline(
        Tee(JsonLinesSink(str(lines)), ecs, ocsf),
        enricher=stage,
        correlator=build_correlator(CorrelateConfig()),
    )
    forms = SECRET_FORMS + KEEP_FORMS
    events = [e for n, form in enumerate(forms) for e in _container_exec(stage, n, form["argv"])]
    pipeline.feed(events, T0)
    pipeline.finish()
    pipeline.sink.close()

    records = [json.loads(line) for line in lines.read_text().splitlines()]
    alerts = [r["alert"] for r in records if "alert" in r]
    host_exec = [a for a in alerts if a["rule_title"] == "Host Binary Executed From A Container"]
    assert len(host_exec) == len(forms)  # the alert path ran, once per form
    assert all(a["event"]["process"]["argv"] for a in alerts)
    outputs = {
        "json lines (events and alerts)": [s for r in records for s in strings_in(r)],
        "ecs documents": [s for d in ecs.documents() for s in strings_in(d)],
        "ocsf documents": [s for d in ocsf.documents() for s in strings_in(d)],
        "alert records": [s for e in ecs.emitted if e.signal == "alerts" for s in strings_in(msgspec.to_builtins(e.record))],
    }  # fmt: skip
    for form in SECRET_FORMS:
        for output, texts in outputs.items():
            assert not leaks(secrets_of(form), texts), (output, form["argv"])

    # What is kept arrives as given: the exec's own args and its child's parent args.
    docs = {d["event"]["id"]: d for d in ecs.documents("events")}
    for n, form in enumerate(forms):
        want = form.get("want", form["argv"])
        assert docs[f"x{n}"]["process"]["args"] == want
        assert docs[f"c{n}"]["process"]["parent"]["args"] == want


def test_no_secret_of_the_table_is_learned_from_proc() -> None:
    """Real processes whose command lines hold every form of the table (as arguments of a
    shell that waits), read from /proc by the process table: none of the secrets is kept."""
    children = [
        subprocess.Popen(["sh", "-c", "read x", *form["argv"]], stdin=subprocess.PIPE)
        for form in SECRET_FORMS
    ]
    try:
        table = ProcessTable()
        table.load_proc("/proc", boot_ns=0)
        for child, form in zip(children, SECRET_FORMS, strict=True):
            with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                assert f.read().split(b"\0")[3:-1] == [a.encode() for a in form["argv"]]  # really there
            entry = table.get(child.pid)
            assert entry is not None
            assert entry.argv[3:] == form["want"]
            assert not leaks(secrets_of(form), entry.argv), form["argv"]
    finally:
        for child in children:
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
