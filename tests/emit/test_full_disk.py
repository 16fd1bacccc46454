"""A full disk never stops the agent and never leaves a partial line (real files on a tiny tmpfs)."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from bench.helpers.agent import Agent, assert_clean_exit
from bench.helpers.records import AGENT
from exporter.agent.losses import EXIT_LOST
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.emit.jsonlines import JsonLinesSink, LineWriter
from exporter.metrics import REGISTRY
from exporter.model import decode_event, encode_event
from exporter.scenarios.runc import ContainerSpec, Runc
from tests.emit.test_resilience import alert, event, metric, totals, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs file systems of our own (needs root); all unmounted at teardown."""
    if os.geteuid() != 0:
        if os.environ.get("PROVEX_REQUIRE_EBPF") == "1":
            pytest.fail("full-disk tests need root to mount a tmpfs")
        pytest.skip("full-disk tests need root to mount a tmpfs")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{len(mounted)}"
        where.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True
        )
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in mounted:
            if subprocess.run(["umount", str(where)], check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(where)], check=False)  # a file still open: detach


@pytest.fixture
def tiny_tmpfs(mount_tmpfs: Callable[[str], Path]) -> Path:
    return mount_tmpfs("64k")


def fill(where: Path, leave: int = 0) -> Path:
    """Fill the file system, leaving about `leave` bytes free."""
    filler = where / "filler"
    stat = os.statvfs(where)
    todo = max(stat.f_bavail * stat.f_frsize - leave, 0)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while todo > 0 or leave == 0:
            todo -= os.write(fd, b"\0" * min(max(todo, 512), 65536))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def whole_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"a partial line at the end of {path}: {data[-80:]!r}"
    return data.splitlines()


