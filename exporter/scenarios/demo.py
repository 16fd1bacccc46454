"""`provex demo`: the whole story on one Linux box with root, in a minute.

What it does and its options: exporter.cli.scenarios (the `--help` text).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TextIO

from exporter.scenarios.agent import SeenAlert
from exporter.scenarios.library import Scenario, canaries, load_library
from exporter.scenarios.session import Outcome, judge, live_session

BENIGN = ["startup", "token-read-no-api", "allowlisted-controller", "health-checks", "file-heavy-job",
          "package-manager-storm"]  # fmt: skip
# The story order: the escape steps first, then the chains only a graph can join.
STORY = ["host-sensitive-read", "namespace-entry", "escape-precursor", "host-binary-exec", "internal-scan",
         "download-execute", "token-exfiltration", "lateral-movement"]  # fmt: skip
COLUMNS = (("TIME", 12), ("RULE", 46), ("POD", 32), ("TECHNIQUE", 16), ("LATENCY", 10))


class Screen:
    """Alert rows scroll; a progress line stays at the bottom when the output is a terminal."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.tty = out.isatty()
        self.total = total
        self.done = 0
        self.status = ""
        self._progress_shown = False

    def _clear_progress(self) -> None:
        if self.tty and self._progress_shown:
            self.out.write("\r\033[2K")
            self._progress_shown = False

    def line(self, text: str = "") -> None:
        self._clear_progress()
        self.out.write(text + "\n")
        self._draw()

    def header(self) -> None:
        self.line("  ".join(name.ljust(width) for name, width in COLUMNS).rstrip())

    def alert(self, a: SeenAlert) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(a.decisive_ts_ns / 1e9))
        stamp += f".{a.decisive_ts_ns // 1_000_000 % 1000:03d}"
        pod = f"{a.pod_namespace}/{a.pod_name}" if a.pod_name else "(no Pod)"
        cells = (stamp, a.rule_title, pod, ",".join(a.techniques), f"{a.latency_ms:.1f} ms")
        self.line("  ".join(_fit(c, w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip())

    def progress(self, status: str) -> None:
        self.status = status
        if not self.tty:
            return
        self._clear_progress()
        self._draw()

    def _draw(self) -> None:
        if not self.tty or not self.status:
            return
        width = 24
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        self.out.write(f"[{bar}] {self.done}/{self.total}  {self.status}"[:118])
        self.out.flush()
        self._progress_shown = True

    def finish(self) -> None:
        self._clear_progress()
        self.out.flush()


def _fit(text: str, width: int) -> str:
    return text[: width - 1] + "…" if len(text) > width else text.ljust(width)


def plan(benign: list[str] | None = None) -> list[Scenario]:
    library = load_library()
    by_name = {s.name: s for s in library}
    chosen = [by_name[n] for n in (benign if benign is not None else BENIGN)]
    order = {klass: i for i, klass in enumerate(STORY)}
    attacks = sorted(canaries(library).values(), key=lambda s: (order.get(s.klass, len(order)), s.rule))
    return chosen + attacks


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    scenarios = plan()
    screen = Screen(out, len(scenarios))
    out.write(
        "provex demo: the real agent watches throwaway runc containers registered as Pods with a\n"
        f"local stand-in API server. {sum(s.kind == 'benign' for s in scenarios)} benign workloads, "
        f"then {sum(s.kind == 'attack' for s in scenarios)} attacks. Loopback only; no host file is touched.\n\n"
    )
    screen.progress("starting the agent (compiling the BPF probes)…")
    with live_session(args.workdir, list(args.agent_args)) as live:
        session, feed = live.session, live.agent.feed
        assert feed is not None
        shown: set[int] = set()
        mine: set[str] = set()  # the plan's containers (not the sentinel's)

        def show_new() -> None:
            for a in feed.alerts():
                if id(a) not in shown and not a.followup and a.container_id in mine:
                    shown.add(id(a))
                    screen.alert(a)

        screen.progress("registering the scenario Pods…")
        prepared = session.prepare([(s, 0) for s in scenarios])
        mine.update(p.container_id for p in prepared)
        screen.header()
        runs = []
        for p in prepared:
            s = p.scenario
            screen.progress(f"{s.kind}: {s.name} — {s.description}")
            run = live.lab.run(p)
            runs.append(run)
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:
                show_new()
                if s.kind == "benign" or judge(run, feed.alerts(), session.rules, 1e9).detected:
                    break
                feed.wait(0.05)
            screen.done += 1
            show_new()
        screen.progress("checking the benign runs stayed quiet (sentinel)…")
        caught_up = session.barrier(args.wait)
        show_new()
        counters = live.agent.kernel_counters()
        outcomes = [judge(r, feed.alerts(), session.rules, args.late_ms) for r in runs]
    screen.finish()
    out.write("\n" + summary(outcomes, counters, caught_up) + "\n")
    attacks_ok = all(o.detected for o in outcomes if o.scenario.kind == "attack")
    benign_ok = all(o.status == "clean" for o in outcomes if o.scenario.kind == "benign")
    return 0 if attacks_ok and benign_ok and caught_up else 1


def summary(outcomes: list[Outcome], counters: dict[tuple[str, str], float], caught_up: bool) -> str:
    attacks = [o for o in outcomes if o.scenario.kind == "attack"]
    benign = [o for o in outcomes if o.scenario.kind == "benign"]
    detected = [o for o in attacks if o.detected]
    latencies = sorted(o.latency_ms for o in detected if o.latency_ms is not None)
    lines = ["Summary"]
    lines.append(f"  attacks detected     {len(detected)}/{len(attacks)}")
    for o in attacks:
        if not o.detected:
            lines.append(f"    missed: {o.scenario.name} ({o.scenario.rule}): {o.status}")
    fps = [o for o in benign if o.status != "clean"]
    lines.append(f"  benign workloads     {len(benign) - len(fps)}/{len(benign)} raised no alert")
    for o in fps:
        lines.append(f"    {o.scenario.name}: {o.status} {[a.rule_title for a in o.alerts]}")
    if not caught_up:
        lines.append("    (the sentinel alert never came: benign results are not proven)")
    if latencies:
        lines.append(
            f"  alert latency        median {statistics.median(latencies):.1f} ms, max {latencies[-1]:.1f} ms"
            " (decisive syscall -> alert written)"
        )
    lost = sum(v for (_, outcome), v in counters.items() if outcome.startswith("lost"))
    emitted = sum(v for (_, outcome), v in counters.items() if outcome == "emitted")
    lines.append(f"  kernel events        {int(emitted)} sent to the agent, {int(lost)} lost")
    return "\n".join(lines)
