"""Run scenarios against a live agent and judge each trial from the alerts it raised.

A trial's alerts are those whose join key (or decisive event) names the
trial's container. An attack trial is `fired` when the expected rule alerted
within `late_ms` of the decisive syscall, `late` when it alerted later, and
`missed` when it did not alert before the wait ran out; a benign trial is
`clean` or a `false-positive`. A trial whose script failed is an `error`
(the workload did not do what it claims, so detection is not judged).

Absence needs a proof of progress, not a sleep: `barrier()` runs a sentinel
attack and waits for its alert; since the agent drains the kernel in order,
everything an earlier container did has been through the rules by then.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.scenarios.agent import AgentProcess, SeenAlert
from exporter.scenarios.lab import Lab, Prepared, TrialRun
from exporter.scenarios.library import RuleRef, Scenario

SENTINEL = Scenario(
    name="barrier",
    klass="barrier",
    rule="container_unshare",
    technique="T1611",
    privileged=True,
    script="sysprobe unshare 0x10000000",
    description="sentinel: its alert proves the agent caught up",
)


@dataclass
class Outcome:
    run: TrialRun
    status: str  # fired | late | missed | clean | false-positive | error
    alerts: list[SeenAlert] = field(default_factory=list)  # every alert on the trial's container
    expected: SeenAlert | None = None
    also: frozenset[str] = frozenset()  # ids of rules the scenario raises too, by design

    @property
    def scenario(self) -> Scenario:
        return self.run.prepared.scenario

    @property
    def latency_ms(self) -> float | None:
        return self.expected.latency_ms if self.expected is not None else None

    @property
    def detected(self) -> bool:
        return self.status in ("fired", "late")

    def wrong_alerts(self) -> list[SeenAlert]:
        """Alerts of another rule than the expected one and those the scenario says it raises
        too (benign: every alert)."""
        uid = self.expected.rule_id if self.expected is not None else None
        return [a for a in self.alerts if a.rule_id != uid and a.rule_id not in self.also and not a.followup]


def alerts_for(container_id: str, alerts: Iterable[SeenAlert]) -> list[SeenAlert]:
    return [a for a in alerts if a.container_id == container_id]


def judge(run: TrialRun, alerts: Iterable[SeenAlert], rules: dict[str, RuleRef], late_ms: float) -> Outcome:
    """The verdict on one trial given every alert seen so far (pure)."""
    scenario = run.prepared.scenario
    mine = alerts_for(run.prepared.container_id, alerts)
    if not run.ok:
        return Outcome(run, "error", mine)
    if scenario.kind == "benign":
        return Outcome(run, "false-positive" if mine else "clean", mine)
    uid = rules[scenario.rule].uid
    also = frozenset(rules[name].uid for name in scenario.also)
    hits = sorted((a for a in mine if a.rule_id == uid and not a.followup), key=lambda a: a.seen_ns)
    if not hits:
        return Outcome(run, "missed", mine, also=also)
    first = hits[0]
    return Outcome(run, "fired" if first.latency_ms <= late_ms else "late", mine, first, also)


class Session:
    """A lab and the alerts of the agent watching it."""

    def __init__(
        self,
        lab: Lab,
        alerts: Callable[[], list[SeenAlert]],
        wait_alert: Callable[[float], None],
        rules: dict[str, RuleRef],
        wait_pods: Callable[[int], None],
    ) -> None:
        self.lab = lab
        self.alerts = alerts
        self.wait_alert = wait_alert
        self.rules = rules
        self.wait_pods = wait_pods
        self._barriers = 0

    def prepare(self, items: Iterable[tuple[Scenario, int]]) -> list[Prepared]:
        """Prepare and register every trial's Pod, then wait until the agent knows them all."""
        prepared = [self.lab.prepare(s, n) for s, n in items]
        for p in prepared:
            self.lab.register(p)
        self.wait_pods(self.lab.registered)
        return prepared

    def expected_uid(self, scenario: Scenario) -> str:
        return self.rules[scenario.rule].uid

    def wait_for(self, run: TrialRun, limit_s: float) -> None:
        """Until the trial's expected alert arrived (attacks) or limit_s passed."""
        scenario = run.prepared.scenario
        if scenario.kind != "attack" or not run.ok:
            return
        uid, cid = self.expected_uid(scenario), run.prepared.container_id
        deadline = time.monotonic() + limit_s
        while not any(a.rule_id == uid and a.container_id == cid for a in self.alerts()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.wait_alert(min(remaining, 0.05))

    def wait_all(self, runs: Iterable[TrialRun], limit_s: float) -> None:
        """Until every attack run's expected alert arrived, or limit_s passed in all."""
        deadline = time.monotonic() + limit_s
        for run in runs:
            self.wait_for(run, max(0.0, deadline - time.monotonic()))

    def barrier(self, limit_s: float = 20.0) -> bool:
        """Run the sentinel and wait for its alert; False if it never came."""
        self._barriers += 1
        (p,) = self.prepare([(SENTINEL, self._barriers)])
        run = self.lab.run(p)
        self.wait_for(run, limit_s)
        return judge(run, self.alerts(), self.rules, late_ms=limit_s * 1000).detected


@contextlib.contextmanager
def live_session(workdir: str | Path | None = None, agent_args: Sequence[str] = ()) -> Iterator[LiveSession]:
    """A lab, the real agent watching it (alerts tailed from its output) and a Session."""
    from exporter.scenarios.library import default_rules

    root = Path(workdir or tempfile.mkdtemp(prefix="provex-scenarios-"))
    lab = Lab(root / "lab")
    agent = AgentProcess(root / "agent", lab.kubeconfig, lab.node_name, extra=agent_args)
    try:
        agent.start()
        assert agent.feed is not None
        session = Session(lab, agent.feed.alerts, agent.feed.wait, default_rules(), agent.wait_pods)
        yield LiveSession(lab, agent, session)
    finally:
        agent.stop()
        lab.close()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class LiveSession:
    lab: Lab
    agent: AgentProcess
    session: Session
