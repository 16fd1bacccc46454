"""Mapping reads the shared vocabulary (exporter/taxonomy), not the correlator: a process that
only maps documents loads neither networkx nor pySigma (233ec88's mapping/engine.py imported
exporter.correlate.fields, whose package pulled in both)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_mapping_loads_neither_the_correlator_nor_its_libraries() -> None:
    probe = (
        "import sys, exporter.mapping, exporter.mapping.compiled;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('networkx', 'sigma')"
        " or m.startswith('exporter.correlate')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
