"""The lab's containers leave nothing behind in the cgroup tree: an agent walks that tree
when it meets an unknown cgroup, and thousands of leftover Pod directories made every walk
(and every live test and benchmark after them) slower."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from exporter.scenarios.runc import ContainerSpec, Runc

pytestmark = [pytest.mark.containers]


def test_a_finished_container_leaves_no_cgroup_in_any_hierarchy(tmp_path):
    runtime = Runc(tmp_path / "runc")
    try:
        run = runtime.run(ContainerSpec(["/bin/true"], name="tidy"))
        started = runtime.start(ContainerSpec(["/bin/sleep", "0.3"], name="tidy-running"))
        started.stop()
    finally:
        runtime.close()
    assert run.returncode == 0, run.stderr
    assert len(runtime.cgroup_mounts) >= 1
    for cgroup_path in (run.cgroup_path, started.cgroup_path):
        pod = PurePosixPath(cgroup_path).parent
        for mount in runtime.cgroup_mounts:
            left = [p for p in (mount / cgroup_path.lstrip("/"), mount / str(pod).lstrip("/")) if p.exists()]
            assert not left, left
