"""The bounded queue behind the export queues: every item put is either handed to the
worker or counted as dropped, once."""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence

import pytest

from exporter.emit.bounded import BoundedQueue
from tests.emit.test_resilience import wait_until


class Worker:
    """A handler that records batches and can be held to let the queue fill up."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.released = threading.Event()
        self.released.set()
        self.busy = threading.Event()  # set while a held batch is in hand

    def hold(self) -> None:
        self.released.clear()

    def __call__(self, batch: Sequence[int]) -> None:
        self.busy.set()
        self.released.wait(30)
        self.batches.append(list(batch))

    @property
    def handled(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


class Drops(collections.Counter[str]):
    def __call__(self, cause: str, count: int) -> None:
        self[cause] += count


def make_queue(worker: Worker, drops: Drops, max_items: int = 3, **kwargs) -> BoundedQueue[int]:
    return BoundedQueue(max_items, worker, drops, name="test-bounded", **kwargs)


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    worker, drops = Worker(), Drops()
    queue = make_queue(worker, drops)
    worker.hold()
    queue.put(0)
    assert worker.busy.wait(30)  # 0 is in hand: it does not take room in the queue
    for item in range(1, 7):
        queue.put(item)
    assert drops == {"queue_full": 3}  # 1, 2, 3 gave way to 4, 5, 6
    worker.released.set()
    assert queue.wait_idle(30)
    assert worker.handled == [0, 4, 5, 6]
    queue.close(30)
    assert drops == {"queue_full": 3}  # nothing left at close


def test_a_source_that_can_wait_loses_nothing() -> None:
    worker, drops = Worker(), Drops()
    queue = make_queue(worker, drops, max_items=2, max_batch=2)
    queue.wait_when_full = True
    for item in range(200):
        queue.put(item)
    assert queue.wait_idle(30)
    assert worker.handled == list(range(200))
    assert all(len(batch) <= 2 for batch in worker.batches)
    queue.close(30)
    assert drops == {}


def test_close_while_a_producer_waits_for_room_drops_its_item() -> None:
    worker, drops = Worker(), Drops()
    queue = make_queue(worker, drops, max_items=1)
    queue.wait_when_full = True
    worker.hold()
    queue.put(0)
    assert worker.busy.wait(30)
    queue.put(1)  # the queue is full now
    producer = threading.Thread(target=queue.put, args=(2,))
    producer.start()
    producer.join(0.2)
    assert producer.is_alive()  # it waits for room
    queue.close(0.1)
    producer.join(30)
    assert not producer.is_alive()  # close released it
    assert drops == {"shutdown": 2}  # 1 (queued) and 2 (put after close)
    worker.released.set()
    wait_until(lambda: worker.handled == [0])  # the item in hand still goes out


def test_close_drops_what_is_left_and_an_item_put_afterwards() -> None:
    worker, drops = Worker(), Drops()
    queue = make_queue(worker, drops, max_items=10)
    worker.hold()
    for item in range(4):
        queue.put(item)
    assert not queue.wait_idle(0.05)  # held: the flush gives up
    queue.close(0.05)
    queue.put(99)
    worker.released.set()
    wait_until(lambda: len(worker.handled) + drops["shutdown"] == 5)
    assert drops == {"shutdown": 5 - len(worker.handled)}
    assert 99 not in worker.handled


def test_on_start_runs_first_on_the_worker_thread() -> None:
    """(The raw-event queue lowers its thread's CPU priority this way.)"""
    worker, drops = Worker(), Drops()
    started: list[str] = []
    queue = make_queue(worker, drops, on_start=lambda: started.append(threading.current_thread().name))
    queue.put(1)
    assert queue.wait_idle(30)
    queue.close(30)
    assert started == ["test-bounded"] and worker.handled == [1]


def test_a_flush_does_not_wait_out_the_linger_time() -> None:
    worker, drops = Worker(), Drops()
    queue = make_queue(worker, drops, max_items=100, max_batch=50, linger_s=3600)
    for item in range(3):
        queue.put(item)
    assert queue.wait_idle(30)  # the worker took the partial batch for the flush
    assert worker.batches == [[0, 1, 2]]
    queue.close(30)


def test_a_failing_batch_is_counted_and_the_worker_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    handled: list[int] = []
    drops = Drops()

    def handle(batch: Sequence[int]) -> None:
        if 0 in batch:
            raise RuntimeError("bug")
        handled.extend(batch)

    queue: BoundedQueue[int] = BoundedQueue(10, handle, drops, name="test-bounded", max_batch=1)
    queue.put(0)
    queue.put(1)
    assert queue.wait_idle(30)
    queue.close(30)
    assert handled == [1] and drops == {"worker_error": 1}
    assert any(r.getMessage() == "queue worker failed" for r in caplog.records)


def test_sizes_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        make_queue(Worker(), Drops(), max_items=0)