def test_full_disk_waits_retries_and_never_cuts_a_line(
    tiny_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provex.emit")
    filler = fill(tiny_tmpfs, leave=8192)
    now = [0.0]
    out = tiny_tmpfs / "events.jsonl"
    sink = JsonLinesSink(writer=LineWriter(str(out), retry_interval_s=1.0, clock=lambda: now[0]))
    written_before = metric("provex_exported_total", signal="events")
    for n in range(150):  # ~30 KB of events: far more than the space left
        sink.emit_event(event(n))
        sink.batch_done()
    lines = whole_lines(out)
    assert 0 < len(lines) < 150
    assert [decode_event(line).id for line in lines] == [f"ev-{n}" for n in range(len(lines))]
    assert sink.writer.error is not None and sink.writer.error.errno == errno.ENOSPC
    failures = [r for r in caplog.records if r.getMessage().startswith("output write failed")]
    assert len(failures) == 1  # said once, not per line

    filler.unlink()  # space comes back
    sink.batch_done()  # within the retry interval: not tried yet
    assert len(whole_lines(out)) == len(lines)
    now[0] += 1.0
    sink.batch_done()
    assert [decode_event(line).id for line in whole_lines(out)] == [f"ev-{n}" for n in range(150)]
    assert any(r.getMessage() == "output writable again" for r in caplog.records)
    assert metric("provex_exported_total", signal="events") - written_before == 150
    sink.close()


def test_what_cannot_wait_is_counted_events_first(tiny_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="provex.emit")
    fill(tiny_tmpfs)  # no space at all
    out = tiny_tmpfs / "out.jsonl"
    alert_bytes = len(msgspec.json.encode({"alert": alert(0)})) + 1
    writer = LineWriter(str(out), keep_bytes=4 * alert_bytes + 1000, warn_interval_s=3600.0)
    sink = JsonLinesSink(writer=writer)
    dropped = {
        s: metric("provex_export_dropped_total", signal=s, cause="no_space") for s in ("events", "alerts")
    }
    for n in range(60):
        sink.emit_event(event(n))
        if n % 20 == 0:
            sink.emit_alert(alert(n))  # never raises, even though nothing can be written
    sink.batch_done()
    lost = {
        s: metric("provex_export_dropped_total", signal=s, cause="no_space") - dropped[s]
        for s in ("events", "alerts")
    }
    waiting = list(writer._pending)
    assert lost["events"] > 0 and lost["alerts"] == 0  # events give way before alerts
    assert sum(1 for line in waiting if line.signal == "alerts") == 3
    assert lost["events"] + sum(1 for line in waiting if line.signal == "events") == 60
    assert out.read_bytes() == b""
    # One warning in the interval (the first loss), whatever the number of lines.
    (warning,) = [r for r in caplog.records if r.getMessage() == "output lines not written"]
    assert warning.fields["error"] == os.strerror(errno.ENOSPC)  # type: ignore[attr-defined]
    # At close, what still waits is lost too, and said so, alerts by name.
    sink.close()
    assert metric("provex_export_dropped_total", signal="alerts", cause="no_space") - dropped["alerts"] == 3
    assert metric("provex_export_dropped_total", signal="events", cause="no_space") - dropped["events"] == 60
    warnings = [r for r in caplog.records if r.getMessage() == "output lines not written"]
    assert len(warnings) == 2
    said: dict[str, int] = {}
    for w in warnings:
        for key, n in w.fields["not_written"].items():  # type: ignore[attr-defined]
            said[key] = said.get(key, 0) + n
    assert said == {"events/no_space": 60, "alerts/no_space": 3}  # every loss is in a warning
    assert warnings[-1].fields["alerts_not_written"] == [  # type: ignore[attr-defined]
        f"{alert(n).rule_id}:alert-{n}" for n in (0, 20, 40)
    ]


def _records_in(path: Path) -> int:
    count = 0
    for line in whole_lines(path):
        for rl in json.loads(line)["resourceLogs"]:
            count += sum(len(sl["logRecords"]) for sl in rl["scopeLogs"])
    return count


def test_otlp_json_batches_on_a_full_disk(tiny_tmpfs: Path) -> None:
    """--schema ecs --output FILE: a batch that does not fit is taken back whole, retried, then counted."""
    # ~8 KiB free, batches of 5 ECS records (~12.5 KiB a line): a write stops inside the line.
    filler = fill(tiny_tmpfs, leave=8192)
    out = tiny_tmpfs / "out.otlp.jsonl"
    otlp = OtlpConfig(max_attempts=2, backoff_max_s=0.01, batch_size=5, batch_delay_ms=5, alert_queue_size=50)
    before = {
        "exported": metric("provex_exported_total", signal="events"),
        "no_space": metric("provex_export_dropped_total", signal="events", cause="no_space"),
    }
    sink = build_sink(OutputConfig(schema="ecs", format="otlp-json", file=str(out), otlp=otlp), **AGENT)
    for n in range(100):
        sink.emit_event(event(n))

    def counted() -> tuple[float, float]:
        return (
            metric("provex_exported_total", signal="events") - before["exported"],
            metric("provex_export_dropped_total", signal="events", cause="no_space") - before["no_space"],
        )

    wait_until(lambda: sum(counted()) == 100)  # every record ends up counted, one way or the other
    exported, no_space = counted()
    assert no_space > 0  # (how many depends on how the queue cut its batches)
    assert exported + no_space == 100
    assert _records_in(out) == exported  # whatever is in the file is whole
    assert metric("provex_export_attempt_failures_total", signal="events", cause="no_space") > 0

    filler.unlink()  # the disk has room again (at least 56 KiB): the next batches go out
    for n in range(100, 110):
        sink.emit_event(event(n))
    wait_until(lambda: counted()[0] == exported + 10)
    sink.close()
    assert _records_in(out) == exported + 10


def test_replay_onto_a_full_disk_exits_with_the_loss_said(tiny_tmpfs: Path, tmp_path: Path) -> None:
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"".join(encode_event(event(n)) + b"\n" for n in range(2000)))  # ~300 KB
    for schema, form in (("raw", "json"), ("ecs", "json"), ("ecs", "otlp-json")):
        out = tiny_tmpfs / f"out.{schema}.{form}"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "exporter",
                "replay",
                str(recording),
                "--schema",
                schema,
                "--format",
                form,
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        assert result.returncode == EXIT_LOST, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        logs = [json.loads(line) for line in result.stderr.splitlines()]  # JSON lines only
        (summary,) = [d for d in logs if "lost" in d and d["level"] == "error"]
        assert summary["msg"].startswith("replay lost ") and "events/no_space" in summary["msg"]
        written = _records_in(out) if form == "otlp-json" else len(whole_lines(out))
        assert written + summary["lost"]["events/no_space"] == 2000
        out.unlink()


@pytest.mark.ebpf
@pytest.mark.containers
@pytest.mark.slow
def test_live_agent_on_a_full_disk_keeps_detecting(
    mount_tmpfs: Callable[[str], Path], tmp_path: Path
) -> None:
    """`provex run --output FILE` on a full tmpfs: no death, the alert is counted and waits, and it
    is written once there is room. (1 MiB rather than 64 KiB: on a shared host the agent also
    alerts on other sessions' containers, which must not fill the room this test frees.)"""
    disk = mount_tmpfs("1m")
    out = disk / "alerts.jsonl"
    filler = fill(disk)
    agent = Agent(tmp_path, "--set", "output.raw_events=false", command="run", output=out)
    runc = Runc(tmp_path / "runc")
    unshare = ["sysprobe", "unshare", str(0x10000000)]
    rule = "User Or Mount Namespace Created From A Container"
    try:

        def alerts_raised() -> float:
            return sum(v for k, v in agent.metrics().items() if k.startswith("provex_alerts_total"))

        def written() -> list[dict]:
            return [msgspec.json.decode(line)["alert"] for line in whole_lines(out)] if out.exists() else []

        def mine(cid: str) -> list[dict]:
            return [
                a for a in written() if a["rule_title"] == rule and cid in json.dumps(a["event"]["container"])
            ]

        before = alerts_raised()
        first = runc.run(ContainerSpec(unshare, name="full-disk-1", privileged=True))
        assert first.returncode == 0, first.stderr
        wait_until(lambda: alerts_raised() > before)  # detection goes on with nowhere to write
        assert agent.process.poll() is None
        assert mine(first.spec.container_id) == []
        filler.unlink()  # room again: the waiting alert is written on the next retry
        wait_until(lambda: len(mine(first.spec.container_id)) == 1)
        second = runc.run(ContainerSpec(unshare, name="full-disk-2", privileged=True))
        assert second.returncode == 0, second.stderr
        wait_until(lambda: len(mine(second.spec.container_id)) == 1)
        stderr = agent.stderr_path.read_text()
        assert "output write failed" in stderr and "output writable again" in stderr
    finally:
        code = agent.stop()
        runc.close()
    assert_clean_exit(code, agent.stderr_path)  # the alert waited and was written: no output loss


