"""What `provex run` tells its operator once it runs: what it watches (the cgroups it found,
or none yet), which rules (by name, and how many), where the output goes and the health
address; and, when nothing has come from any container for a while, why that may be."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from exporter.config import Config
from exporter.config.schema import OutputConfig

log = logging.getLogger("provex.agent")

NO_CONTAINER_AFTER_S = 30.0
CGROUPS_LISTED = 5  # the first few monitored cgroups named in the summary
NO_CONTAINER_HINT = "no container seen yet: provex watches containers only; `--monitor all` to watch the host"


def describe_output(output: OutputConfig) -> str:
    """Where records go and in what form, in a few words."""
    if output.otlp.endpoint:
        return f"OTLP {output.otlp.protocol} to {output.otlp.endpoint} ({output.schema})"
    where = f"file {output.file}" if output.file not in ("", "-") else "stdout"
    if output.schema == "raw":
        form = "text" if output.format == "text" else "JSON lines"
    else:
        form = f"{output.schema} OTLP-JSON" if output.format == "otlp-json" else f"{output.schema} JSON lines"
    return f"{where} ({form})"


def summary(
    config: Config, monitored_cgroups: Sequence[str], rules: Sequence[str] | None, digest: str = ""
) -> dict[str, Any]:
    """The fields of the start-up line. `rules` None: a command without rules (record)."""
    fields: dict[str, Any] = {"monitor": config.probes.monitor}
    if config.probes.monitor == "containers":
        fields["cgroups"] = len(monitored_cgroups)
        fields["cgroups_first"] = sorted(monitored_cgroups)[:CGROUPS_LISTED]
        if not monitored_cgroups:
            fields["cgroups_note"] = "none found yet: containers are picked up as they start"
    if rules is not None:
        fields["rules"] = len(rules)
        fields["rule_names"] = sorted(rules)
        fields["rules_digest"] = digest
    fields["output"] = describe_output(config.output)
    fields["raw_events"] = config.output.raw_events
    fields["health"] = config.server.health_addr or "off (--health-addr)"
    return fields


class NoContainerHint:
    """One hint when a container-only agent has had no event for `after_s` since it started
    (a host without containers, or a cgroup layout it did not recognise)."""

    def __init__(
        self, monitor: str, after_s: float = NO_CONTAINER_AFTER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._due: float | None = clock() + after_s if monitor == "containers" else None
        self.after_s = after_s

    def poll(self, events: int) -> None:
        """Each turn of the loop, with the number of events the turn brought."""
        if self._due is None:
            return
        if events:
            self._due = None
        elif self._clock() >= self._due:
            self._due = None
            log.warning(NO_CONTAINER_HINT, extra={"fields": {"waited_s": self.after_s}})
