"""The second held-out list (bench/variants/heldout2.yaml) and what the lab gives it: rules
expected before they exist, an image laid out before the container starts, payloads served
on 127.0.0.1, and sysprobe's syscalls. The live part runs every workload once in a real runc
container (no agent): each must do what it claims, or its detection means nothing."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from exporter.scenarios.lab import Lab
from exporter.scenarios.library import (
    RuleRef,
    ScenarioError,
    default_rules,
    load_file,
    load_library,
    rule_table,
)
from exporter.scenarios.runc import ContainerSpec
from exporter.scenarios.session import judge
from tests.scenarios.test_library import _alert, _run

HELDOUT2 = Path(__file__).resolve().parents[2] / "bench" / "variants" / "heldout2.yaml"
RULES = default_rules()
LIST = load_library([HELDOUT2])
BY_NAME = {s.name: s for s in LIST}

# Issue 21's "Why" and issue 22's runtime evasion, one scenario each.
ISSUE_FORMS = [
    "i-dotdot-from-tmp", "i-image-symlink-host-etc", "i-image-symlink-token-dir", "i-relative-symlink-cd-tmp",
    "i-long-path-dots-416", "i-long-path-300-slashes", "i-dirfd-dup", "i-dirfd-fcntl-dupfd", "i-fchdir-of-dup",
    "i-dev-fd-3-shadow", "i-parent-proc-fd-3-shadow", "i-proc-pid-root-other", "i-openat2-in-root-host-dirfd",
    "i-io-uring-openat", "i-open-by-handle-at", "i-open-tree-fd", "i-bind-mount-alias", "i-unshare-urm-bind-alias",
    "i-rename-file-before-read", "i-rename-dir-before-read", "i-hardlink-before-start", "i-wget-pipe-sh",
    "i-wget-pipe-sh-s", "i-wget-pipe-awk-program", "i-memfd-execveat-download", "i-memfd-proc-self-fd-download",
    "i-memfd-fetched-by-sysprobe",
    *(f"r-{where}-{call}" for where in ("tmp-runc", "tmp-crun", "tmp-shim", "dot-runc", "spoofed-comm")
      for call in ("mount", "unshare", "setns")),
]  # fmt: skip


def test_every_issue_form_is_there_with_at_least_twenty_further_forms_and_twins():
    assert [n for n in ISSUE_FORMS if n not in BY_NAME] == []
    assert all(BY_NAME[n].kind == "attack" for n in ISSUE_FORMS)
    further = [s for s in LIST if s.name.startswith("n-")]
    assert len(further) >= 20 and all(s.kind == "attack" for s in further)
    assert all(s.family for s in LIST), [s.name for s in LIST if not s.family]
    families = Counter((s.family.split("/")[0], s.kind) for s in LIST)
    for klass in ("alias", "carrier", "runtime"):  # every class has forms and benign twins
        assert families[(klass, "attack")] and families[(klass, "benign")], klass
    assert {s.name for s in LIST if s.kind == "benign"} >= {
        "b-local-script-pipe-sh", "b-sh-stdin-redirect-local", "b-download-pipe-wc", "b-download-pipe-tar",
        "b-runc-start-privileged", "b-own-dirfd-dup-forms", "b-own-binary-execveat", "b-image-symlink-token-no-api",
    }  # fmt: skip


def test_expected_new_rules_are_pending_until_a_default_rule_has_the_name(tmp_path):
    # The held-out list's new rules have all landed as default rules: none is pending.
    assert not [name for name, ref in rule_table(LIST).items() if ref.pending]
    assert BY_NAME["n-memfd-exec-local-elf"].pending_rules == {}
    # A rule still to come is pending: its scenarios load, and are judged missed.
    path = tmp_path / "future.yaml"
    path.write_text(
        "class: x\nexpected_new_rules:\n  future_rule: {techniques: [T1620]}\nscenarios:\n"
        "  - name: a\n    script: 'true'\n    rule: future_rule\n    technique: T1620\n"
    )
    (future,) = load_file(path)
    table = rule_table([future])
    assert table["future_rule"].pending and future.pending_rules == {"future_rule": ["T1620"]}
    # No alert carries a pending rule's id: the scenario is missed, and another rule's alert is
    # a wrong one (what the before measures).
    outcome = judge(_run(future), [_alert("download_and_execute", 0, 1)], table, 1000)
    assert outcome.status == "missed" and len(outcome.wrong_alerts()) == 1
    # Once the default set has the rule, the real one judges, and its techniques are checked.
    landed = {**RULES, "future_rule": RuleRef("u-1", "future_rule", "Future", ("T1620",))}
    (loaded,) = load_file(path, landed)
    assert loaded.pending_rules == {} and rule_table([loaded], landed)["future_rule"].uid == "u-1"
    wrong = {**RULES, "future_rule": RuleRef("u-1", "future_rule", "Future", ("T1059",))}
    with pytest.raises(ScenarioError, match="a: rule future_rule carries"):
        load_file(path, wrong)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("class: x\nexpected_new_rules:\n  new_rule: {techniques: [T1620]}\nscenarios:\n  - name: a\n"
         "    script: 'true'\n    rule: other_rule\n", 5, "'other_rule' is not an alerting default rule (nor declared"),
        ("class: x\nexpected_new_rules:\n  Bad-Name: {techniques: [T1620]}\nscenarios:\n  - name: a\n"
         "    script: 'true'\n    rule: container_setns\n", 3, "rule name 'Bad-Name'"),
        ("class: x\nexpected_new_rules:\n  new_rule: {techniques: []}\nscenarios:\n  - name: a\n"
         "    script: 'true'\n    rule: new_rule\n", 3, "expected_new_rules.new_rule.techniques"),
        ("class: x\nexpected_new_rules:\n  new_rule: {techniques: [T1620]}\nscenarios:\n  - name: a\n"
         "    script: 'true'\n    rule: new_rule\n    technique: T1611\n", 5, "rule new_rule carries ['T1620']"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n    image:\n"
         "      - {path: /opt/x, content: a, symlink: /etc}\n", 3, "exactly one of content, symlink, hardlink"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n    image:\n"
         "      - {path: /tmp/x, symlink: /etc}\n", 3, "mounts over"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n    image:\n"
         "      - {path: /opt/../x, content: a}\n", 3, "without '..'"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n"
         "    token: /var/run/secrets/t/token\n    image:\n      - {path: /var/run/secrets/t/x, content: a}\n",
         3, "hidden by the token's mount"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n    image:\n"
         "      - {path: /opt/x, colour: red}\n", 7, "unknown key scenarios.0.image.0.colour"),
    ],
)  # fmt: skip
def test_bad_held_out_files_are_refused_with_file_and_line(tmp_path, text, line, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_file(path, RULES)
    message = str(info.value)
    assert f"{path}:{line}:" in message and needle in message, message


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("heldout2") / "lab") as lab:
        yield lab


@pytest.mark.containers
def test_every_held_out_workload_does_what_it_claims(lab):
    failed = {}
    for scenario in LIST:
        run = lab.run(lab.prepare(scenario, 0), timeout=30)
        if not run.ok:
            failed[scenario.name] = (run.returncode, run.stdout[-200:], run.stderr[-200:])
    assert failed == {}


@pytest.mark.containers
def test_the_image_exists_before_the_container_starts(lab):
    hardlink = BY_NAME["i-hardlink-before-start"]
    prepared = lab.prepare(hardlink, 0)
    etc_dir, log_dir = (
        Path(m.host_path) for m in sorted(prepared.spec.mounts, key=lambda m: m.container_path)
    )
    assert (log_dir / "app.log.1").stat().st_ino == (etc_dir / "shadow").stat().st_ino  # node state
    symlink = lab.prepare(BY_NAME["i-image-symlink-host-etc"], 0)
    assert os.readlink(Path(symlink.spec.rootfs) / "opt/cfg") == "/host/etc"
    assert not (lab.runc.rootfs / "opt").exists()  # the shared rootfs is untouched
    plain = lab.prepare(BY_NAME["i-dotdot-from-tmp"], 0)
    assert plain.spec.rootfs == ""  # no image: the shared rootfs
    seen = lab.run(lab.prepare(BY_NAME["b-image-hardlink-own-file"], 0))
    assert seen.ok, seen.stderr


@pytest.mark.containers
def test_payloads_are_served_on_loopback_and_sysprobe_refuses_bad_calls(lab):
    url = f"http://127.0.0.1:{lab.http.port}"
    with urllib.request.urlopen(f"{url}/payload.elf") as response:
        assert response.read(4) == b"\x7fELF"
    with urllib.request.urlopen(f"{url}/payload.awk") as response:
        assert b"system(" in response.read()
    script = "sysprobe openat-dup sideways /etc shadow; sysprobe uring-openat /no/such; sysprobe handle-ino"
    bad = lab.runc.run(ContainerSpec(["/bin/sh", "-c", script], name="sysprobe-errors"))
    assert bad.stdout.splitlines() == ["ret=-1 errno=22", "ret=-1 errno=2"]
    assert "unknown or incomplete operation handle-ino" in bad.stderr


def test_the_before_after_table_has_a_column_per_run_and_one_to_fill(tmp_path):
    spec = importlib.util.spec_from_file_location("report", HELDOUT2.parent / "report.py")
    report = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(report)  # type: ignore[union-attr]
    form, twin = BY_NAME["i-bind-mount-alias"], BY_NAME["b-echo-pipe-sh"]
    mount = RULES["container_mount"].title
    before = {
        "by_family": {"alias/mount (attack)": {"detected": 0, "trials": 3, "errors": 0}},
        "by_scenario": {
            form.name: {"detected": 0, "trials": 3, "errors": 0, "trials_alerted_by_rule": {mount: 3}},
            twin.name: {"trials_with_alerts": 1, "trials": 3, "errors": 1, "rules": [mount]},
        },
    }
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(before))
    out = tmp_path / "table.md"
    with out.open("w") as sink, contextlib.redirect_stdout(sink):
        assert report.main([str(HELDOUT2), str(path), "-"]) == 0
    lines = out.read_text().splitlines()
    assert "| alias/mount (attack) | 0/3 |  |" in lines
    assert f"| {form.name} | alias/mount | host_sensitive_file_read | 0/3 |  | {mount} (also): 3 |" in lines
    assert f"| {twin.name} | carrier/pipe | 1/2 (1 errors) |  | {mount} |" in lines
    assert "| n-memfd-exec-local-elf | carrier/memfd | fileless_execution | - |  |  |" in lines
    with pytest.raises(SystemExit):
        report.main([str(HELDOUT2), "-"])
