"""`provex rules export`: field homes, expected outputs, EQL parsing and refusals."""

from __future__ import annotations

import textwrap
from pathlib import Path

import eql
import pytest

from bench.helpers.records import AGENT, records
from exporter.correlate.loader import DEFAULT_RULES_DIR, Rule, load_rules
from exporter.mapping import Mapper
from exporter.model import Event
from exporter.siem import TARGET_NAMES
from exporter.siem.export import TARGETS, export, render, run
from exporter.siem.homes import (
    ARRAY_FIELDS,
    EXISTS,
    HOMES,
    LOGSOURCES,
    SCALAR_LOGSOURCES,
    SUCCESS,
    Home,
    NoHome,
    home_of,
)
from exporter.taxonomy.fields import FIELDS, EventView, categories_of, succeeded
from tests.siem import eqlrun
from tests.siem.emitted import REPO, flatten, golden_values, mapped_fields

EXPECTED = REPO / "siem" / "rules"
FILES = {
    "elasticsearch-eql": "elasticsearch-eql.eql",
    "esql": "esql.esql",
    "splunk": "splunk.spl",
    "loki": "loki.yaml",
}


def _homes(schema: str) -> list[Home]:
    out = []
    for entry in HOMES[schema].values():
        entries = entry.values() if isinstance(entry, dict) else [entry]
        out += [e for e in entries if isinstance(e, Home)]
    return out


def test_every_taxonomy_field_has_a_home_or_a_reason() -> None:
    for schema, homes in HOMES.items():
        assert set(homes) == set(FIELDS), schema


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_homes_and_logsource_fields_are_fields_the_mapping_writes(schema: str) -> None:
    fields = [h.field for h in _homes(schema)]
    fields += [f for conds in LOGSOURCES[schema].values() if isinstance(conds, dict) for f in conds]
    fields += list(SUCCESS[schema])
    if schema == "ecs":
        fields += [f for conds in SCALAR_LOGSOURCES.values() if isinstance(conds, dict) for f in conds]
    missing = sorted({f for f in fields if f not in mapped_fields(schema)})
    assert not missing, f"not written by mappings/{schema}.yaml: {missing}"


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_array_fields_are_the_arrays_of_the_golden_documents(schema: str) -> None:
    """Homes and logsource fields that are arrays in documents are exactly the ones listed."""
    arrays = {f for f, v in golden_values(schema).items() if any(isinstance(x, list) for x in v)}
    used = {h.field for h in _homes(schema)}
    used |= {f for conds in LOGSOURCES[schema].values() if isinstance(conds, dict) for f in conds}
    assert arrays & used == set(ARRAY_FIELDS[schema])


def test_targets_match_the_cli_choices() -> None:
    assert set(TARGETS) == set(TARGET_NAMES)


@pytest.mark.parametrize("target", sorted(FILES))
def test_output_equals_the_hand_verified_file(target: str) -> None:
    """siem/rules/* were read and checked by hand; regenerate with `provex rules export -o`."""
    assert render(target, export(target)) == (EXPECTED / FILES[target]).read_text()


def _parse_eql(query: str) -> eql.ast.PipedQuery:
    with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
        return eql.parse_query(query)


def test_every_eql_query_parses(tmp_path: Path) -> None:
    results = [r for r in export("elasticsearch-eql") if r.query is not None]
    results += export("elasticsearch-eql", [eqlrun.token_chain_without_lineage(tmp_path)])
    assert {r.name for r in results} >= {"sa_token_exfiltration", "container_setns", "lateral_relay"}
    for r in results:
        assert r.queries
        for query in r.queries:
            _parse_eql(query)


def _join_keys(query: str) -> list[list[str]]:
    """Each step's join fields (shared `sequence by` ones first)."""
    sequence = _parse_eql(query).first
    assert isinstance(sequence, eql.ast.Sequence)
    return [[str(f) for f in step.join_values] for step in sequence.queries]


def test_token_chain_is_one_sequence_per_pair_of_lineage_slots(tmp_path: Path) -> None:
    """The shipped chain joins kin within 3 generations (x-provex-lineage): the documents carry
    the process's lineage slots, and kinship is a shared slot value. EQL joins on equal values
    only: one sequence per pair of slots with 3 on one side (a shorter lineage repeats its top)."""
    (shipped,) = [r for r in export("elasticsearch-eql") if r.name == "sa_token_exfiltration"]
    slot = ["process.pid", *(f"provex.lineage.ancestor_{n}" for n in (1, 2, 3))]
    pairs = {(slot[3], slot[j]) for j in range(4)} | {(slot[i], slot[3]) for i in range(3)}
    keys = [_join_keys(q) for q in shipped.queries]
    assert {(first[1], then[1]) for first, then in keys} == pairs and len(keys) == 7
    assert all(first[0] == then[0] == "container.id" for first, then in keys)
    # Without the extension, the same rule is one sequence by container.
    (chain,) = export("elasticsearch-eql", [eqlrun.token_chain_without_lineage(tmp_path)])
    assert _join_keys(chain.query or "") == [["container.id"], ["container.id"]]


