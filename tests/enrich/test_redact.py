"""Secrets in command lines are masked; everything else is kept as given."""

from __future__ import annotations

import pytest

from exporter.enrich.redact import redact_argv

CASES = [
    (["app", "--password=hunter2"], ["app", "--password=***"]),
    (["app", "--db-password=hunter2", "--user=bob"], ["app", "--db-password=***", "--user=bob"]),
    (["kubectl", "--token", "eyJhbGciOi", "get", "pods"], ["kubectl", "--token", "***", "get", "pods"]),
    (["env", "token=abc", "API_KEY=xyz", "PATH=/bin"], ["env", "token=***", "API_KEY=***", "PATH=/bin"]),
    (["env", "AWS_SECRET_ACCESS_KEY=abc"], ["env", "AWS_SECRET_ACCESS_KEY=***"]),
    (
        ["curl", "-H", "Authorization: Bearer abc.def", "https://x"],
        ["curl", "-H", "Authorization: ***", "https://x"],
    ),
    (["curl", "--header=Authorization: Basic dXNlcjpwdw=="], ["curl", "--header=Authorization: ***"]),
    (["curl", "-u", "admin:s3cret", "http://h"], ["curl", "-u", "admin:***", "http://h"]),
    (
        ["git", "clone", "https://bob:s3cret@git.example/r.git"],
        ["git", "clone", "https://bob:***@git.example/r.git"],
    ),
    (["psql", "postgres://app:pw@db:5432/x"], ["psql", "postgres://app:***@db:5432/x"]),
    (["mysql", "-uroot", "-phunter2", "db"], ["mysql", "-uroot", "-p***", "db"]),
    (["/usr/bin/mysqldump", "-psecret", "--all"], ["/usr/bin/mysqldump", "-p***", "--all"]),
    (["sshpass", "-p", "pw", "ssh", "h"], ["sshpass", "-p", "***", "ssh", "h"]),
    (["app", "--client-secret", "x", "--verbose"], ["app", "--client-secret", "***", "--verbose"]),
]
# Things that look close but are not secrets: left alone.
KEEP = [
    ["mysql", "-p", "db"],  # bare -p prompts; "db" is the database
    ["ssh", "-p", "2222", "host"],  # -p is a port outside mysql-like tools
    ["tar", "-pxf", "a.tar"],
    ["python3", "--tokenizer", "bpe"],
    ["app", "--bypass-cache", "now"],
    ["ls", "-la", "/etc/passwd"],
    ["echo", "user@host"],
    ["git", "clone", "git@github.example:o/r.git"],
]


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_redacts(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected
    # Idempotent: a replayed, already redacted argv is unchanged.
    assert redact_argv(expected) == expected


@pytest.mark.parametrize("argv", KEEP)
def test_keeps_non_secrets(argv: list[str]) -> None:
    assert redact_argv(argv) == argv


def test_empty_and_input_not_mutated() -> None:
    assert redact_argv([]) == []
    argv = ["app", "--password=x"]
    redact_argv(argv)
    assert argv == ["app", "--password=x"]
