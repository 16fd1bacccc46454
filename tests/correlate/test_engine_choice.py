"""correlate.engine where the native core cannot be had (not built, or built from other
sources): `native` is refused with the other inputs, one line and exit 2, never a traceback;
`auto` correlates in Python; `python` never loads the core."""

from __future__ import annotations

import pytest

from exporter.cli.main import main
from exporter.config.schema import CorrelateConfig
from exporter.correlate import DEFAULT_RULES_DIR, load_rules, native
from exporter.correlate.engine import Correlator

WHY = "the native correlation core is not built here (test)"


@pytest.fixture
def no_core(monkeypatch):
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_error", WHY)


def test_replay_with_engine_native_and_no_core_is_refused_in_one_line(no_core, capsys):
    assert main(["replay", "--set", "correlate.engine=native"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"provex: --set correlate.engine native: {WHY}"]


def test_story_replaying_with_engine_native_and_no_core_says_why(no_core, capsys):
    assert main(["story", "abc", "--set", "correlate.engine=native"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"correlate.engine native: {WHY}" in err


def test_auto_and_python_correlate_in_python_without_the_core(no_core):
    rules = load_rules([DEFAULT_RULES_DIR])
    assert Correlator(rules, CorrelateConfig(engine="auto")).engine == "python"
    assert Correlator(rules, CorrelateConfig(engine="python")).engine == "python"
