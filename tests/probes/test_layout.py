"""The configuration's list of kernel event types (exporter/model/kernel.py, read by
config/schema.py without importing the probes) agrees with the probes' T_* bits."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, load_config
from exporter.model import EventType
from exporter.model.kernel import KERNEL_EVENT_TYPES
from exporter.probes.layout import TYPE_BITS


def test_every_type_bit_is_a_kernel_event_type_and_no_other() -> None:
    assert list(KERNEL_EVENT_TYPES) == list(TYPE_BITS)


def test_the_config_wakes_on_kernel_types_only() -> None:
    config = load_config(overrides=["probes.wakeup_types=[exec,accept]"])
    assert config.probes.wakeup_types == ["exec", "accept"]
    with pytest.raises(ConfigError, match="'context' is not allowed"):
        load_config(overrides=[f"probes.wakeup_types=[{EventType.CONTEXT.value}]"])