def test_cross_node_chains_join_each_step_on_its_own_field() -> None:
    """Sigma aliases: the connect's destination, the accept's local end, then the Pod's own
    address on what follows; each step needs its key (a missing one joins nothing)."""
    chains = {r.name: r for r in export("elasticsearch-eql") if r.name.startswith("lateral_")}
    assert set(chains) == {"lateral_token_use", "lateral_tool_transfer", "lateral_relay"}
    for chain in chains.values():
        (query,) = chain.queries
        keys = _join_keys(query)
        assert keys[:2] == [["destination.ip"], ["destination.ip"]]
        assert all(k == ["provex.pod_ip"] for k in keys[2:])
        assert query.count("?provex.pod_ip != null]") == len(keys) - 2


def _agent_matches(rule: Rule, event: Event) -> bool:
    """Would the agent's own single-event rule match this (already correlated) event?"""
    if rule.category not in categories_of(event):
        return False
    return (succeeded(event) or rule.include_failed) and bool(rule.predicate(EventView(event)))


def test_exported_eql_agrees_with_the_agent_on_the_golden_events() -> None:
    """Every exported single-event EQL query, run with the `eql` engine over the ECS
    documents of the sample records (annotated by the real correlator where provenance
    matters), matches exactly the events the agent's rule matches: the documents carry
    what the rules used."""
    rules = {r.name: r for r in load_rules([DEFAULT_RULES_DIR]).rules}
    mapper = Mapper("ecs", **AGENT)
    events = {n: r for n, r in records().items() if isinstance(r, Event)}
    docs = {n: mapper.map(e) for n, e in events.items()}
    checked = 0
    for result in export("elasticsearch-eql"):
        rule = rules.get(result.name)
        if result.query is None or rule is None:
            continue
        by_eql = set()
        for name, doc in docs.items():
            assert doc is not None
            if eqlrun.run(result.query, [doc.body]):
                by_eql.add(name)
        by_agent = {name for name, event in events.items() if _agent_matches(rule, event)}
        assert by_eql == by_agent, result.name
        checked += bool(by_agent)
    # With positives among the records: host_binary_exec, host_sensitive_file_read,
    # container_mount, download_and_execute, container_setns.
    assert checked >= 5


def _selected(flat: dict, conditions: object) -> bool:
    """Does a document meet a logsource's conditions (exporter.siem.homes.LOGSOURCES)?"""
    if isinstance(conditions, str):
        return False  # the category cannot be selected in this schema
    for field_name, wanted in conditions.items():  # type: ignore[attr-defined]
        got = flat.get(field_name)
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if not set(got if isinstance(got, list) else [got]) & set(wanted):
            return False
    return True


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_every_home_holds_the_value_the_rule_saw(schema: str) -> None:
    """For every sample event and every rule field of its categories: the home holds the
    rule's value (translated where the home encodes it), or nothing when the rule sees none."""
    mapper = Mapper(schema, **AGENT)
    checked = 0
    for name, record in records().items():
        if not isinstance(record, Event):
            continue
        doc = mapper.map(record)
        assert doc is not None
        flat = flatten(doc.body)
        view = EventView(record)
        for category in categories_of(record):
            if not _selected(flat, LOGSOURCES[schema][category]):
                continue  # the SIEM does not see this event in this category (e.g. AF_UNIX connect)
            for field_name, field in FIELDS.items():
                if category not in field.categories:
                    continue
                try:
                    home = home_of(schema, field_name, category)
                except NoHome:
                    continue
                value, got = view.get(field_name), flat.get(home.field)
                where = (name, field_name, home.field)
                if home.values is not None:
                    key = str(value).lower() if isinstance(value, bool) else str(value)
                    if key in home.values:
                        allowed = home.values[key]
                        got_all = got if isinstance(got, list) else [got]
                        assert (EXISTS in allowed and got is not None) or set(got_all) & set(allowed), where
                        checked += 1
                    continue
                if value in ("", None, []):
                    assert got in (None, "", []), where
                elif home.text:
                    assert got == str(value), where
                else:
                    assert got == value, where
                checked += 1
    assert checked > 300


