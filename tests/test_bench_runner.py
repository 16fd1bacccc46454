"""bench/run_all.py (what `make bench` runs) knows every benchmark; nothing here measures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _runner():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("run_all", REPO / "bench" / "run_all.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_make_bench_runs_the_runner() -> None:
    assert "bench/run_all.py" in (REPO / "Makefile").read_text()


def test_every_benchmark_is_run_and_quick_flags_name_real_scripts() -> None:
    runner = _runner()
    names = runner.scripts()
    assert names == sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "run_all")
    assert set(runner.QUICK) <= set(names)
    for name, flags in runner.QUICK.items():
        text = (REPO / "bench" / f"{name}.py").read_text()
        for flag in flags:
            if flag.startswith("--"):
                assert f'"{flag}"' in text, f"{name} has no {flag}"


def test_an_unknown_benchmark_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--only", "nosuch"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "unknown benchmark(s) nosuch" in result.stderr
