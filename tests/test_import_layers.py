"""scripts/check_imports.py holds the house plan: which room of exporter/ may import which,
no modules that import each other in a loop, no tests in the product or the benches.
(On 233ec88 it finds 16 problems: config -> probes, correlate -> siem and source,
mapping -> correlate, the emit circle factory <-> shipper, and benches importing tests.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "check_imports.py"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True, check=False
    )


def test_this_repository_keeps_its_layers_without_cycles() -> None:
    result = check(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers hold, no import cycles" in result.stdout


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_it_finds_a_forbidden_import_a_cycle_and_tests_where_they_do_not_belong(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "exporter/__init__.py": "",
            "exporter/model/__init__.py": "",
            "exporter/config/__init__.py": "",
            "exporter/config/schema.py": "from exporter.probes.layout import BITS\n",
            "exporter/probes/__init__.py": "",
            "exporter/probes/layout.py": "BITS = 1\n",
            "exporter/emit/__init__.py": "",
            "exporter/emit/factory.py": "def build():\n    from exporter.emit import shipper\n",
            "exporter/emit/shipper.py": "from exporter.emit.factory import build\nimport tests.helpers\n",
            "exporter/emit/typed.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from exporter.agent import live\n"
            ),
            "exporter/attic/__init__.py": "",
            "bench/b.py": "from tests.helpers.agent import Agent\n",
        },
    )
    result = check(tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "exporter.attic: room 'attic' is not declared (add it to MAY_IMPORT)",
        "exporter/config/schema.py:1: exporter.config.schema imports exporter.probes.layout:"
        " config may not import probes",
        "import cycle: exporter.emit.factory -> exporter.emit.shipper -> exporter.emit.factory",
        "exporter/emit/shipper.py:2: the product imports tests",
        "bench/b.py:1: a bench imports tests (use product code or bench/helpers/)",
    ]
