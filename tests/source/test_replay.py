import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from exporter.agent.losses import EXIT_LOST
from exporter.model import Event, EventType, encode_event
from exporter.source.replay import Progress, ReplayError, ReplaySource

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
    # The rest plays, and the run says what it lost: exit 3 and one summary line.
    assert result.returncode == EXIT_LOST
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
    (summary,) = [json.loads(line) for line in result.stderr.splitlines() if b'"lost"' in line]
    assert summary["msg"] == "replay lost 1 records (3 lines read): replay_line/corrupt 1"
    assert summary["level"] == "error" and summary["lost"] == {"replay_line/corrupt": 1}


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "replay", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == f"provex: replay file {tmp_path / 'nope.jsonl'}: no such file; expected a recording (JSON lines) or -\n".encode()
    )


def provex(*args: str, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, cwd=REPO, check=False, **kw
    )


def json_lines(stderr: bytes) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]  # every line is JSON


def test_a_file_that_is_no_recording_is_refused(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"".join(bytes([0x80 + n % 100, 0xFE, 0x01]) + b"\n" for n in range(71)))
    result = provex("replay", str(garbage))
    assert result.returncode == 2
    last = json_lines(result.stderr)[-1]
    assert last["level"] == "error"
    assert "no line is a provex event (71 of 71 lines skipped)" in last["msg"]
    # One warning per bad line up to a bound, not one per line of a large binary file.
    assert sum(b"skipped replay line" in line for line in result.stderr.splitlines()) == 20


def test_a_directory_is_a_clear_error(tmp_path):
    result = provex("replay", str(tmp_path))  # refused by the command line, before any work
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"is a directory" in result.stderr
    source = ReplaySource(tmp_path)  # and by the source itself, whoever calls it
    with pytest.raises(ReplayError, match="is a directory"):
        source.open()


def test_output_replaces_an_existing_file_and_is_private(tmp_path):
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(encode_event(sample(0)) + b"\n")
    out = tmp_path / "out.jsonl"
    out.write_text("left over from an earlier run\n" * 100)
    for _ in range(2):
        assert provex("replay", str(recording), "--output", str(out)).returncode == 0
    (line,) = out.read_bytes().splitlines()  # one run's output: nothing left over, nothing twice
    assert msgspec.json.decode(line, type=Event).id == sample(0).id
    fresh = tmp_path / "fresh.jsonl"
    assert provex("replay", str(recording), "--output", str(fresh)).returncode == 0
    assert fresh.stat().st_mode & 0o777 == 0o600


def test_output_into_a_missing_directory_is_a_clear_error(tmp_path):
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(encode_event(sample(0)) + b"\n")
    target = tmp_path / "no" / "such" / "dir" / "out.jsonl"
    for schema in ("raw", "ecs"):
        # The flag is checked by the command line; the config key (a file, --set) by the sink.
        for how in (["--output", str(target)], ["--set", f"output.file={target}"]):
            result = provex("replay", str(recording), "--schema", schema, *how)
            assert result.returncode == 2 and b"Traceback" not in result.stderr, result.stderr
            assert f"directory {target.parent} does not exist".encode() in result.stderr


@pytest.mark.parametrize("form", ["otlp-json", "json"])
def test_a_file_source_waits_instead_of_dropping(tmp_path, form):
    """Export queues far smaller than the file: the reader is held back, nothing is dropped."""
    n = 1500
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"".join(encode_event(sample(i)) + b"\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    result = provex(
        "replay", str(recording), "--schema", "ecs", "--format", form, "--output", str(out),
        "--set", "output.otlp.queue_size=8", "--set", "output.otlp.alert_queue_size=2",
        "--set", "output.otlp.batch_size=4", "--set", "correlate.default_rules=false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert b"dropped" not in result.stderr
    records = 0
    for line in out.read_bytes().splitlines():
        if form == "json":  # one ECS document a line
            records += json.loads(line)["ecs"]["version"] == "9.4.0"
            continue
        for rl in json.loads(line)["resourceLogs"]:
            records += sum(len(sl["logRecords"]) for sl in rl["scopeLogs"])
    assert records == n
    (finished,) = [d for d in json_lines(result.stderr) if d["msg"] == "replay finished"]
    assert finished["events"] == n and finished["skipped"] == 0


def test_progress_on_a_terminal_only(tmp_path):
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"".join(encode_event(sample(i)) + b"\n" for i in range(3000)))
    # Not a terminal (a pipe): no progress, only JSON lines.
    piped = provex("replay", str(recording), "--output", str(tmp_path / "a.jsonl"))
    assert piped.returncode == 0 and b"\r" not in piped.stderr
    json_lines(piped.stderr)
    # A terminal: the status line, kept out of the way of the log lines.
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "replay", str(recording), "--output", str(tmp_path / "b.jsonl")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal, cwd=REPO,
        )  # fmt: skip
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait() == 0
    finally:
        os.close(controller)
    assert b"replay: 3,000/3,000 events (100%)" in seen
    # Every log line still parses once the status line's control sequences are taken out.
    text = seen.replace(b"\r\n", b"\n").replace(b"\x1b[K", b"")
    for line in text.split(b"\n"):
        line = line.split(b"\r")[-1].strip()
        if line and not line.startswith(b"replay:"):
            json.loads(line)


def test_progress_text():
    shown: list[str] = []
    now = [0.0]
    progress = Progress(shown.append, total=10_000, interval_s=1.0, clock=lambda: now[0])
    now[0] = 2.0
    progress(5000)
    now[0] = 2.5
    progress(6000)  # within the interval: not shown
    now[0] = 4.0
    progress(10_000)
    assert shown == [
        "replay: 5,000/10,000 events (50%), 2,500 events/s",
        "replay: 10,000/10,000 events (100%), 2,500 events/s",
    ]
    assert Progress(shown.append, total=None).text(42, 2.0) == "replay: 42 events, 21 events/s"
