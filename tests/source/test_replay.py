import subprocess
import sys
from pathlib import Path

import msgspec

from exporter.model import Event, EventType, encode_event
from exporter.source.replay import ReplaySource

REPO = Path(__file__).resolve().parents[2]


def sample(i: int) -> Event:
    return Event(
        id=f"{i:x}-1-3",
        type=EventType.OPEN,
        syscall="openat",
        ts_ns=1_700_000_000_000_000_000 + i,
        pid=10 + i,
        tid=10 + i,
        comm="cat",
        cgroup_id=42,
        path=f"/etc/file{i}",
        ret=3,
    )


def test_roundtrip_is_byte_identical():
    event = sample(1)
    line = encode_event(event)
    assert msgspec.json.decode(line, type=Event) == event
    assert encode_event(msgspec.json.decode(line, type=Event)) == line


def test_corrupt_lines_are_reported_counted_and_skipped(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    lines = [
        encode_event(sample(0)),
        b'{"id": "x", "type": "open", "syscall": "openat", "ts_ns": "soon", "pid": 1, "tid": 1}',  # wrong type
        b"{not json",  # corrupt
        b'{"id": "y", "type": "teleport", "syscall": "x", "ts_ns": 1, "pid": 1, "tid": 1}',  # unknown enum
        encode_event(sample(1)),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = ReplaySource(path)
    events = list(source)
    assert [e.id for e in events] == [sample(0).id, sample(1).id]
    assert [number for number, _ in source.skipped] == [2, 3, 4]
    assert "ts_ns" in source.skipped[0][1]
    assert "teleport" in source.skipped[2][1] or "enum" in source.skipped[2][1]


def test_replay_cli_keeps_going_after_a_bad_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(encode_event(sample(0)) + b"\n{broken\n" + encode_event(sample(1)) + b"\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "replay", str(path)], capture_output=True, cwd=REPO, check=False
    )
    assert result.returncode == 0
    # Each event comes back as it was, plus what the provenance graph resolved.
    out = [msgspec.json.decode(line, type=Event) for line in result.stdout.splitlines()]
    assert [(e.resolved_path, e.resolution) for e in out] == [
        (f"/etc/file{i}", "root_assumed") for i in (0, 1)
    ]
    assert [msgspec.structs.replace(e, resolved_path="", resolution="") for e in out] == [
        sample(0),
        sample(1),
    ]
    assert b'"line": 2' in result.stderr and b"skipped replay line" in result.stderr


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "replay", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert b"cannot open replay file" in result.stderr
