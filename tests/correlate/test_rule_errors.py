"""Bad rules are refused with file:line, and a rule set with one bad file loads nothing."""

from __future__ import annotations

import pytest

from exporter.config.schema import CorrelateConfig
from exporter.correlate import RulesError, build_correlator, load_rules

from .helpers import SIMPLE, write_rule

CORR = """
title: Chain
id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0002
correlation:
  type: temporal_ordered
  rules:
    - simple
    - {missing}
  group-by:
    - ContainerId
  timespan: {timespan}
level: high
"""


def _error(tmp_path):
    with pytest.raises(RulesError) as info:
        load_rules([tmp_path])
    assert len(info.value.errors) == 1, info.value.errors
    return info.value.errors[0]


def _line_of(path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_misspelt_field_is_refused_with_a_suggestion(tmp_path):
    path = write_rule(tmp_path, "r.yml", SIMPLE.replace("TargetFilename: /etc/shadow", "TargetFileName: /x"))
    err = _error(tmp_path)
    assert (err.file, err.line, err.cause) == (
        str(path),
        _line_of(path, "TargetFileName"),
        "unknown_field:TargetFileName",
    )
    assert f"{path}:{err.line}" in str(err)
    assert "did you mean 'TargetFilename'?" in err.message


def test_misspelt_category_is_refused_with_a_suggestion(tmp_path):
    write_rule(tmp_path, "r.yml", SIMPLE.replace("category: file_access", "category: file_acess"))
    err = _error(tmp_path)
    assert err.cause == "logsource_typo"
    assert "did you mean 'file_access'?" in err.message


def test_rules_provex_cannot_evaluate_are_skipped_not_refused(tmp_path):
    """A field far from every provex field, or a logsource provex does not produce, is a rule
    for another sensor: skipped (and listed), while the rest of the set loads."""
    write_rule(tmp_path, "good.yml", SIMPLE)
    other_field = SIMPLE.replace("0001", "0004").replace("name: simple", "name: f")
    write_rule(tmp_path, "field.yml", other_field.replace("TargetFilename:", "LogonId:"))
    auditd = SIMPLE.replace("0001", "0005").replace("name: simple", "name: a")
    write_rule(tmp_path, "auditd.yml", auditd.replace("category: file_access", "service: auditd"))
    corr = CORR.format(missing="a", timespan="5m").replace("0002", "0006")
    write_rule(tmp_path, "chain.yml", corr)
    ruleset = load_rules([tmp_path])
    assert [r.name for r in ruleset.rules] == ["simple"]
    causes = sorted(e.cause for e in ruleset.skipped)
    assert causes == ["logsource:auditd", "skipped_step", "unknown_field:LogonId"]
    assert all(e.line > 0 for e in ruleset.skipped)


def test_attack_tags_outside_enterprise_are_warnings(tmp_path):
    """Checked against all 691 Enterprise techniques and 14 tactics; an unknown tag (a later
    ATT&CK release) warns and the rule loads: techniques kept as written, tactics left out."""
    tags = "attack.t1059.004\n  - attack.t9999\n  - attack.stealth\n  - attack.execution"
    path = write_rule(tmp_path, "r.yml", SIMPLE.replace("attack.t1611", tags))
    ruleset = load_rules([tmp_path])
    (rule,) = ruleset.rules
    assert rule.techniques == ["T1059.004", "T9999"]
    assert rule.tactics == ["execution"]
    assert [w.cause for w in ruleset.warnings] == ["unknown_attack_tag", "unknown_attack_tag"]
    assert all(w.line == _line_of(path, "tags:") for w in ruleset.warnings)
    assert "'attack.t9999'" in ruleset.warnings[0].message
    assert "'attack.stealth'" in ruleset.warnings[1].message


def test_bad_timespan(tmp_path):
    write_rule(tmp_path, "a.yml", SIMPLE)
    path = write_rule(tmp_path, "b.yml", CORR.format(missing="simple", timespan="5parsecs"))
    err = _error(tmp_path)
    assert (err.file, err.line, err.cause) == (str(path), _line_of(path, "timespan"), "sigma")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("level: high", "level: extreme", "level:"),
        ("level: high", "status: someday\nlevel: high", "status:"),
        ("id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0001", "id: not-a-uuid", "id:"),
        ("title: Simple", "title: Simple\ndate: yesterday", "date:"),
        ("  condition: selection", "  condition: selection and", "condition:"),
    ],
)
def test_sigma_errors_point_at_their_key(tmp_path, old, new, key):
    """Each kind of pySigma error is located by its type at the key it is about."""
    assert old in SIMPLE
    path = write_rule(tmp_path, "r.yml", SIMPLE.replace(old, new))
    err = _error(tmp_path)
    assert (err.cause, err.line) == ("sigma", _line_of(path, key)), err


def test_a_value_pysigma_trips_over_is_refused_not_a_crash(tmp_path):
    path = write_rule(
        tmp_path, "r.yml", SIMPLE.replace("id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0001", "id: [1, 2]")
    )
    err = _error(tmp_path)
    assert (err.cause, err.line) == ("sigma", _line_of(path, "title:")), err