def _dropped(signal: str) -> float:
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "provex_export_dropped"
        for s in m.samples
        if s.name.endswith("_total") and s.labels["signal"] == signal
    )


def test_alerts_raised_after_a_full_disk_recovers_all_arrive(mount_tmpfs: Callable[[str], Path]) -> None:
    """Events held through the outage must not fill the disk again when it recovers: alerts
    keep a reserve (1/16 of this 1 MiB file system) that event lines are not written into."""
    disk = mount_tmpfs("1m")
    filler = fill(disk)
    now = [0.0]
    out = disk / "out.jsonl"
    sink = JsonLinesSink(writer=LineWriter(str(out), clock=lambda: now[0]))  # the default bounds
    before = {s: _dropped(s) for s in ("events", "alerts")}
    for n in range(12_000):  # ~1.3 MB of events while nothing can be written: they wait
        sink.emit_event(event(n))
        if n % 1000 == 0:
            sink.emit_alert(alert(n))
            sink.batch_done()
    filler.unlink()  # the disk has room again, less than the events that wait
    raised_after = []
    for n in range(12_000, 14_000):  # the node goes on: events, and now and then an alert
        sink.emit_event(event(n))
        if n % 100 == 0:
            raised_after.append(alert(n).id)
            sink.emit_alert(alert(n))
            now[0] += 1.0  # a retry is due
        sink.batch_done()
    sink.close()
    lines = [msgspec.json.decode(line) for line in whole_lines(out)]
    alerts = {line["alert"]["id"] for line in lines if "alert" in line}
    assert alerts == {alert(n).id for n in range(0, 12_000, 1000)} | set(raised_after)
    assert _dropped("alerts") == before["alerts"]
    events = sum("alert" not in line for line in lines)
    lost = metric("provex_export_dropped_total", signal="events", cause="no_space")
    assert 0 < events < 14_000 and _dropped("events") - before["events"] == 14_000 - events
    assert lost > 0


def test_otlp_json_alerts_are_held_through_a_full_disk_and_keep_their_reserve(
    mount_tmpfs: Callable[[str], Path],
) -> None:
    """--schema ecs --output FILE: alerts wait in their own queue while the disk is full (events
    are retried, then dropped), and after recovery event batches stop short of the reserve."""
    disk = mount_tmpfs("4m")  # reserve: 256 KiB
    filler = fill(disk)
    out = disk / "out.otlp.jsonl"
    otlp = OtlpConfig(max_attempts=2, backoff_max_s=0.05, batch_size=20, batch_delay_ms=5)
    before = {s: totals(s) for s in ("events", "alerts")}
    sink = build_sink(OutputConfig(schema="ecs", format="otlp-json", file=str(out), otlp=otlp), **AGENT)
    for n in range(200):
        sink.emit_event(event(n))
        if n % 50 == 0:
            sink.emit_alert(alert(n))
    wait_until(lambda: totals("events")[1] - before["events"][1] == 200)  # retried, then dropped
    assert metric("provex_export_retrying", signal="alerts") > 0  # held, not dropped
    filler.unlink()
    sent = 200
    for n in range(200, 3200):  # ~7 MB of ECS events: more than the disk holds
        sink.emit_event(event(n))
        sent += 1
        if n % 300 == 0:
            sink.emit_alert(alert(n))
    raised = {alert(n).id for n in range(3200) if (n < 200 and n % 50 == 0) or (n >= 200 and n % 300 == 0)}
    wait_until(lambda: sum(totals("events")) - sum(before["events"]) == sent, timeout_s=60)
    sink.close()
    written: dict[str, list[dict]] = {"provex.alerts": [], "provex.events": []}
    for line in whole_lines(out):
        for rl in json.loads(line)["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                written[sl["scope"]["name"]] += sl["logRecords"]
    ids = {
        next(
            kv["value"]["stringValue"] for kv in event["value"]["kvlistValue"]["values"] if kv["key"] == "id"
        )
        for record in written["provex.alerts"]
        for event in record["body"]["kvlistValue"]["values"]
        if event["key"] == "event"
    }
    assert ids == raised
    assert totals("alerts") == (before["alerts"][0] + len(raised), before["alerts"][1])  # none dropped
    assert metric("provex_export_dropped_total", signal="events", cause="no_space") > 0
    assert 0 < len(written["provex.events"]) == totals("events")[0] - before["events"][0]
