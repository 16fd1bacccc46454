"""probes.cgroup_subtree: an agent finds containers only in its part of the cgroup tree
(several agents on one host, e.g. two "nodes" in a test). The map writes are the kernel's
side; here the choice of what goes in, without BPF."""

from __future__ import annotations

from pathlib import Path

from exporter.config import load_config
from exporter.probes.loader import Probes

CID = "a" * 64
UID = "11111111-1111-4111-8111-111111111111"


def _probes(cgroup2: Path, subtree: str) -> tuple[Probes, list[str]]:
    added: list[str] = []
    probes = Probes.__new__(Probes)  # the selection logic only: no BPF program
    overrides = [f"probes.cgroup_subtree={subtree}"] if subtree else []
    probes.config = load_config(None, overrides, environ={}).probes
    probes.cgroup2 = cgroup2
    probes._monitored, probes._monitored_paths = set(), set()

    def add(cgroup_id: int, relpath: str) -> None:
        added.append(relpath)
        probes._monitored.add(cgroup_id)
        probes._monitored_paths.add("/" + relpath.strip("/"))

    probes._add_monitored = add  # type: ignore[method-assign]
    return probes, added


def test_only_the_subtree_is_seeded_and_followed(tmp_path: Path) -> None:
    for node in ("node-a", "node-b"):
        (tmp_path / "lab" / node / "kubepods" / "besteffort").mkdir(parents=True)
    (tmp_path / "kubepods").mkdir()  # the host's own Pods (another agent's, here)
    probes, added = _probes(tmp_path, "/lab/node-a")
    probes._seed_monitored()
    assert added == ["/lab/node-a/kubepods"]
    # New cgroups: a container under the other node, and one at the top, are not ours.
    probes.on_cgroup_created(1, 0, f"/lab/node-b/pod{UID}/{CID}")
    probes.on_cgroup_created(2, 0, f"/other/{CID}")
    probes.on_cgroup_created(3, 0, f"/lab/node-a/elsewhere/{CID}")
    probes.on_cgroup_created(4, 0, f"/lab/node-ab/{CID}")  # a sibling whose name starts alike
    assert added == ["/lab/node-a/kubepods", f"/lab/node-a/elsewhere/{CID}"]


def test_without_a_subtree_the_whole_tree_is_searched(tmp_path: Path) -> None:
    (tmp_path / "lab" / "node-a" / "kubepods").mkdir(parents=True)
    (tmp_path / "kubepods").mkdir()
    probes, added = _probes(tmp_path, "")
    probes._seed_monitored()
    assert sorted(added) == ["/kubepods", "/lab/node-a/kubepods"]
    probes.on_cgroup_created(2, 0, f"/other/{CID}")
    assert added[-1] == f"/other/{CID}"
