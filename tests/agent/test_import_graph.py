"""What runs on a node is what `provex run` imports: no test scaffolding, no build steps,
no SIEM backends, and no gRPC when the collector is spoken to over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# The run path as `provex run` takes it, up to the probes (which need root and BPF):
# the CLI's parser and config, the live module, every stage built and closed again.
RUN_PATH = """
import json, sys
from exporter.cli.main import build_config, make_parser
from exporter.agent import live
from exporter.agent.build import build_stages

args = make_parser().parse_args(["run", *sys.argv[1:]])
stages = build_stages(build_config(args), enrich=True, correlate=True)
stages.close()
print(json.dumps(sorted(sys.modules)))
"""

NOT_ON_A_NODE = {
    "exporter.scenarios.apiserver": "the API-server stand-in (provex demo/verify only)",
    "exporter.scenarios.lab": "the scenario lab",
    "tests": "test helpers (the stand-in's fault injection)",
    "scripts": "build steps (the dashboard generator)",
    "exporter.siem.export": "SIEM export (provex rules export)",
    "sigma.backends": "pySigma's SIEM backends",
}


def _modules(*flags: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN_PATH, *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def _imported(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize(
    ("flags", "grpc"),
    [
        (["--otlp-endpoint", "http://127.0.0.1:9", "--otlp-protocol", "http/protobuf"], False),
        (["--otlp-endpoint", "http://127.0.0.1:9", "--otlp-protocol", "grpc"], True),
        ([], False),  # JSON lines on stdout
    ],
)
def test_run_imports_only_the_agent(flags: list[str], grpc: bool) -> None:
    modules = _modules(*flags)
    assert _imported(modules, "exporter.agent.live") and _imported(modules, "exporter.correlate.engine")
    pulled = {name: why for name, why in NOT_ON_A_NODE.items() if _imported(modules, name)}
    assert not pulled, f"provex run imports {pulled}"
    # gRPC (its C core and threads) only for a gRPC collector: the check can fail both ways.
    assert _imported(modules, "grpc") == grpc