def test_correlation_type_error_is_refused(tmp_path):
    write_rule(tmp_path, "a.yml", SIMPLE)
    path = write_rule(
        tmp_path,
        "b.yml",
        CORR.format(missing="simple", timespan="5m").replace("temporal_ordered", "sometimes"),
    )
    err = _error(tmp_path)
    assert (err.cause, err.line) == ("sigma", _line_of(path, "title:")), err


def test_correlation_naming_a_missing_rule(tmp_path):
    write_rule(tmp_path, "a.yml", SIMPLE)
    path = write_rule(tmp_path, "b.yml", CORR.format(missing="nowhere", timespan="5m"))
    err = _error(tmp_path)
    assert (err.file, err.line, err.cause) == (str(path), _line_of(path, "rules:"), "missing_rule")


def test_one_bad_file_loads_nothing(tmp_path):
    write_rule(tmp_path, "good.yml", SIMPLE)
    write_rule(
        tmp_path,
        "bad.yml",
        SIMPLE.replace("0001", "0003").replace("simple", "other").replace("level: high", "level: extreme"),
    )
    with pytest.raises(RulesError) as info:
        build_correlator(CorrelateConfig(rules_dirs=[str(tmp_path)]))
    assert [e.file.rsplit("/", 1)[1] for e in info.value.errors] == ["bad.yml"]
    assert str(info.value) == str(info.value.errors[0])  # one line per error, each located


def test_invalid_yaml_reports_its_line(tmp_path):
    path = write_rule(tmp_path, "r.yml", SIMPLE + "detection: [unclosed\n")
    err = _error(tmp_path)
    assert err.cause == "yaml" and err.file == str(path) and err.line > 0


def test_unknown_extension_and_duplicate_ids(tmp_path):
    path = write_rule(tmp_path, "a.yml", SIMPLE + "x-provex-lineage: {mode: kin}\n")
    err = _error(tmp_path)
    assert err.message == "unknown key x-provex-lineage; known here: x-provex-include-failed, x-provex-key"
    assert err.line == _line_of(path, "x-provex-lineage")
    write_rule(tmp_path, "a.yml", SIMPLE)
    write_rule(tmp_path, "b.yml", SIMPLE)
    assert _error(tmp_path).cause == "duplicate"


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        ("x-provex-lineage: {mode: kin, depth: 40}",
         "key x-provex-lineage.depth: 40 is not allowed; expected an integer 0..16"),
        ("x-provex-lineage: {mode: sibling}",
         "key x-provex-lineage.mode: 'sibling' is not allowed; expected one of: descendant, kin"),
        ("x-provex-lineage: {mode: kin, deep: 2}", "unknown key x-provex-lineage.deep; known here: mode, depth"),
        ("x-provex-same:\n  - {simple: ContainerId}",
         "key x-provex-same.0: {'simple': 'ContainerId'} is not allowed; expected a map of RULE: Field"),
        ("x-provex-same:\n  - {simple: ContainerId, other: ContainerId}",
         "x-provex-same names 'other', which is not a step of this correlation"),
        ("x-provex-linage: {mode: kin}", "unknown key x-provex-linage; did you mean x-provex-lineage?"),
    ],
)  # fmt: skip
def test_bad_correlation_extension_is_refused_at_its_line(tmp_path, extension, message):
    write_rule(tmp_path, "a.yml", SIMPLE)
    corr = CORR.format(missing="simple", timespan="5m") + extension + "\n"
    path = write_rule(tmp_path, "b.yml", corr)
    err = _error(tmp_path)
    assert message in err.message, err.message
    assert err.line == _line_of(path, extension.splitlines()[-1])


def test_lt_condition_is_refused(tmp_path):
    write_rule(tmp_path, "a.yml", SIMPLE)
    corr = CORR.format(missing="simple", timespan="5m").replace("temporal_ordered", "event_count")
    path = write_rule(
        tmp_path, "b.yml", corr.replace("  timespan: 5m\n", "  timespan: 5m\n  condition:\n    lt: 3\n")
    )
    err = _error(tmp_path)
    assert (err.cause, err.line) == ("correlation_condition", _line_of(path, "condition:"))


def test_disabled_rules(tmp_path):
    write_rule(tmp_path, "a.yml", SIMPLE)
    config = CorrelateConfig(default_rules=False, rules_dirs=[str(tmp_path)], disabled_rules=["simple"])
    assert build_correlator(config).ruleset.rules == []
    with pytest.raises(RulesError, match="no rule has id, name or title 'simpel'"):
        build_correlator(
            CorrelateConfig(default_rules=False, rules_dirs=[str(tmp_path)], disabled_rules=["simpel"])
        )


def test_disabling_a_step_disables_its_correlation():
    config = CorrelateConfig(disabled_rules=["sa_token_read"])
    correlator = build_correlator(config)
    assert "sa_token_exfiltration" not in {c.name for c in correlator.ruleset.correlations}


def test_missing_rules_dir_is_refused(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        build_correlator(CorrelateConfig(rules_dirs=[str(tmp_path / "nope")]))
