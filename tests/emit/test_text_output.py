"""Output for a person: `--format text` (the default on a terminal), one line per alert with
its story under it, colour on a terminal only and never with NO_COLOR; and in every
stream output (text, JSON lines) each event comes before the alert it caused."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from bench.helpers.records import records
from exporter.emit.jsonlines import LineWriter
from exporter.emit.text import TextSink
from tests.test_newcomer import provex

REPO = Path(__file__).resolve().parents[2]
CHAIN = "Service-Account Token Read Then Used Against The API Server"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROVEX_", "NO_COLOR"))}
    return {**base, **extra}


def on_a_terminal(*args: str, **extra: str) -> str:
    """What `provex ARGS` prints with its stdout on a terminal (a pseudo-terminal)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env(**extra),
    )
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert process.wait(30) == 0
    return out.decode().replace("\r\n", "\n")


def test_json_lines_put_each_event_before_the_alert_it_caused() -> None:
    result = provex("replay")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (at,) = [n for n, line in enumerate(lines) if "alert" in line]
    alert = lines[at]["alert"]
    before = {line["id"] for line in lines[:at]}
    assert {ref["id"] for ref in alert["evidence"]} <= before
    assert lines[at - 1]["id"] == alert["event"]["id"]  # right after the event that completed it


def test_text_is_one_line_per_alert_and_its_story_under_it() -> None:
    result = provex("replay", "--format", "text")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 411 + 1 + 2  # every event, the alert, its two evidence events
    assert not ANSI.search(result.stdout)  # not a terminal: no colour
    (at,) = [n for n, line in enumerate(lines) if " ALERT " in line]
    alert, story = lines[at], lines[at + 1 : at + 3]
    assert re.fullmatch(
        STAMP + r"  ALERT  high      " + re.escape(CHAIN) + r" \[T1528,T1552\.007\]"
        r"  scenarios/cat-then-wget-0/token-exfiltration  wget\[22090\]  -> 127\.0\.0\.1:\d+ \(API server\)",
        alert,
    ), alert
    assert re.fullmatch(
        r"    "
        + STAMP
        + r"  open    pid \d+  /var/run/secrets/kubernetes\.io/serviceaccount/token  \[sa_token_read\]",
        story[0],
    ), story[0]
    assert re.fullmatch(
        r"    " + STAMP + r"  connect pid 22090  -> 127\.0\.0\.1:\d+  \[apiserver_connect\]", story[1]
    )
    # The event that completed the chain is the line before the alert.
    assert re.fullmatch(
        STAMP + r"  connect  scenarios/cat-then-wget-0/\S+  wget\[22090\]  -> .*", lines[at - 1]
    )


def test_a_terminal_gets_text_in_colour_unless_no_color() -> None:
    coloured = on_a_terminal("replay", "--alerts-only")
    assert ANSI.search(coloured) and CHAIN in ANSI.sub("", coloured)
    assert "\x1b[31mhigh" in coloured  # the level in its colour
    plain = on_a_terminal("replay", "--alerts-only", NO_COLOR="1")
    assert not ANSI.search(plain) and " ALERT  high " in plain
    assert ANSI.sub("", coloured) == plain
    # Piped, the same command writes JSON lines (format auto).
    assert json.loads(provex("replay", "--alerts-only").stdout)["alert"]["rule_title"] == CHAIN
    # And --format json wins on a terminal.
    assert json.loads(on_a_terminal("replay", "--alerts-only", "--format", "json"))["alert"]


@pytest.mark.parametrize("name", sorted(records()))
def test_every_record_kind_reads_as_text(tmp_path: Path, name: str) -> None:
    record = records()[name]
    sink = TextSink(writer=LineWriter(str(tmp_path / "out.txt")), colour=False)
    if hasattr(record, "rule_id"):
        sink.emit_alert(record)  # type: ignore[arg-type]
    else:
        sink.emit_event(record)  # type: ignore[arg-type]
    sink.close()
    first, *story = (tmp_path / "out.txt").read_text().splitlines()
    assert re.match(STAMP + "  ", first), first
    columns = re.split(r"\s{2,}", first)
    assert len(columns) >= 4, first  # time, what, where, who (and, mostly, the object)
    if hasattr(record, "rule_id"):
        assert len(story) == len(record.evidence)  # type: ignore[union-attr]
        assert all(line.startswith("    ") for line in story)


def test_text_is_refused_for_documents() -> None:
    result = provex("replay", "--schema", "ecs", "--format", "text")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "provex: --format text shows events and alerts as provex sees them, but --schema is ecs;"
        " for ecs documents use --format json (one per line) or otlp-json"
    )
