"""The API-server stand-in with the faults the enrichment tests inject.

exporter.scenarios.apiserver is the faithful stand-in `provex demo` uses; this adds:
slow answers (`delay_s`, with `sleeping` counting the requests held), broken JSON
for lists (`garbage`), Pods changed and deleted (`modify_pod`, `delete_pod`), a compacted history (`compact()`: older watches get 410
Gone, as a watch ERROR event or, with `gone_as_http`, an HTTP status), and a log of
the requests and of the watches open right now.
"""

from __future__ import annotations

import time

from exporter.scenarios.apiserver import ApiHandler, FakeApiServer, make_pod, status_object

__all__ = ["FaultyApiServer", "make_pod"]


class _FaultyHandler(ApiHandler):
    api: FaultyApiServer

    def do_GET(self) -> None:
        api = self.api
        api.requests.append(self.path)
        if api.delay_s:
            api.sleeping += 1
            time.sleep(api.delay_s)
            api.sleeping -= 1
        super().do_GET()

    def _list(self, q: dict[str, str]) -> None:
        if self.api.garbage:
            return self._send(200, None, raw=b'{"kind": "PodList", "items": [{"metadata": ')
        return super()._list(q)

    def _gone(self, since: int) -> None:
        if not self.api.gone_as_http:
            return super()._gone(since)
        message = f"too old resource version: {since} ({self.api.oldest_rv})"
        return self._send(410, status_object(410, "Expired", message))

    def _stream(self, q: dict[str, str], since: int, epoch: int, timeout: float) -> None:
        self.api.open_watches += 1
        try:
            super()._stream(q, since, epoch, timeout)
        finally:
            self.api.open_watches -= 1


class FaultyApiServer(FakeApiServer):
    handler = _FaultyHandler

    def __init__(self) -> None:
        super().__init__()
        self.delay_s = 0.0
        self.sleeping = 0  # requests held by delay_s right now
        self.garbage = False
        self.gone_as_http = False
        self.requests: list[str] = []
        self.open_watches = 0

    def modify_pod(self, pod: dict) -> None:
        self._record("MODIFIED", pod)

    def delete_pod(self, uid: str) -> None:
        with self.cond:
            pod = self.pods[uid]
        self._record("DELETED", pod)

    def compact(self) -> None:
        """Forget history: any watch from an older resourceVersion gets 410 Gone."""
        with self.cond:
            self.rv += 1
            self.oldest_rv = self.rv
            self.history.clear()
            self.epoch += 1
            self.cond.notify_all()
