"""De-duplication that never delays the first alert.

The first match of a rule for a key goes out at once. Further matches for the
same rule and key inside `dedup_window_s` (event time) are folded into a
count; when the window closes (a later event's time or `close_until(now)`
passes its end) one follow-up record reports how many were folded, with the
last folded match's evidence and `followup_of` = the first alert's id.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from prometheus_client import Counter

from exporter.correlate.ids import stable_id
from exporter.metrics import REGISTRY
from exporter.model import Alert

SUPPRESSED = Counter(
    "provex_correlate_alerts_suppressed",
    "Matches folded into a follow-up by de-duplication, by rule",
    ["rule"],
    registry=REGISTRY,
)


@dataclass
class _Window:
    first_id: str
    end_ns: int
    suppressed: int = 0
    last: Alert | None = None


class Deduplicator:
    def __init__(self, window_s: float) -> None:
        self.window_ns = int(window_s * 1_000_000_000)
        self._open: dict[tuple[str, tuple[tuple[str, str], ...]], _Window] = {}
        self._ends: list[tuple[int, int, tuple[str, tuple[tuple[str, str], ...]]]] = []
        self._seq = 0

    def offer(self, alert: Alert, now_ns: int) -> Alert | None:
        """The alert to emit now (a first match), or None when it was folded."""
        if self.window_ns <= 0:
            return alert
        dkey = (alert.rule_id, tuple(sorted(alert.key.items())))
        window = self._open.get(dkey)
        if window is not None and now_ns < window.end_ns:
            window.suppressed += 1
            window.last = alert
            SUPPRESSED.labels(alert.rule_id).inc()
            return None
        self._open[dkey] = _Window(alert.id, now_ns + self.window_ns)
        self._seq += 1
        heapq.heappush(self._ends, (now_ns + self.window_ns, self._seq, dkey))
        return alert

    def close_until(self, now_ns: int) -> list[Alert]:
        """Close every window that ended at or before now_ns; their follow-ups, in end order."""
        out: list[Alert] = []
        ends = self._ends
        while ends and ends[0][0] <= now_ns:
            end, _, dkey = heapq.heappop(ends)
            window = self._open.get(dkey)
            if window is None or window.end_ns != end:
                continue  # superseded by a newer window for the same key
            del self._open[dkey]
            if window.suppressed and window.last is not None:
                out.append(_followup(window))
        return out

    def close_all(self) -> list[Alert]:
        # Every window, whatever its end: a record's time can lie past 2**63 ns.
        return self.close_until(max((end for end, _, _ in self._ends), default=0))


def _followup(window: _Window) -> Alert:
    last = window.last
    assert last is not None
    payload = (window.first_id, "followup", str(window.suppressed), *(e.id for e in last.evidence))
    return Alert(
        id=stable_id(*payload),
        rule_id=last.rule_id,
        rule_title=last.rule_title,
        level=last.level,
        techniques=last.techniques,
        tactics=last.tactics,
        description=last.description,
        key=last.key,
        first_ts_ns=last.first_ts_ns,
        decisive_ts_ns=last.decisive_ts_ns,
        evidence=last.evidence,
        suppressed=window.suppressed,
        followup_of=window.first_id,
        event=last.event,
    )
