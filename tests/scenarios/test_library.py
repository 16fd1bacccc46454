"""The scenario library as data: coverage of the default rules, located errors, the verdicts."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.scenarios.agent import SeenAlert
from exporter.scenarios.lab import Prepared, TrialRun
from exporter.scenarios.library import (
    PLACEHOLDERS,
    Scenario,
    ScenarioError,
    canaries,
    default_rules,
    load_file,
    load_library,
)
from exporter.scenarios.runc import ContainerSpec
from exporter.scenarios.session import judge
from exporter.scenarios.verify import RuleResult, render

LIBRARY = load_library()
RULES = default_rules()
ALERTING = sorted({r.name for r in RULES.values()})


def test_every_default_rule_has_a_canary_and_at_least_two_variants():
    assert sorted(canaries(LIBRARY)) == ALERTING
    variants = Counter(s.rule for s in LIBRARY if s.kind == "attack")
    assert {rule: n for rule, n in variants.items() if n < 2} == {}
    assert set(variants) == set(ALERTING)


def test_ten_attack_classes_and_the_benign_set():
    classes = {s.klass for s in LIBRARY if s.kind == "attack"}
    # the seven rule classes, the provenance forms, lateral movement, kernel evasion
    assert len(classes) == 10, classes
    benign = {s.name for s in LIBRARY if s.kind == "benign"}
    assert {
        "startup",
        "token-read-no-api",
        "allowlisted-controller",
        "health-checks",
        "file-heavy-job",
        "pod-calls-pod-service",
    } <= benign
    assert "package-manager-storm" in benign


def test_pidfd_and_legacy_variants_are_in_the_library():
    scripts = {s.name: s.script for s in LIBRARY}
    assert "setns-pidfd" in scripts["setns-pidfd"] and "nsenter" in scripts["nsenter-uts-ipc"]
    assert scripts["shadow-legacy-open"].startswith("sysprobe open ")


def test_scripts_only_use_known_placeholders_and_render():
    values = dict.fromkeys(PLACEHOLDERS, "1")
    for s in LIBRARY:
        rendered = s.render(values)
        assert "${" not in rendered.replace("$(", ""), s.name


def _write(tmp_path, text: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("class: x\nscenarios:\n  - name: a\n    script: echo ${NOPE}\n    rule: container_setns\n", 3, "NOPE"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: no_such_rule\n", 3, "no_such_rule"),
        ("class: x\nscenarios:\n  - name: ok\n    script: 'true'\n    rule: container_setns\n"
         "  - name: b\n    script: 'true'\n    colour: red\n", 8, "unknown key scenarios.1.colour; known here: name,"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    kind: evil\n", 5,
         "scenario 'a': key scenarios.0.kind: 'evil' is not allowed; expected one of: attack, benign"),
        ("class: x\nscenarios: []\n", 2, "key scenarios: [] is not allowed; expected a non-empty list"),
        ("klass: x\nscenarios: []\n", 1, "unknown key klass; did you mean class?"),
        ("class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n    technique: T1046\n",
         3, "T1046"),
        ("class: benign\nscenarios:\n  - name: a\n    script: 'true'\n    canary: true\n", 3, "benign"),
        ("class: x\nscenarios:\n  - name: Bad_Name\n    script: 'true'\n    rule: container_setns\n", 3, "Bad_Name"),
        ("class: x\nscenarios:\n  - name: a\n    script: [\n", 5, "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_scenario_files_are_refused_with_file_and_line(tmp_path, text, line, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_file(path, RULES)
    message = str(info.value)
    assert f"{path}:{line}:" in message and needle in message, message


def test_duplicate_names_across_files_are_refused(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("class: x\nscenarios:\n  - name: same\n    script: 'true'\n    rule: container_setns\n")
    b = tmp_path / "b.yaml"
    b.write_text("class: y\nscenarios:\n  - name: same\n    script: 'true'\n    rule: container_setns\n")
    with pytest.raises(ScenarioError, match=r"b\.yaml:3: scenario name 'same' already used at .*a\.yaml:3"):
        load_library([a, b])


def _run(scenario: Scenario, rc: int = 0) -> TrialRun:
    prepared = Prepared(scenario, 0, "uid", "cid-1", "pod-0", {}, ContainerSpec(["true"]))
    return TrialRun(prepared, 1, rc, "", "", 0, 0)


def _alert(rule: str, decisive: int, seen: int, cid: str = "cid-1") -> SeenAlert:
    ref = RULES[rule]
    return SeenAlert(ref.uid, ref.title, cid, "pod-0", "ns", ref.techniques, decisive, seen)


def test_verdicts():
    attack = next(s for s in LIBRARY if s.name == "shadow-cat")
    benign = next(s for s in LIBRARY if s.name == "startup")
    ms = 1_000_000
    assert judge(_run(attack), [], RULES, 1000).status == "missed"
    assert judge(_run(attack, rc=1), [], RULES, 1000).status == "error"
    fired = judge(_run(attack), [_alert(attack.rule, 10 * ms, 15 * ms)], RULES, 1000)
    assert fired.status == "fired" and fired.latency_ms == 5.0
    assert judge(_run(attack), [_alert(attack.rule, 0, 1500 * ms)], RULES, 1000).status == "late"
    # Another container's alert is not this trial's; another rule's alert is a wrong alert.
    assert judge(_run(attack), [_alert(attack.rule, 0, 1, cid="other")], RULES, 1000).status == "missed"
    mixed = judge(_run(attack), [_alert(attack.rule, 0, 1), _alert("container_setns", 0, 1)], RULES, 1000)
    assert mixed.status == "fired" and [a.rule_title for a in mixed.wrong_alerts()] == [
        RULES["container_setns"].title
    ]
    assert judge(_run(benign), [], RULES, 1000).status == "clean"
    assert judge(_run(benign), [_alert("container_setns", 0, 1)], RULES, 1000).status == "false-positive"


def test_a_chain_that_holds_another_names_it_and_only_that_one_is_not_wrong(tmp_path):
    chain = next(s for s in LIBRARY if s.name == "inbound-then-token-api")
    assert chain.also == ["sa_token_exfiltration"]
    both = [_alert(chain.rule, 0, 1), _alert("sa_token_exfiltration", 0, 1), _alert("container_setns", 0, 1)]
    outcome = judge(_run(chain), both, RULES, 1000)
    assert outcome.status == "fired"
    assert [a.rule_title for a in outcome.wrong_alerts()] == [RULES["container_setns"].title]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "class: x\nscenarios:\n  - name: a\n    script: 'true'\n    rule: container_setns\n"
        "    also: [container_setns, nope]\n"
    )
    with pytest.raises(ScenarioError, match="also 'container_setns' is not another") as err:
        load_file(bad)
    assert "also 'nope'" in str(err.value)


def test_verify_table_says_late_and_missing():
    text = render(
        [
            RuleResult("a_rule", "canary-a", "fired", 2.0),
            RuleResult("b_rule", "canary-b", "late", 1500.0),
            RuleResult("c_rule", "canary-c", "missed", None),
        ]
    )
    assert "fired late" in text and "did not fire" in text
    assert text.splitlines()[-1] == "1/3 rules fired in time; failing: b_rule, c_rule"