def test_every_refused_rule_says_why() -> None:
    for target in TARGETS:
        for r in export(target):
            assert (r.query is None) == bool(r.reason), (target, r.name)
    reasons = {r.name: r.reason for r in export("loki")}
    assert "do not support enforcing an order" in (reasons["sa_token_exfiltration"] or "")
    assert "Loki's json parser skips arrays" in (reasons["container_unshare"] or "")
    assert "ES|QL cannot order events" in ({r.name: r.reason for r in export("esql")}["lateral_relay"] or "")
    assert "EQL cannot count distinct values" in (
        {r.name: r.reason for r in export("elasticsearch-eql")}["internal_network_scan"] or ""
    )


# Alerting rules each target exports, of the 15 in the 13 default rule files (README, siem/README.md).
_CHAINS = {"sa_token_exfiltration", "lateral_token_use", "lateral_tool_transfer", "lateral_relay"}
# The rules on what the kernel knows of a file (open_by_handle_at, io_uring, memfd images) and
# on the sensor's own summaries: single events every target expresses.
_IDENTITY = {"container_io_uring_open", "container_open_by_handle", "fileless_execution", "sensor_flood"}
EXPORTED = {
    "elasticsearch-eql": {
        *_IDENTITY,
        "container_mount",
        "container_setns",
        "container_unshare",
        "download_and_execute",
        "host_binary_exec",
        "host_sensitive_file_read",
        *_CHAINS,
    },
    "splunk": {
        *_IDENTITY,
        "container_mount",
        "container_setns",
        "container_unshare",
        "download_and_execute",
        "host_binary_exec",
        "host_sensitive_file_read",
        "internal_network_scan",
        *_CHAINS,
    },
    "esql": {
        *_IDENTITY,
        "container_mount",
        "container_setns",
        "download_and_execute",
        "host_binary_exec",
        "host_sensitive_file_read",
        "internal_network_scan",
    },
    "loki": {
        *_IDENTITY,
        "container_mount",
        "container_setns",
        "download_and_execute",
        "host_binary_exec",
        "host_sensitive_file_read",
        "internal_network_scan",
    },
}


@pytest.mark.parametrize("target", sorted(EXPORTED))
def test_which_default_rules_each_target_exports(target: str) -> None:
    results = export(target)
    assert len(results) == 15
    assert {r.name for r in results if r.query is not None} == EXPORTED[target]


