"""An alert's story: built from the provenance graph when the alert goes out (Alert.story, the
same from the native core and the Python reference), exported by `provex story` as networkx
node-link JSON and GraphML, from an alerts file or by replaying a recording."""

from __future__ import annotations

import io
import json

import msgspec
import networkx as nx
import pytest
from networkx.readwrite import json_graph

from exporter.cli.main import main
from exporter.config.schema import CorrelateConfig
from exporter.correlate import DEFAULT_RULES_DIR, load_rules
from exporter.correlate.engine import Correlator
from exporter.correlate.story import build_story, graphml, node_link_json, story_graph
from exporter.model import EventType
from exporter.resources import sample_recording
from exporter.source.replay import ReplaySource

from .helpers import container, download_then_run, event

RULES = load_rules([DEFAULT_RULES_DIR])


def _replayed(engine: str) -> list:
    correlator = Correlator(RULES, CorrelateConfig(engine=engine))
    return [a for e in ReplaySource(sample_recording()) for a in correlator.process(e)] + correlator.drain()


@pytest.fixture(scope="module")
def token_alert():
    (alert,) = _replayed("native")
    return alert


def test_every_alert_goes_out_with_its_story_the_same_from_both_engines():
    native, python = _replayed("native"), _replayed("python")
    assert native and all(a.story is not None and a.story.nodes for a in native)
    assert msgspec.json.encode(native) == msgspec.json.encode(python)


def test_the_token_chain_story_names_the_reader_the_token_and_the_api_server(token_alert):
    story = story_graph(token_alert.story)
    reader, caller = (("proc", e.pid) for e in token_alert.evidence)
    token, endpoint = (
        ("file", token_alert.evidence[0].path),
        ("endpoint", token_alert.evidence[1].destination),
    )
    assert story.has_edge(reader, token) and story.has_edge(caller, endpoint)
    kinds = {d["kind"] for _, _, d in story.edges(data=True)}
    # (the connect is a step of its process already: its evidence names the same edge)
    assert {"sa_token_read", "connected", "forked", "contains", "executed"} <= kinds
    # the reader and the caller are kin: one of them forked the other, or both one ancestor
    assert nx.has_path(story.to_undirected(), reader, caller)
    assert story.nodes[caller]["exe"].startswith("/")


def test_a_story_is_the_graphs_own_and_networkx_reads_both_exports_back():
    from exporter.correlate.graph import ProvenanceGraph

    g = ProvenanceGraph(600, 10_000, 10_000)
    story = build_story(g, download_then_run(g))
    data = json.loads(node_link_json(story))
    try:
        back = json_graph.node_link_graph(data, edges="links")  # networkx >= 3.4
    except TypeError:
        back = json_graph.node_link_graph(data)  # 3.2, 3.3: "links" is the only name
    assert back.number_of_nodes() == len(story.nodes) and back.number_of_edges() == len(story.edges)
    assert back.nodes["proc:11"]["exe"] == "/usr/bin/wget"
    xml = nx.read_graphml(io.BytesIO(graphml(story).encode()))
    assert sorted(xml.nodes) == sorted(back.nodes)
    assert xml.number_of_edges() == back.number_of_edges()
    assert {d["kind"] for _, _, d in xml.edges(data=True)} >= {"connected", "wrote", "executed", "forked"}


def test_follow_ups_are_told_when_their_window_closes():
    # The same read twice in the de-duplication window: one alert at once, one follow-up
    # when the window closes, each with its own story.
    rule_alerts = []
    correlator = Correlator(RULES, CorrelateConfig(dedup_window_s=1))
    c = container("c9", mounts=[("/", "/host")])
    for t in (0, 0.5, 3):
        e = event(EventType.OPEN, t=t, pid=40, path="/host/etc/shadow", ret=3, container=c)
        rule_alerts += correlator.process(e)
    rule_alerts += correlator.drain()
    first, followup = [a for a in rule_alerts if a.rule_title.startswith("Host-Sensitive")][:2]
    assert followup.followup_of == first.id and followup.suppressed == 1
    assert first.story is not None and followup.story is not None
    assert {n.kind for n in followup.story.nodes} >= {"proc", "file", "container"}


