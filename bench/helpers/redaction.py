"""The table of command-line forms for redaction (tests/fixtures/enrich/redaction.yaml), read
by tests/enrich/test_redact.py and bench/redact_bench.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from exporter.enrich.redact import MASK

TABLE_FILE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "enrich" / "redaction.yaml"
TABLE = yaml.safe_load(TABLE_FILE.read_text())
SECRET_FORMS: list[dict[str, Any]] = TABLE["redact"]  # argv, want (and tool, doc)
KEEP_FORMS: list[dict[str, Any]] = TABLE["keep"]  # argv that must stay as it is


def secrets_of(form: dict[str, Any]) -> list[str]:
    """What `want` masks in `argv`: each *** stands for one secret."""
    found = []
    for arg, want in zip(form["argv"], form["want"], strict=True):
        if arg != want:
            pattern = "(.+?)".join(re.escape(part) for part in want.split(MASK))
            m = re.fullmatch(pattern, arg, re.DOTALL)
            assert m is not None, f"{want!r} is not {arg!r} with parts masked"
            found += m.groups()
    return found
