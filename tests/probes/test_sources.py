"""Each bpf/*.c compiles alone with its own includes (provex.h), not only as the concatenation
the agent loads: a source that leans on another file's definitions fails here."""

from __future__ import annotations

import pytest

from exporter.config.schema import ProbesConfig
from exporter.probes.build import BPF_SOURCES, bpf_program
from exporter.probes.loader import Limits, build_cflags, detect_kernel_support

pytestmark = [pytest.mark.ebpf]


@pytest.mark.parametrize("source", BPF_SOURCES)
def test_source_compiles_alone(source):
    from bcc import BPF

    config = ProbesConfig()
    limits = Limits(path_max=config.path_max, argv_max=config.argv_max_args, arg_len=config.argv_arg_max)
    bpf = BPF(text=bpf_program((source,)), cflags=build_cflags(config, detect_kernel_support(), limits))
    try:
        assert bpf.tracepoint_fds, f"{source} attached no tracepoint"
    finally:
        bpf.cleanup()