def _rule(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rule.yml"
    path.write_text(textwrap.dedent(body))
    return path


_SINGLE = """\
    title: T
    id: 0d3c5a53-40f1-4bb0-9d5b-6f0e1f1f7a11
    name: t
    logsource: {product: linux, category: process_creation}
    detection:
      selection:
        %s
      condition: selection
    level: high
"""


@pytest.mark.parametrize(
    ("detection", "reason"),
    [
        ("User: root", "User has no home in ECS: ECS carries the numeric uid"),
        ("IsContainer: false", "IsContainer: value 'false' has no home in ECS"),
        ("AncestorImages: /bin/sh", "AncestorImages has no home in ECS"),
    ],
)
def test_a_field_without_a_home_is_not_exported(tmp_path: Path, detection: str, reason: str) -> None:
    (result,) = export("elasticsearch-eql", [_rule(tmp_path, _SINGLE % detection)])
    assert result.query is None
    assert reason in (result.reason or "")


def test_values_are_translated_to_what_the_document_holds(tmp_path: Path) -> None:
    path = _rule(tmp_path, _SINGLE % "IsLate: true\n        UserId: 0")
    (result,) = export("elasticsearch-eql", [path])
    assert 'labels.provex_enrichment:"late"' in (result.query or "")
    assert 'user.id:"0"' in (result.query or "")  # ECS keeps the uid as a string
    (ocsf,) = export("splunk", [path])
    assert 'unmapped.provex.enrichment="late"' in (ocsf.query or "")


def test_booleans_and_cidr_use_what_each_engine_compares(tmp_path: Path) -> None:
    path = _rule(tmp_path, _SINGLE % "IsHostMount: true\n        HostMountReadOnly: true")
    (eql_result,) = export("elasticsearch-eql", [path])
    assert "provex.in_host_mount == true" in (eql_result.query or "")  # `:` is a string match
    assert "provex.host_mount.read_only == true" in (eql_result.query or "")
    (loki,) = export("loki", [path])
    assert 'provex_in_host_mount="true"' in (loki.query or "")  # `| json` makes a string of it
    (spl,) = export("splunk", [path])
    assert "unmapped.provex.in_host_mount=true" in (spl.query or "")
    net = _rule(
        tmp_path, _SINGLE.replace("process_creation", "network_connection") % "DestinationIp|cidr: 10.0.0.0/8"
    )
    (loki,) = export("loki", [net])
    assert 'destination_ip=ip("10.0.0.0/8")' in (loki.query or "")  # the label `| json` makes


def test_read_only_false_has_no_home(tmp_path: Path) -> None:
    (result,) = export("splunk", [_rule(tmp_path, _SINGLE % "HostMountReadOnly: false")])
    assert result.query is None
    assert "HostMountReadOnly: value 'false' has no home in OCSF" in (result.reason or "")


def test_include_failed_drops_the_success_condition(tmp_path: Path) -> None:
    plain = _rule(tmp_path, _SINGLE % "Image: /bin/sh")
    (result,) = export("elasticsearch-eql", [plain])
    assert "event.outcome" in (result.query or "")
    failed = tmp_path / "failed.yml"
    failed.write_text(plain.read_text() + "x-provex-include-failed: true\n")
    (result,) = export("elasticsearch-eql", [failed])
    assert "event.outcome" not in (result.query or "")


_COUNT = """\
    title: Step
    id: 3b0c2d5e-8d0a-4c55-9f67-1f1fb8c1d001
    name: step
    logsource: {product: linux, category: network_connection}
    detection:
      selection: {IsContainer: true}
      condition: selection
    ---
    title: Many destinations
    id: 3b0c2d5e-8d0a-4c55-9f67-1f1fb8c1d002
    name: many
    correlation:
      type: value_count
      rules: [step]
      group-by: [ContainerId]
      timespan: 30s
      condition: {gte: 20, field: DestinationIp}
    level: medium
"""


def test_value_count_is_refused_on_eql_and_converted_where_it_is_exact(tmp_path: Path) -> None:
    path = _rule(tmp_path, _COUNT)
    (eql_result,) = export("elasticsearch-eql", [path])
    assert eql_result.query is None
    assert "EQL cannot count distinct values" in (eql_result.reason or "")
    (spl,) = export("splunk", [path])
    assert "dc(dst_endpoint.ip)" in (spl.query or "")
    assert "actor.process.container.uid" in (spl.query or "")


@pytest.mark.parametrize(
    ("lineage", "steps", "reason"),
    [
        ("{mode: descendant, depth: 2}", "[step, step]", "descendant has no generation bound"),
        ("{mode: kin, depth: 5}", "[step, step]", "documents carry 4 generations"),
        ("{mode: kin, depth: 2}", "[step, step, step]", "more than two steps"),
    ],
)
def test_lineage_joins_a_query_cannot_say_exactly_are_refused(
    tmp_path: Path, lineage: str, steps: str, reason: str
) -> None:
    text = _COUNT.replace("type: value_count", "type: temporal_ordered").replace(
        "      condition: {gte: 20, field: DestinationIp}\n", ""
    )
    text = text.replace("rules: [step]", f"rules: {steps}") + f"    x-provex-lineage: {lineage}\n"
    for target in ("splunk", "elasticsearch-eql"):
        (result,) = export(target, [_rule(tmp_path, text)])
        assert result.query is None
        assert reason in (result.reason or ""), target


def test_splunk_orders_every_step_and_expands_the_lineage() -> None:
    """SPL: a streamstats pass per step carries back when the rest of the chain completes; a
    kin join expands each event's lineage slots and keys on container and slot."""
    results = {r.name: r.query or "" for r in export("splunk")}
    relay = results["lateral_relay"]
    assert relay.count("| streamstats current=f last(provex_done") == 3
    assert "provex_step=4, provex_key='unmapped.provex.pod_ip'" in relay
    assert "provex_step=1, provex_key='dst_endpoint.ip'" in relay
    assert relay.endswith("| where provex_step=1 AND provex_next2 - _time <= 600")
    token = results["sa_token_exfiltration"]
    assert "| mvexpand provex_kin" in token and "'unmapped.provex.lineage.ancestor_3'" in token
    assert "'unmapped.provex.lineage.ancestor_4'" not in token


def test_cli_writes_the_file_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "loki.yaml"
    assert run("loki", [], str(out)) == 0
    assert out.read_text() == (EXPECTED / "loki.yaml").read_text()
    assert "10 exported, 5 not exported" in capsys.readouterr().err
    assert run("nope", []) == 2


def test_a_bad_rule_is_refused_with_its_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = (
        _rule(tmp_path, _SINGLE % "Image: /bin/sh")
        .read_text()
        .replace("condition: selection", "condition: nope")
    )
    path = tmp_path / "bad.yml"
    path.write_text(bad)
    out = tmp_path / "out.spl"
    assert run("splunk", [str(path)], str(out)) == 1
    err = capsys.readouterr().err
    assert f"ERROR {path}:" in err and "nothing exported" in err
    assert not out.exists()
