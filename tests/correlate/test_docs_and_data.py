"""Published field table and shipped ATT&CK data agree with their sources."""

from __future__ import annotations

import json

from exporter.taxonomy.attack import DATA
from exporter.taxonomy.fields import FIELDS_DOC, fields_markdown


def test_fields_md_is_generated_from_the_code():
    assert FIELDS_DOC.read_text() == fields_markdown(), (
        "regenerate: provex rules fields > exporter/taxonomy/FIELDS.md"
    )


def test_shipped_attack_data_is_the_whole_enterprise_release():
    """The package's ATT&CK data: all of Enterprise 18.1, and a container subset of it."""
    enterprise = json.loads(DATA.read_text())
    assert (enterprise["attack_version"], enterprise["git_tag"]) == ("18.1", "ATT&CK-v18.1")
    assert (len(enterprise["techniques"]), len(enterprise["tactics"])) == (691, 14)
    subset = json.loads((DATA.parent / "containers-techniques.json").read_text())
    assert subset["attack_version"] == "18.1" and len(subset["techniques"]) == 55
    for entry in subset["techniques"]:
        assert entry["id"] in enterprise["techniques"]
        assert set(entry["tactics"]) == set(enterprise["techniques"][entry["id"]]["tactics"])
    assert "The MITRE Corporation" in (DATA.parent / "LICENSE.txt").read_text()
