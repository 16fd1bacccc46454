"""The native core on hostile input: a short, seeded round of the fuzz target
(tests/correlate/fuzz_native.py, atheris) in which every stream must give the reference's
alerts and annotations, and records whose integers and texts no kernel would send."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from exporter.config.schema import CorrelateConfig
from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.correlate.engine import Correlator
from exporter.model import ContainerInfo, Event, EventType, FileRef, HostMount
from exporter.resources import sample_recording
from exporter.source.replay import ReplaySource

TARGET = Path(__file__).with_name("fuzz_native.py")
RULES = load_rules([DEFAULT_RULES_DIR])


def test_a_seeded_fuzz_round_finds_no_difference_and_no_crash(tmp_path):
    run = subprocess.run(
        [sys.executable, str(TARGET), "-runs=1500", "-seed=7", "-max_len=2048", "-len_control=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done 1500 runs" in run.stderr
    assert not list(tmp_path.glob("crash-*"))


EXTREMES = [2**64 - 1, 2**63, 2**63 - 1, -(2**63), -1, 0]


@pytest.mark.parametrize("value", EXTREMES)
def test_integers_past_every_bound_are_read_not_raised(value):
    # msgspec reads integers up to 2**64 - 1 from a recording; a Python caller can pass more.
    def events():
        c = ContainerInfo(id="c1")
        return [
            Event(id=f"e{i}", type=t, syscall=s, ts_ns=1 + i, pid=10, tid=10, ret=value, flags=value,
                  dirfd=value, fd=value, nstype=value, family=value, dport=value, resolve=value,
                  path="/proc/self/fd/3/x", daddr="10.0.0.1", container=c,
                  file=FileRef(dev=value, ino=value, mode=value), stdin=FileRef(dev=1, ino=1, mode=value))
            for i, (t, s) in enumerate([(EventType.OPEN, "openat2"), (EventType.EXEC, "execveat"),
                                        (EventType.CONNECT, "connect"), (EventType.DUP, "dup3"),
                                        (EventType.UNSHARE, "unshare"), (EventType.LINK, "linkat")])
        ]  # fmt: skip

    outputs = []
    for engine in ("python", "native"):
        correlator = Correlator(RULES, CorrelateConfig(engine=engine))
        batch = events()
        alerts = [a for e in batch for a in correlator.process(e)] + correlator.drain()
        outputs.append(msgspec.json.encode([alerts, batch]))
    assert outputs[0] == outputs[1]


def test_a_time_past_int64_is_judged_and_told_as_recorded():
    # A time after the year 2262 (msgspec reads it from a recording): the window's arithmetic
    # saturates at int64, but the alert's times and its story's are the record's own.
    late = 2**64 - 5
    alerts = []
    for engine in ("python", "native"):
        correlator = Correlator(RULES, CorrelateConfig(engine=engine))
        e = Event(id="m", type=EventType.EXEC, syscall="execveat", ts_ns=late, pid=3, tid=3,
                  exe_name="memfd:x", container=ContainerInfo(id="c1"))  # fmt: skip
        alerts.append(correlator.process(e) + correlator.drain())
    (ref,), (nat,) = alerts
    assert nat.decisive_ts_ns == ref.decisive_ts_ns == late
    assert msgspec.json.encode(nat) == msgspec.json.encode(ref)


def test_a_stream_past_int64_gives_both_engines_the_same_alerts_and_stories():
    # The bundled recording (a service-account token read, then a call to the API server)
    # moved past 2**63 ns: the core saturates these times for its window arithmetic, but every
    # time it tells (decisive_ts_ns, evidence, a story's edges, exits, its horizon) must be the
    # record's own, as the reference tells it.
    recorded = list(ReplaySource(sample_recording()))
    shift = 2**63 + 7 - min(e.ts_ns for e in recorded)

    told = []
    for engine in ("python", "native"):
        correlator = Correlator(RULES, CorrelateConfig(engine=engine))
        late = [msgspec.structs.replace(e, ts_ns=e.ts_ns + shift) for e in recorded]
        alerts = [a for e in late for a in correlator.process(e)] + correlator.drain()
        stories = [correlator.graph.story(a.evidence) for a in alerts]
        told.append((alerts, [sorted(s.edges(keys=True, data=True)) for s in stories]))
    (ref, ref_stories), (nat, nat_stories) = told
    assert ref, "the recording raised no alert: the stream no longer tests anything"
    assert msgspec.json.encode(nat) == msgspec.json.encode(ref)
    assert nat_stories == ref_stories
    assert all(a.decisive_ts_ns > 2**63 for a in nat)
    times = {edge[3]["ts"] for story in ref_stories for edge in story} - {0}
    assert times and all(t > 2**63 for t in times)


@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_follow_up_past_int64_is_told_at_the_end_of_the_stream(engine):
    # A sensitive read twice within the de-duplication window, after 2**63 ns: the second is
    # folded, and its follow-up must come out when the stream ends, as it does for any time.
    c = ContainerInfo(id="c9", host_mounts=[HostMount(host_path="/", container_path="/host")])
    correlator = Correlator(RULES, CorrelateConfig(engine=engine))
    alerts = []
    for i, t in enumerate((2**63 + 5, 2**63 + 10)):
        e = Event(id=f"r{i}", type=EventType.OPEN, syscall="openat", ts_ns=t, pid=40, tid=40,
                  path="/host/etc/shadow", ret=3, container=c)  # fmt: skip
        alerts += correlator.process(e)
    first = [a for a in alerts if a.rule_title.startswith("Host-Sensitive")]
    followups = [a for a in correlator.drain() if a.followup_of]
    assert len(first) == 1 and [a.followup_of for a in followups] == [first[0].id]
    assert followups[0].suppressed == 1 and followups[0].decisive_ts_ns == 2**63 + 10
