"""The enrich stage: process table, cgroup -> container -> Pod, API server identity.

Public surface:
- `build_enricher(cfg, env)`: the stage the agent wires (an `EnrichStage`,
  which implements the pipeline's Enricher protocol; call start()/stop()).
- `classify_cgroup_path(path)`: is this cgroup a container's? (the kernel
  side fills its monitored-cgroups map with it).
- `redact_argv(argv)`: secrets out of command lines.
"""

from __future__ import annotations

from exporter.enrich.apiserver import ApiServerSet
from exporter.enrich.cgroups import ContainerRef, classify_cgroup_path, find_cgroup2_root
from exporter.enrich.factory import build_enricher
from exporter.enrich.kubeclient import KubeConfigError
from exporter.enrich.redact import redact_argv
from exporter.enrich.stage import EnrichStage

__all__ = [
    "ApiServerSet",
    "ContainerRef",
    "EnrichStage",
    "KubeConfigError",
    "build_enricher",
    "classify_cgroup_path",
    "find_cgroup2_root",
    "redact_argv",
]