def _story(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["story", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_provex_story_reads_an_alerts_file_or_replays_a_recording(capsys, tmp_path, token_alert):
    alerts_file = tmp_path / "alerts.jsonl"
    alerts_file.write_bytes(msgspec.json.encode({"alert": token_alert}) + b"\n")
    code, from_alerts, _ = _story(capsys, token_alert.id, "--from", str(alerts_file))
    assert code == 0
    code, from_recording, _ = _story(capsys, token_alert.id[:10])  # the bundled recording, replayed
    assert code == 0 and from_recording == from_alerts
    assert json.loads(from_alerts)["nodes"][0]["kind"] == "proc"
    code, xml, _ = _story(capsys, token_alert.id, "--format", "graphml")
    assert code == 0 and nx.read_graphml(io.BytesIO(xml.encode())).number_of_nodes() == len(
        token_alert.story.nodes
    )
    out = tmp_path / "story.graphml"
    assert main(["story", token_alert.id, "--format", "graphml", "-o", str(out)]) == 0
    assert out.read_text() == xml


def test_provex_story_says_what_it_found_when_the_alert_is_not_there(capsys, tmp_path):
    code, out, err = _story(capsys, "0123456789abcdef")
    assert code == 2 and not out
    assert "no alert '0123456789abcdef'" in err and "1 alert(s)" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"alert": {"nope": 1}}\n')
    code, _, err = _story(capsys, "abc", "--from", str(bad))
    assert code == 2 and "2 line(s) were not JSON alerts or events" in err
    code, _, err = _story(capsys, "abc", "--from", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err


# A child that runs `provex replay` with networkx unimportable (any attempt is recorded and
# refused), then exports one alert's story with it: the per-event path never touches it.
_NO_NETWORKX = """
import importlib.abc, json, sys

attempts = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "networkx" or name.startswith("networkx."):
            attempts.append(name)
            raise ImportError(f"{name} is blocked on the per-event path")
        return None

sys.meta_path.insert(0, Refuse())
from exporter.cli.main import main

recording, output, engine = sys.argv[1:]
code = main(["replay", recording, "--schema", "raw", "--output", output,
             "--set", f"correlate.engine={engine}"])
alerts = [json.loads(line)["alert"] for line in open(output) if line.startswith('{"alert"')]
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "networkx")
sys.meta_path.pop(0)
story = main(["story", alerts[0]["id"], "--from", output, "-o", output + ".json"]) if alerts else None
print(json.dumps({"code": code, "alerts": len(alerts), "with_story": sum("story" in a for a in alerts),
                  "attempts": attempts, "loaded": loaded, "story": story,
                  "networkx_after": "networkx" in sys.modules}))
"""


@pytest.mark.parametrize("engine", ["native", "python"])
def test_the_soak_stream_runs_without_networkx_until_a_story_is_exported(tmp_path, engine):
    import subprocess
    import sys

    from bench.helpers.streams import soak_events
    from exporter.model import encode_event

    recording = tmp_path / "soak.jsonl"
    with recording.open("wb") as f:
        for context in (False, True):
            for e in soak_events(6000, context=context):
                f.write(encode_event(e) + b"\n")
    run = subprocess.run(
        [sys.executable, "-c", _NO_NETWORKX, str(recording), str(tmp_path / "out.jsonl"), engine],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["code"] == 0, run.stderr[-3000:]
    assert result["alerts"] > 3 and result["with_story"] == result["alerts"]
    assert result["attempts"] == [] and result["loaded"] == []
    assert result["story"] == 0 and result["networkx_after"]
    assert json.loads((tmp_path / "out.jsonl.json").read_text())["nodes"]
