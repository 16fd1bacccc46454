"""`provex rules lint | test | survey | fields` as functions and as argparse subcommands."""

from __future__ import annotations

import argparse
import io
import json

from exporter.cli import rules as cli
from exporter.cli.rules import add_rules_subcommands, lint, survey
from exporter.model import EventType, encode_event

from .helpers import SIMPLE, event, write_rule


def _run(fn, *args, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = fn(*args, out=out, **kw)
    return code, out.getvalue()


def test_lint_default_rules_is_clean():
    code, text = _run(lint, [])
    assert code == 0 and text.startswith("OK ")


def test_lint_reports_file_and_line(tmp_path):
    path = write_rule(tmp_path, "r.yml", SIMPLE.replace("TargetFilename:", "TargetFilenam:"))
    code, text = _run(lint, [tmp_path])
    assert code == 1
    assert f"ERROR {path}:9: unknown field 'TargetFilenam': did you mean 'TargetFilename'?" in text
    assert text.splitlines()[-1] == "1 error(s); nothing loaded"


def test_lint_reports_the_column_of_a_yaml_error(tmp_path):
    """A rule file's YAML error keeps its column, as the config's and the mappings' do."""
    path = write_rule(tmp_path, "r.yml", "title: x\ndetection:\n  sel: [a, b\n")
    code, text = _run(lint, [tmp_path])
    assert code == 1
    assert (
        text.splitlines()[0]
        == f"ERROR {path}:4:1: not valid YAML: expected ',' or ']', but got '<stream end>'"
    )


def test_lint_fails_on_a_rule_that_cannot_run_and_lists_warnings(tmp_path):
    """A rule with a field provex has no value for would never fire: lint fails on it as
    `run` refuses it, unless told to skip it as `run --skip-unsupported-rules` would."""
    path = write_rule(tmp_path, "r.yml", SIMPLE.replace("TargetFilename:", "LogonId:"))
    write_rule(tmp_path, "w.yml", SIMPLE.replace("0001", "0009").replace("name: simple", "name: w")
               .replace("attack.t1611", "attack.stealth"))  # fmt: skip
    code, text = _run(lint, [tmp_path])
    assert code == 1
    assert (
        f"ERROR {path}:9: unknown field 'LogonId', which provex has no value for (nearest known field: "
        in text
    )
    assert "OK" not in text
    code, text = _run(lint, [tmp_path], skip_unsupported=True)
    assert code == 0
    assert f"SKIP {path}:9: unknown field 'LogonId'" in text
    assert "WARNING " in text and "'attack.stealth'" in text
    assert text.splitlines()[-1].startswith("OK 1 rules, 0 correlations in 2 files; 1 skipped")
    code, text = _run(lint, [tmp_path], strict=True, skip_unsupported=True)
    assert code == 1 and text.splitlines()[-1].startswith("FAIL (--strict) 1 rules")


def test_test_default_rules_all_pass():
    code, text = _run(cli.run_fixtures, [])
    assert code == 0
    assert text.splitlines()[-1].endswith(" passed, 0 failed")


def _user_rules(tmp_path, positive_path: str):
    write_rule(tmp_path, "simple.yml", SIMPLE)
    for kind, path in (("positive", positive_path), ("negative", "/etc/passwd")):
        folder = tmp_path / "fixtures" / "simple" / kind
        folder.mkdir(parents=True)
        (folder / "case.jsonl").write_bytes(encode_event(event(EventType.OPEN, path=path)) + b"\n")


def test_user_rules_with_fixtures_beside_them(tmp_path):
    _user_rules(tmp_path, "/etc/shadow")
    code, text = _run(cli.run_fixtures, [tmp_path / "simple.yml"])
    assert code == 0 and "2 passed, 0 failed" in text


def test_a_positive_that_does_not_fire_fails(tmp_path):
    _user_rules(tmp_path, "/etc/hostname")
    code, text = _run(cli.run_fixtures, [tmp_path / "simple.yml"])
    assert code == 1 and "FAIL simple.yml positive/case.jsonl: no alert" in text


def test_missing_fixtures_fail(tmp_path):
    write_rule(tmp_path, "simple.yml", SIMPLE)
    code, text = _run(cli.run_fixtures, [tmp_path / "simple.yml"])
    assert code == 1 and "no positive fixtures" in text


def test_survey_prints_json(tmp_path):
    write_rule(tmp_path, "simple.yml", SIMPLE)
    code, text = _run(survey, [tmp_path])
    assert code == 0 and json.loads(text)["evaluable"] == 1


def test_argparse_wiring():
    parser = argparse.ArgumentParser(prog="provex")
    add_rules_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rules", "lint"])
    assert args.func(args) == 0
    args = parser.parse_args(["rules", "test", "--fixtures", "/nonexistent", "x.yml"])
    assert args.fixtures == "/nonexistent" and args.paths == ["x.yml"]
