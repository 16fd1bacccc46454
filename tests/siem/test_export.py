"""`provex rules export`: field homes, expected outputs, EQL parsing and refusals."""

from __future__ import annotations

import textwrap
from pathlib import Path

import eql
import pytest

from exporter.correlate.fields import FIELDS
from exporter.siem import TARGET_NAMES
from exporter.siem.export import TARGETS, export, render, run
from exporter.siem.homes import ARRAY_FIELDS, HOMES, LOGSOURCES, SCALAR_LOGSOURCES, SUCCESS, Home
from tests.siem.emitted import REPO, golden_values, mapped_fields

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


def test_every_eql_query_parses() -> None:
    results = [r for r in export("elasticsearch-eql") if r.query is not None]
    assert {r.name for r in results} >= {"sa_token_exfiltration", "container_setns"}
    for r in results:
        _parse_eql(r.query or "")


def test_token_chain_is_an_eql_sequence_by_container() -> None:
    (chain,) = [r for r in export("elasticsearch-eql") if r.name == "sa_token_exfiltration"]
    query = _parse_eql(chain.query or "")
    assert isinstance(query.first, eql.ast.Sequence)
    assert [str(f) for f in query.first.queries[0].join_values] == ["container.id"]
    assert len(query.first.queries) == 2


def test_every_refused_rule_says_why() -> None:
    for target in TARGETS:
        for r in export(target):
            assert (r.query is None) == bool(r.reason), (target, r.name)
    reasons = {r.name: r.reason for r in export("loki")}
    assert "x-provex-same" in (reasons["download_and_execute"] or "")
    assert "not supported by the Loki backend" in (reasons["sa_token_exfiltration"] or "")
    assert "IsHostMount has no home in ECS" in (reasons["host_binary_exec"] or "")


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


def test_lineage_extension_is_refused(tmp_path: Path) -> None:
    text = _COUNT.replace("type: value_count", "type: temporal_ordered").replace(
        "      condition: {gte: 20, field: DestinationIp}\n", ""
    )
    text = (
        text.replace("rules: [step]", "rules: [step, step]")
        + "    x-provex-lineage: {mode: descendant, depth: 2}\n"
    )
    (result,) = export("splunk", [_rule(tmp_path, text)])
    assert result.query is None
    assert "x-provex-lineage" in (result.reason or "")


def test_cli_writes_the_file_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "loki.yaml"
    assert run("loki", [], str(out)) == 0
    assert out.read_text() == (EXPECTED / "loki.yaml").read_text()
    assert "1 exported, 7 not exported" in capsys.readouterr().err
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
