"""The loop thread behind the Pod watch, the API-server refresh and the cgroup rescans."""

from __future__ import annotations

import threading

from exporter.enrich.worker import LoopThread


def test_stop_interrupts_what_the_loop_waits_on_and_ends_it() -> None:
    wake = threading.Event()
    rounds: list[int] = []

    def run() -> None:
        while not loop.stopping.is_set():
            wake.wait()  # stands for a blocking request: only `interrupt` ends it
            wake.clear()
            rounds.append(1)

    loop = LoopThread(run, "test-loop", interrupt=wake.set, join_s=30)
    loop.start()
    loop.start()  # once only: a second start does not add a thread
    assert sum(t.name == "test-loop" for t in threading.enumerate()) == 1
    loop.stop()
    assert not any(t.name == "test-loop" for t in threading.enumerate())
    assert rounds == [1]
    loop.stop()  # again: nothing left to stop
