"""Published field table and shipped ATT&CK data agree with their sources."""

from __future__ import annotations

import json

import pytest

from exporter.correlate.attack import DATA
from exporter.correlate.fields import FIELDS_DOC, fields_markdown

from .helpers import SHARED


def test_fields_md_is_generated_from_the_code():
    assert FIELDS_DOC.read_text() == fields_markdown(), (
        "regenerate: provex rules fields > exporter/correlate/FIELDS.md"
    )


def test_shipped_attack_data_matches_the_reference():
    reference = SHARED / "schemas" / "attack" / "containers-techniques.json"
    if not reference.exists():
        pytest.skip(f"reference schemas not found at {reference}")
    assert json.loads(DATA.read_text()) == json.loads(reference.read_text())
    assert (DATA.parent / "LICENSE.txt").read_text() == (reference.parent / "LICENSE.txt").read_text()
